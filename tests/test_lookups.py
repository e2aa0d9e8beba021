"""A message whose send outcome is unknown (issue 20.1): only an answer that proves the outcome
clears its in-flight marker; a lookup that fails is tried again as a lookup, with back-off, and
alerts once when it keeps failing. Unit level on a real Redis, then end to end against the SMSC
sandbox with answers and lookups lost for longer than its duplicate window."""

from __future__ import annotations

import signal
import time
from typing import Any

import dramatiq
import pytest

from core.errors import AccountProblem, OutcomeUnknown, Permanent, RetryLater, SlowDown
from core.facts import outcome_unknown
from core.keys import LOOKUPS_FAILING
from core.store import Store, now_ms
from tests.support import control, poll_until, wait_final, wait_status
from workers.outcomes import LOOKUP_ALERT_AFTER
from workers.runtime import Runtime


def _in_flight(store: Store, n: int, **fields: Any) -> dict[str, str]:
    msg_id = f"l{n:031d}"
    store.create(msg_id, {"account": "smsc", "phone": f"37529200{n:04d}", "text": "hi",
                          "lane": "bulk", "kind": "transactional", "parts": 1, "seq": n,
                          **fields}, next_check_ms=0)
    store.begin_attempt(msg_id)
    return store.get(msg_id)


@pytest.mark.parametrize("exc", [
    RetryLater("no SMSC server answered status"),
    SlowDown("too many requests", delay_s=2.0),
    AccountProblem("bad login", code="2", alert="credentials"),
    Permanent("bad request parameters", code="1"),
], ids=["retry_later", "slow_down", "account_problem", "permanent"])
def test_a_failed_lookup_never_clears_the_marker(rt: Runtime, store: Store, exc: Any) -> None:
    rec = _in_flight(store, 1)
    again = rt.outcomes.lookup_failed(rec, rt.settings.account("smsc"), exc)
    after = store.get(rec["id"])
    assert isinstance(again, dramatiq.Retry)
    assert after["inflight_ms"] == rec["inflight_ms"] and outcome_unknown(after)
    assert after["status"] == "queued"  # not deferred, not closed: waiting for the lookup
    assert "never sent again before an answer" in after["waiting_reason"]


def test_lookups_back_off_and_alert_once_when_they_keep_failing(rt: Runtime,
                                                                 store: Store) -> None:
    account = rt.settings.account("smsc")
    s = rt.settings
    delays = []
    for n in (1, 2):
        rec = _in_flight(store, 10 + n)
        for _ in range(LOOKUP_ALERT_AFTER + 3):
            again = rt.outcomes.lookup_failed(rec, account, RetryLater("503"))
            assert again is not None and again.delay is not None
            if n == 1:
                delays.append(again.delay / 1000)
    # doubling from lookup_retry_s, capped at lookup_retry_max_s
    want = [min(s.lookup_retry_max_s, s.lookup_retry_s * 2 ** i) for i in range(len(delays))]
    assert delays == pytest.approx(want, abs=0.01)
    assert rt.accounts.open_alerts("smsc") == [LOOKUPS_FAILING]
    alert_key = store.keys.alert("smsc", LOOKUPS_FAILING)
    assert store.r.ttl(alert_key) > 0  # one alert per incident (not per message)
    # an answer ends the incident: the next run of failures alerts again
    rt.outcomes.lookup_answered(account)
    assert rt.accounts.open_alerts("smsc") == []


def test_waiting_for_a_receipt_is_not_a_failed_lookup(rt: Runtime, store: Store) -> None:
    rec = _in_flight(store, 3)
    for _ in range(LOOKUP_ALERT_AFTER + 1):
        again = rt.outcomes.lookup_failed(rec, rt.settings.account("smsc"),
                                          OutcomeUnknown("waiting for the receipt", delay_s=9))
        assert again is not None and again.delay == 9000
    assert not store.get(rec["id"]).get("lookup_failures")
    assert rt.accounts.open_alerts("smsc") == []


def test_lookups_end_unknown_only_after_the_give_up_age(rt: Runtime, store: Store) -> None:
    old = now_ms() - (rt.settings.status_give_up_s + 60) * 1000
    store.update(_in_flight(store, 4)["id"], created_ms=old)
    rec = store.get(f"l{4:031d}")
    assert rt.outcomes.lookup_failed(rec, rt.settings.account("smsc"), RetryLater("503")) is None
    after = store.get(rec["id"])
    assert after["status"] == "unknown" and after["error_code"] == "lookup_failed"
    assert not outcome_unknown(after)


