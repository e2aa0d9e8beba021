"""A send whose reply Redis wrote but the producer never read (the connection dropped after
the submit script ran): redis-py sends the same script again on a new connection, and the
caller must get the one message it asked for, not an error for a message that was queued,
and never a second message (tests the retry through a real relay to a real Redis)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from core.broker import build_broker
from core.settings import load_settings
from core.store import Store, redis_client
from producers import Producer
from tests.support import write_config


class LosesOneReply:
    """A TCP relay to Redis that, once, passes a command carrying ``marker`` on to Redis and
    then closes the client's connection instead of relaying Redis's reply."""

    def __init__(self, upstream: tuple[str, int], marker: bytes) -> None:
        self.upstream = upstream
        self.marker = marker
        self.armed = True
        self.lost = 0
        self.conns: list[socket.socket] = []
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            u = socket.create_connection(self.upstream)
            self.conns += [c, u]
            drop = threading.Event()
            threading.Thread(target=self._pump, args=(c, u, drop, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, drop, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, drop: threading.Event,
              up: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if up and self.armed and self.marker in data:
                    self.armed = False
                    drop.set()  # before Redis can answer
                if not up and drop.is_set():
                    self.lost += 1  # Redis ran it; its answer is not passed on
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.srv.close()
        for s in self.conns:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture(params=[0, 60], ids=["no-duplicate-window", "duplicate-window"])
def relayed(request: pytest.FixtureRequest, tmp_path: Path, gonets_env: dict[str, str],
            smsc: Any, monkeypatch: pytest.MonkeyPatch,
            ) -> Iterator[tuple[Producer, Store, LosesOneReply]]:
    # without a duplicate window or an idempotency key nothing but the record itself can tell
    # a retry of this very call from a new message (it was refused as a taken id); with one,
    # the retry found its own claim and was answered "a duplicate of itself"
    cfg = write_config(tmp_path / "window.toml", smsc.urls,
                       extra=f"[accounts.smsc.limits]\nduplicate_window_s = {request.param}\n")
    for k in ("TEST_SMSC_LOGIN", "TEST_SMSC_PASSWORD"):
        monkeypatch.setenv(k, gonets_env[k])
    direct = urlsplit(gonets_env["GONETS_REDIS_URL"])
    relay = LosesOneReply((direct.hostname or "127.0.0.1", direct.port or 6379), b"lost-reply")
    url = urlunsplit(direct._replace(netloc=f"127.0.0.1:{relay.port}"))
    env = {**gonets_env, "GONETS_CONFIG": str(cfg)}
    settings = load_settings({**env, "GONETS_REDIS_URL": url})
    direct_settings = load_settings(env)
    broker = build_broker(direct_settings)
    store = Store(redis_client(url), namespace=settings.namespace)
    check = Store(redis_client(direct_settings.redis_url), namespace=settings.namespace)
    producer = Producer(settings, store=store, broker=broker)
    producer.send_sms("+375291239999", "warm up")  # Redis knows the script: EVALSHA runs it
    try:
        yield producer, check, relay
    finally:
        store.r.close()
        check.r.close()
        broker.close()
        relay.close()


def _queued(check: Store, phone: str) -> list[str]:
    """The ids of every record to ``phone`` (each message Redis holds)."""
    pattern = check.record_key("*")
    ids = []
    for key in check.r.scan_iter(pattern, count=1000):
        if check.r.type(key) == "hash" and check.r.hget(key, "phone") == phone:
            ids.append(check.r.hget(key, "id"))
    return ids


def test_a_send_whose_reply_was_lost_is_one_message_with_its_id(relayed: Any) -> None:
    producer, check, relay = relayed
    queued = producer.queue_sms("+375291230001", "lost-reply: your code is 4711")
    msg_id = queued.id
    assert not queued.duplicate
    assert relay.lost == 1  # the script ran, its answer never came: redis-py sent it again
    assert _queued(check, "375291230001") == [msg_id]
    assert check.r.hget(check.msg_key(msg_id), "status") == "queued"
    assert len(check.history(msg_id)) == 1  # one acceptance, not two


def test_a_batch_whose_reply_was_lost_answers_each_message_once(relayed: Any) -> None:
    producer, check, relay = relayed
    got = producer.send_many([{"to": f"+37529123{i:04d}", "text": f"lost-reply {i}"}
                              for i in range(5)])
    assert relay.lost == 1
    ids = [q.id for q in got]  # every item queued (no exception, no error item)
    assert [q.duplicate for q in got] == [False] * 5
    for i, msg_id in enumerate(ids):
        assert _queued(check, f"37529123{i:04d}") == [msg_id]


def test_a_send_whose_submitted_step_lost_its_reply_is_counted_and_followed_once(
        gonets_env: dict[str, str], smsc: Any, store: Store,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's ``submitted`` step (``core/lua/submitted.lua``) sent again by redis-py
    after its reply was lost: the second run finds its own poll token on the record and only
    acks; the day's usage counts the message once and one status poll follows it."""
    import workers.runtime
    from core import usage
    from core.broker import reset_broker
    from workers import actors
    from workers.runtime import Runtime

    for k in ("TEST_SMSC_LOGIN", "TEST_SMSC_PASSWORD"):
        monkeypatch.setenv(k, gonets_env[k])
    direct = urlsplit(gonets_env["GONETS_REDIS_URL"])
    relay = LosesOneReply((direct.hostname or "127.0.0.1", direct.port or 6379), b"")
    relay.armed = False
    url = urlunsplit(direct._replace(netloc=f"127.0.0.1:{relay.port}"))
    settings = load_settings({**gonets_env, "GONETS_REDIS_URL": url})
    relayed_store = Store(redis_client(url), namespace=settings.namespace)
    rt = Runtime(settings, relayed_store)
    rt.pool = "smsc"
    monkeypatch.setattr(workers.runtime, "_runtime", rt)
    producer = Producer(load_settings(gonets_env), store=store)
    try:
        warm = producer.send_sms("+375291230009", "warm up")
        actors.send_sms(warm)  # Redis knows the script now: EVALSHA runs it
        relay.marker = relayed_store._mark_submitted.sha.encode()
        relay.armed = True
        msg_id = producer.send_sms("+375291230002", "lost-reply: submitted")
        actors.send_sms(msg_id)
        assert relay.lost == 1  # the step ran; its answer never came; redis-py sent it again
        assert store.get(msg_id)["status"] == "submitted"
        assert usage.report(store, "smsc")[usage._day()]["transactional"] == \
            {"messages": 2, "parts": 2}  # the warm-up and this one, each once
        polls = [v for v in store.r.hvals("gonets-q:sms.smsc.status.DQ.msgs") if msg_id in v]
        assert len(polls) == 1
        assert store.r.lrange("gonets-q:sms.smsc.status.DQ", 0, -1).count(
            json.loads(polls[0])["options"]["redis_message_id"]) == 1
    finally:
        rt.close()
        relayed_store.r.close()
        relay.close()
        reset_broker()
