"""One SMS from producer to final status: real Redis, a real worker process, the SMSC sandbox."""

from __future__ import annotations

import signal
import time

import pytest

from core.contracts import Status, send_queue
from core.errors import InvalidInput
from tests.support import control, poll_until, wait_final


def test_200_messages_reach_final_status_with_every_change_in_the_stream(
        producer, store, smsc, start_worker):
    start_worker(threads=8)
    ids = [producer.send_sms(f"+37529{1000000 + i}", f"Hello number {i}") for i in range(200)]
    final = wait_final(store, ids, timeout_s=90)
    assert set(final.values()) == {"delivered"}
    seen = store.events_for(ids)
    for i in ids:
        assert seen[i] == ["queued", "submitted", "delivered"], (i, seen[i])
    # nothing was sent twice: the sandbox accepted exactly 200 messages
    assert smsc.counters["accepted"] == 200
    rec = store.get(ids[0])
    assert rec["provider_id"] == rec["seq"] and rec["parts_billed"] == "1"


def test_primary_down_fallback_server_takes_the_message(producer, store, smsc, start_worker):
    control(smsc.urls[0], down=[0])
    start_worker(threads=2)
    msg_id = producer.send_sms("+375297654321", "via the fallback")
    assert wait_final(store, [msg_id])[msg_id] == "delivered"
    listeners = {r["listener"] for r in smsc.log.items() if r["path"] == "/sys/send.php"
                 and not r.get("dropped")}
    assert listeners == {1}
    assert smsc.counters["accepted"] == 1


def test_bad_input_is_refused_and_nothing_enqueued(producer, store):
    with pytest.raises(InvalidInput) as err:
        producer.send_sms("+37529123", "too short a number")
    assert err.value.field == "to"
    assert store.r.dbsize() == 0 or not list(store.r.scan_iter(store.key("msg", "*")))
    q = producer.broker.do_qsize(send_queue("smsc", "bulk"))
    assert q == 0


def test_provider_error_fails_the_message_and_keeps_the_code(producer, store, smsc,
                                                             start_worker):
    control(smsc.urls[0], phone_error={"375291112233": 8})
    start_worker(threads=2)
    msg_id = producer.send_sms("+375291112233", "cannot be delivered")
    assert wait_final(store, [msg_id])[msg_id] == Status.REJECTED
    rec = store.get(msg_id)
    assert rec["error_code"] == "8"
    assert "cannot be delivered" in rec["reason"]


def test_undelivered_status_code_kept_raw(producer, store, smsc, start_worker):
    control(smsc.urls[0], final_status={"375293334455": [20, 13]})
    start_worker(threads=2)
    msg_id = producer.send_sms("+375293334455", "subscriber blocked")
    assert wait_final(store, [msg_id])[msg_id] == "failed"
    rec = store.get(msg_id)
    assert rec["provider_status"] == "20" and rec["error_code"] == "13"


def test_no_funds_pauses_the_pool_and_keeps_the_message(producer, store, smsc, start_worker):
    control(smsc.urls[0], balance=0)
    start_worker(threads=2)
    msg_id = producer.send_sms("+375295556677", "waits for money")
    poll_until(lambda: store.r.exists(store.key("alert", "smsc", "no_funds")), 20,
               "the account alert")
    assert store.r.exists(store.key("pause", "smsc"))
    # after the pause (2 s) it tries again, and is kept again
    poll_until(lambda: int((rec := store.get(msg_id))["attempts"]) >= 2
               and not rec.get("inflight_ms"), 20, "a second attempt, done with")
    assert store.get(msg_id)["status"] == "queued"  # kept, not failed
    assert int(store.get(msg_id)["attempts"]) >= 2
    assert smsc.counters["accepted"] == 0
    control(smsc.urls[0], balance=100)
    assert wait_final(store, [msg_id], timeout_s=90)[msg_id] == "delivered"
    assert not store.r.exists(store.key("pause", "smsc"))


def test_sigkill_mid_batch_loses_nothing_and_doubles_nothing(producer, store, smsc,
                                                             start_worker):
    control(smsc.urls[0], delay_s=0.3)
    w1 = start_worker(threads=8)
    ids = [producer.send_sms(f"+37533{2000000 + i}", f"kill test {i}") for i in range(60)]
    deadline = time.monotonic() + 30
    while smsc.counters["accepted"] < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    w1.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    assert smsc.counters["accepted"] < 60, "worker finished before it could be killed"
    start_worker(threads=8)
    final = wait_final(store, ids, timeout_s=120)
    assert set(final.values()) == {"delivered"}
    assert smsc.counters["accepted"] == 60  # every message sent exactly once
    assert time.monotonic() - killed_at < 100