# --- end to end: SMSC sandbox, answers and lookups lost longer than its duplicate window ----

WINDOW_S = 2.0


def _lose_everything(smsc: Any, gonets_env: dict[str, str]) -> None:
    """Every SMSC server processes each request and answers 503 (sends taken, answers lost,
    lookups failing); a 2 s duplicate window; lookups retried from 0.2 s up to 1 s."""
    control(smsc.urls[0], down=[0, 1], down_mode="accept_then_503",
            duplicate_window_s=WINDOW_S)
    gonets_env.update(GONETS_LOOKUP_RETRY_S="0.2", GONETS_LOOKUP_RETRY_MAX_S="1")


def _failed_lookups(store: Store, ids: list[str]) -> int:
    return min(int(store.get(i).get("lookup_failures") or 0) for i in ids)


def _sends(smsc: Any) -> int:
    return sum(1 for r in smsc.log.items() if r["path"] == "/sys/send.php")


def test_lost_answers_and_failing_lookups_past_the_duplicate_window_send_once(
        producer, store, smsc, gonets_env, start_worker):
    _lose_everything(smsc, gonets_env)
    start_worker(threads=4)
    ids = [producer.send_sms(f"+37529{3000000 + i}", f"lost answer {i}") for i in range(10)]
    poll_until(lambda: smsc.counters["accepted"] == 10, 30, "every message taken once")
    taken_at = time.monotonic()
    poll_until(lambda: _failed_lookups(store, ids) >= LOOKUP_ALERT_AFTER
               and time.monotonic() - taken_at > 2 * WINDOW_S, 30,
               "lookups failing for longer than the duplicate window")
    assert all(outcome_unknown(store.get(i)) for i in ids)
    assert store.r.exists(store.keys.alert("smsc", LOOKUPS_FAILING))
    assert _sends(smsc) == 10  # a failed lookup never turned into a send
    control(smsc.urls[0], down=[])
    final = wait_final(store, ids, timeout_s=60)
    assert set(final.values()) == {"delivered"}
    assert smsc.counters["accepted"] == 10  # 0 doubles at the provider
    poll_until(lambda: not store.r.exists(store.keys.alert("smsc", LOOKUPS_FAILING)), 10,
               "the alert to close once lookups are answered")


def test_a_worker_stopped_during_the_hang_sends_nothing_twice(
        producer, store, smsc, gonets_env, start_worker):
    _lose_everything(smsc, gonets_env)
    w1 = start_worker(threads=4)
    ids = [producer.send_sms(f"+37529{4000000 + i}", f"sigterm hang {i}") for i in range(10)]
    poll_until(lambda: smsc.counters["accepted"] == 10
               and _failed_lookups(store, ids) >= 1, 30, "sends taken and lookups failing")
    w1.stop(signal.SIGTERM)
    taken_at = time.monotonic()
    start_worker(threads=4)
    poll_until(lambda: time.monotonic() - taken_at > 2 * WINDOW_S
               and _failed_lookups(store, ids) >= 2, 30, "the new worker's lookups failing")
    control(smsc.urls[0], down=[])
    final = wait_final(store, ids, timeout_s=60)
    assert set(final.values()) == {"delivered"}
    assert smsc.counters["accepted"] == 10
    assert _sends(smsc) == 10


def test_a_payment_whose_answer_and_lookups_fail_is_charged_once(payments, bepaid, webhooks,
                                                                 pay_worker):
    # bePaid records the payment and drops the connection; the next three lookups by
    # tracking_id answer 503: the payment keeps its marker and is looked up again, never resent
    control(bepaid.url, drop_after_create=1, lookup_fail=3, lose_webhooks=True)
    pay_worker()
    pay_id = payments.pay_mts_money("375295222222", 4300, description="lookups fail")
    wait_status(payments.ps, [pay_id], {"pending", "successful"}, timeout_s=60)
    assert bepaid.counters["payment"] == 1
    assert len(bepaid.transactions_for(pay_id)) == 1
    assert sum(1 for x in bepaid.log.items() if "/tracking_id/" in x["path"]) >= 4
