"""The send job's path in one worker process, on a real Redis against the SMSC sandbox: what its
few round trips leave behind (``workers/actors.py`` ``send_sms``: the record read with the
pool's pause; the attempt, the pacing slot and the flood count in one script; the
``submitted`` step with its poll job in another), and what a message held before or at its
booking leaves (nothing in flight, no attempt counted)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.middleware import CurrentMessage

import workers.runtime
from core import usage
from core.broker import get_broker
from core.errors import UnknownMessage
from core.settings import load_settings
from core.store import QueuedJob, Store, now_ms
from producers import Producer
from tests.support import poll_until, write_config
from workers import actors
from workers.runtime import Runtime
from workers.traffic.flood import FloodGuard
from workers.traffic.pacing import Pacer


@pytest.fixture
def pool(gonets_env: dict[str, str], smsc: Any, store: Store,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``pool(**limits)``: the account's limits rewritten, and this process made the smsc
    pool's worker (its runtime is the one ``send_sms`` uses); returns a producer."""
    made: list[Runtime] = []

    def start(**limits: Any) -> Producer:
        lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in limits.items())
        write_config(Path(gonets_env["GONETS_CONFIG"]), smsc.urls,
                     extra=f"[accounts.smsc.limits]\n{lines}\n" if lines else "")
        for k in ("TEST_SMSC_LOGIN", "TEST_SMSC_PASSWORD"):
            monkeypatch.setenv(k, gonets_env[k])
        settings = load_settings(gonets_env)
        rt = Runtime(settings, store)
        rt.pool = "smsc"
        monkeypatch.setattr(workers.runtime, "_runtime", rt)
        producer = Producer(settings, store=store)
        made.append(rt)
        return producer

    yield start
    for rt in made:
        rt.close()
    from core.broker import reset_broker

    reset_broker()


def test_a_send_leaves_its_record_submitted_numbered_counted_and_followed(
        pool: Any, store: Store, smsc: Any) -> None:
    producer = pool()
    counter = int(store.r.get(store.keys.seq("smsc")) or 0)
    msg_id = producer.send_sms("+375291230001", "path")
    t0 = now_ms()
    actors.send_sms(msg_id)
    rec = store.get(msg_id)
    assert rec["status"] == "submitted"
    assert rec["seq"] == str(counter + 1)  # the account's next number, taken with the attempt
    assert rec["attempts"] == "1" and rec["inflight_ms"] == ""
    sent = [m for m in smsc.messages.values() if m.phone == "375291230001"]
    assert [str(m.id) for m in sent] == [rec["seq"]]  # the provider got it under that number
    assert store.by_provider_id("smsc", rec["provider_id"]) == msg_id
    assert usage.report(store, "smsc")[usage._day()]["transactional"] == \
        {"messages": 1, "parts": 1}
    # its first status poll: on the status queue's delay queue, due after first_poll_s (0.5 s)
    jobs = [json.loads(v) for v in store.r.hvals("gonets-q:sms.smsc.status.DQ.msgs")]
    assert [(j["actor_name"], j["args"]) for j in jobs] == \
        [("poll_status", [msg_id, rec["poll_token"]])]
    assert t0 + 500 <= jobs[0]["options"]["eta"] <= now_ms() + 500
    assert store.r.zscore(store.nonfinal_key, msg_id) == pytest.approx(jobs[0]["options"]["eta"],
                                                                         abs=50)


def test_the_submitted_step_acks_the_send_job_that_ran_it(pool: Any, store: Store,
                                                          settings: Any) -> None:
    producer = pool()
    msg_id = producer.send_sms("+375291230006", "acked")
    broker = get_broker(settings)
    consumer = broker.consume("sms.smsc.bulk", prefetch=1, timeout=100)
    proxy = poll_until(lambda: next(consumer), 10, "the send job fetched")
    redis_id = proxy.options["redis_message_id"]
    acks = f"gonets-q:__acks__.{broker.broker_id}.sms.smsc.bulk"
    assert store.r.sismember(acks, redis_id)  # fetched: this worker holds it
    token = CurrentMessage._MESSAGE.set(proxy)  # as dramatiq's middleware does for the job
    try:
        actors.send_sms(msg_id)
    finally:
        CurrentMessage._MESSAGE.reset(token)
    assert store.get(msg_id)["status"] == "submitted"
    # acked with the transition, as dispatch.lua's "ack" does
    assert not store.r.sismember(acks, redis_id)
    assert not store.r.hexists("gonets-q:sms.smsc.bulk.msgs", redis_id)
    store.r.sadd(acks, redis_id)  # (a marker: the consumer's own ack must not touch Redis)
    consumer.ack(proxy)
    assert consumer.outstanding_message_count == 0 and store.r.sismember(acks, redis_id)
    consumer.close()


