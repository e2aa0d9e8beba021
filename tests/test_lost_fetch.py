"""A consumer's fetch whose answer was lost with the connection (Redis stopping, a network cut):
dramatiq's fetch script had already moved the jobs into this worker's ack set, and redis-py
ran it again on a new connection, which found the queue empty. No maintenance pass takes
back the jobs of a live worker, so before the fix they were never run (``make bench``'s
``redis_restart_stuck`` found 2-7 such records a run). The consumer puts back whatever sits
in its ack set and none of its threads holds (``core/lua/requeue_unheld.lua``), and never a
job a thread holds (that would run it twice).

Real Redis, through a relay that drops the connection after passing the fetch on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from dramatiq.errors import ConnectionClosed

import core.broker
from core.broker import build_broker, enqueue
from core.settings import Settings
from tests.test_submit_lost_reply import LosesOneReply

QUEUE = "sms.smsc.bulk"


@pytest.fixture
def relayed(settings: Settings, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[tuple[Any, Any, LosesOneReply]]:
    monkeypatch.setattr(core.broker, "ACKS_CHECK_S", 0.3)
    direct = urlsplit(settings.redis_url)
    # the fetch command of dramatiq's dispatch script (EVALSHA sha n keys... "fetch" ...)
    relay = LosesOneReply((direct.hostname or "127.0.0.1", direct.port or 6379),
                          b"\r\nfetch\r\n")
    relay.armed = False
    url = urlunsplit(direct._replace(netloc=f"127.0.0.1:{relay.port}"))
    worker_broker = build_broker(settings.model_copy(update={"redis_url": url}), worker=True)
    producer_broker = build_broker(settings)
    try:
        yield worker_broker, producer_broker, relay
    finally:
        worker_broker.close()
        producer_broker.close()
        relay.close()


class Consumes:
    """What dramatiq's consumer thread does with a consumer: take jobs from it; after a
    connection error, close it and start another (``workers/consumers.py``)."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.consumer = broker.consume(QUEUE, prefetch=8, timeout=100)
        self.errors = 0

    def take(self, n: int, timeout_s: float = 10.0) -> list[Any]:
        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < deadline:
            try:
                m = next(self.consumer)
            except ConnectionClosed:
                self.errors += 1
                self.consumer.close()
                self.consumer = self.broker.consume(QUEUE, prefetch=8, timeout=100)
                continue
            if m is not None:
                got.append(m)
        return got


def _acks(broker: Any) -> set[str]:
    return {v.decode() if isinstance(v, bytes) else v for v in broker.client.smembers(
        f"{broker.namespace}:__acks__.{broker.broker_id}.{QUEUE}")}


def test_jobs_of_a_fetch_whose_answer_was_lost_are_run_not_stranded(relayed: Any) -> None:
    worker_broker, producer_broker, relay = relayed
    loop = Consumes(worker_broker)
    try:
        assert loop.take(1, timeout_s=0.5) == []  # its first look: nothing there
        sent = [enqueue(producer_broker, QUEUE, "send_sms", f"lost-fetch-{i}") for i in range(3)]
        relay.armed = True
        worker_broker.ring(QUEUE)
        got = loop.take(3)
        assert relay.lost == 1  # the fetch ran in Redis; its answer never came back
        assert sorted(m.args[0] for m in got) == sorted(m.args[0] for m in sent)
        # each once: nothing else comes out of the queue
        assert loop.take(1, timeout_s=1.0) == []
        for m in got:
            loop.consumer.ack(m)
        assert _acks(worker_broker) == set()
    finally:
        loop.consumer.close()


def test_the_ack_set_check_leaves_the_jobs_its_threads_hold(relayed: Any) -> None:
    worker_broker, producer_broker, _relay = relayed
    loop = Consumes(worker_broker)
    try:
        for i in range(3):
            enqueue(producer_broker, QUEUE, "send_sms", f"held-{i}")
        worker_broker.ring(QUEUE)
        held = loop.take(3)
        assert len(held) == 3
        # a new consumer of the queue (as after an error) looks at the ack set first
        loop.consumer = worker_broker.consume(QUEUE, prefetch=8, timeout=100)
        assert loop.consumer.requeue_unheld() == 0
        time.sleep(0.4)  # past ACKS_CHECK_S
        assert loop.take(1, timeout_s=1.0) == []  # nothing put back: no job runs twice
        assert _acks(worker_broker) == {m.options["redis_message_id"] for m in held}
        for m in held:
            loop.consumer.ack(m)
        assert _acks(worker_broker) == set()
        assert loop.consumer.held == set()
    finally:
        loop.consumer.close()