def test_a_message_held_by_the_sending_window_never_began_an_attempt(
        pool: Any, store: Store, smsc: Any) -> None:
    opens = datetime.now(UTC) + timedelta(hours=1)
    producer = pool(send_window=f"{opens:%H:%M}-{opens + timedelta(hours=1):%H:%M}",
                    timezone="UTC")
    msg_id = producer.send_sms("+375291230002", "later")
    with pytest.raises(dramatiq.Retry):
        actors.send_sms(msg_id)
    rec = store.get(msg_id)
    assert rec["status"] == "deferred" and "sending window" in rec["reason"]
    assert rec["attempts"] == "0" and not rec.get("inflight_ms")
    assert smsc.counters["accepted"] == 0


def test_a_message_the_flood_rule_holds_at_its_slot_is_not_left_in_flight(
        pool: Any, store: Store, smsc: Any) -> None:
    producer = pool(flood_max_messages=1, flood_gap_s=30)
    first = producer.send_sms("+375291230003", "one")
    second = producer.send_sms("+375291230003", "two")
    actors.send_sms(first)
    with pytest.raises(dramatiq.Retry):
        actors.send_sms(second)
    rec = store.get(second)
    assert rec["status"] == "deferred" and "flood rule" in rec["reason"]
    # the attempt began with the booking and was undone: the next try sends, no lookup first
    assert rec["attempts"] == "0" and rec["inflight_ms"] == ""
    assert smsc.counters["accepted"] == 1


def test_the_submitted_step_on_a_record_gone_meanwhile_writes_nothing_of_it(
        store: Store) -> None:
    msg_id = "g" * 32
    store.create(msg_id, {"account": "smsc", "phone": "375291230004", "text": "gone"},
                 next_check_ms=0)
    store.delete(msg_id)
    job = QueuedJob("gonets-q:poll.DQ", "gonets-q:poll.DQ.msgs", "j1", b"{}", "", "poll.DQ")
    store.r.sadd("gonets-q:__acks__.w.send", "s1")
    store.r.hset("gonets-q:send.msgs", "s1", "{}")
    with pytest.raises(UnknownMessage):
        store.mark_submitted(msg_id, account="smsc", provider_id="77", fields={},
                             usage_key="gonets:usage:smsc:test", usage_ttl_s=60,
                             kind="transactional", parts=1, poll_token="t", poll_at_ms=1,
                             job=job, ack=("gonets-q:__acks__.w.send", "gonets-q:send.msgs",
                                           "s1"))
    assert not store.r.exists(store.msg_key(msg_id))  # no fragment of a record
    assert not store.r.exists(job.queue_key, job.messages_key, "gonets:usage:smsc:test")
    assert store.by_provider_id("smsc", "77") == msg_id  # bound first, as before
    # the send job is not acked: it fails, and dramatiq retries or acks it as before
    assert store.r.sismember("gonets-q:__acks__.w.send", "s1")
    assert store.r.hexists("gonets-q:send.msgs", "s1")


def test_a_slot_past_the_deadline_is_not_counted_by_the_flood_rule(store: Store,
                                                                   settings: Any) -> None:
    acct = settings.account("smsc")  # 30 parts/s
    pacer, guard = Pacer(store.r, store.ns), FloodGuard(store.r, store.ns)
    for _ in range(45):  # 1.5 s of slots booked ahead
        pacer.book(acct, 1, urgent=True)
    count = guard.count(acct, "375291230005")
    assert pacer.ticket(acct, 1, urgent=True, deadline=time.time() + 0.5, count=count) is None
    assert not store.r.exists(count.key)  # not sent, so not counted
    ticket = pacer.ticket(acct, 1, urgent=True, deadline=time.time() + 10, count=count)
    assert ticket is not None and ticket.first_at is not None
    assert store.r.hget(count.key, "n") == "1"
    # counted at the slot's instant (ms, Redis clock), not at the booking's
    assert int(store.r.hget(count.key, "last_ms") or 0) / 1000 >= time.time() + 0.5
