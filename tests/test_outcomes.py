"""The outcomes module, table-driven: each error class -> its action, and each fact -> what the
record, the account and the queue show afterwards (a real Redis, a real dramatiq broker)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import dramatiq
import pytest

from core.contracts import Status
from core.errors import (
    AccountProblem,
    AlreadyAccepted,
    OutcomeUnknown,
    Permanent,
    ProviderError,
    RetryLater,
    SlowDown,
)
from core.facts import DeliveryReceipt, Resend, StatusReport, Submitted
from core.store import Store, now_ms
from core.timing import CheckPlan
from workers.outcomes import ERROR_ACTIONS, Action, action_for
from workers.providers.base import Outgoing
from workers.runtime import Runtime, outgoing


class Refused(Permanent):
    """A provider's own subclass takes its base's action."""


@pytest.mark.parametrize("exc, action", [
    (OutcomeUnknown("timeout after sending"), Action.LOOK_UP_FIRST),
    (SlowDown("throttled", delay_s=1.0), Action.SLOW_DOWN),
    (RetryLater("503"), Action.RETRY),
    (AccountProblem("no funds", alert="no_funds"), Action.PAUSE),
    (Permanent("bad number", rejected=True), Action.CLOSE),
    (Permanent("sender not registered", alert="sender"), Action.CLOSE),
    (Refused("forbidden"), Action.CLOSE),
    (ProviderError("something odd"), Action.LOOK_UP_FIRST),
    (AlreadyAccepted("duplicate of the first copy"), Action.TAKEN_EARLIER),
])
def test_each_error_class_has_one_action(exc: ProviderError, action: Action) -> None:
    assert action_for(exc) is action


def test_the_table_covers_the_whole_error_tree() -> None:
    tree = {OutcomeUnknown, SlowDown, RetryLater, AccountProblem, Permanent, ProviderError,
            AlreadyAccepted}
    assert set(ERROR_ACTIONS) == tree


# --- facts applied to records -------------------------------------------------------------


def _msg(store: Store, n: int, **fields: Any) -> dict[str, str]:
    msg_id = f"m{n:031d}"
    store.create(msg_id, {"account": "smsc", "phone": f"37529100{n:04d}", "text": "hi",
                          "lane": "bulk", "kind": "transactional", "parts": 1, "seq": n,
                          **fields}, next_check_ms=0)
    return store.get(msg_id)


def _queued_jobs(store: Store, queue: str) -> list[dict[str, Any]]:
    # delayed jobs wait in dramatiq's delay queue (``<queue>.DQ``)
    raw = store.r.hvals(f"gonets-q:{queue}.DQ.msgs") + store.r.hvals(f"gonets-q:{queue}.msgs")
    return [json.loads(m) for m in raw]


SEND_CASES = [
    # error, status after, still in flight, account paused, retried after (s, approx)
    (OutcomeUnknown("reset after sending", delay_s=7.0), "queued", True, False, 7.0),
    (RetryLater("503 before processing"), "queued", False, False, 5.0),
    (RetryLater("blocked", delay_s=60.0), "queued", False, False, 60.0),
    (SlowDown("too fast", delay_s=3.0), "deferred", False, False, 3.0),
    (AccountProblem("insufficient funds", code="3", alert="no_funds"), "queued", False, True,
     2.5),
    (Permanent("bad number", code="7", rejected=True), "rejected", False, False, None),
    (Permanent("undeliverable", code="8"), "failed", False, False, None),
    (Permanent("sender not registered", code="10", alert="sender"), "failed", False, True,
     None),
]


@pytest.mark.parametrize("exc, status, inflight, paused, delay_s", SEND_CASES)
def test_a_failed_send_does_what_the_table_says(rt: Runtime, store: Store, exc: ProviderError,
                                                status: str, inflight: bool, paused: bool,
                                                delay_s: float | None) -> None:
    rec = _msg(store, 1)
    store.begin_attempt(rec["id"])
    account = rt.settings.account("smsc")
    again = rt.outcomes.send_failed(rec, account, exc, sent_ms=now_ms())
    after = store.get(rec["id"])
    assert after["status"] == status
    assert bool(after.get("inflight_ms")) is inflight
    assert (rt.pause_left_s("smsc") > 0) is paused
    if delay_s is None:
        assert again is None
    else:
        assert isinstance(again, dramatiq.Retry) and again.delay is not None
        assert delay_s - 0.2 <= again.delay / 1000 <= delay_s + 0.1
    if isinstance(exc, Permanent):
        assert after["error_code"] == exc.code and after["reason"] == exc.detail


def test_a_message_held_by_a_paused_account_says_why(rt: Runtime, store: Store) -> None:
    rec = _msg(store, 3, expires_ms=now_ms() + 600)
    account = rt.settings.account("smsc")
    rt.pause("smsc", AccountProblem("insufficient funds", code="3", alert="no_funds"))
    again = rt.outcomes.wait_for_pause(rec, account)
    after = store.get(rec["id"])
    assert after["status"] == "queued"
    assert after["waiting_reason"] == ("account smsc is paused: insufficient funds (no_funds, "
                                       "code 3); tried again after the pause")
    assert again.delay is not None and again.delay <= 620  # back when its validity ends
    # once sent, the reason is gone
    rt.outcomes.submitted(rec, account, outgoing(rec), Submitted("77"), CheckPlan(60, 600))
    assert store.get(rec["id"])["waiting_reason"] == ""
    assert rt.pause_left_s("smsc") == 0  # a send that worked resumes the account


def test_submitted_binds_the_id_and_starts_the_poll_chain(rt: Runtime, store: Store) -> None:
    rec = _msg(store, 4)
    store.begin_attempt(rec["id"])
    rt.outcomes.submitted(rec, rt.settings.account("smsc"), outgoing(rec),
                          Submitted("4711", parts=2, cost="0.1"), CheckPlan(30, 600))
    after = store.get(rec["id"])
    assert (after["status"], after["provider_id"], after["parts_billed"]) == \
        ("submitted", "4711", "2")
    assert after["inflight_ms"] == "" and store.by_provider_id("smsc", "4711") == rec["id"]
    polls = _queued_jobs(store, "sms.smsc.status")
    assert [(j["actor_name"], j["args"]) for j in polls] == \
        [("poll_status", [rec["id"], after["poll_token"]])]
    assert 29_000 <= polls[0]["options"]["eta"] - now_ms() <= 30_000


@pytest.mark.parametrize("exc, status, paused, retried", [
    (Permanent("message not found", code="3"), "unknown", False, False),
    (AccountProblem("bad login", code="2", alert="credentials"), "submitted", True, True),
    (RetryLater("503"), "submitted", False, True),
    (SlowDown("too many requests", delay_s=2.0), "submitted", False, True),
])
def test_a_failed_poll_does_what_the_table_says(rt: Runtime, store: Store, exc: ProviderError,
                                                status: str, paused: bool, retried: bool) -> None:
    rec = _msg(store, 5)
    store.transition(rec["id"], Status.SUBMITTED)
    again = rt.outcomes.poll_failed(rec, rt.settings.account("smsc"), exc, started_ms=now_ms())
    assert store.get(rec["id"])["status"] == status
    assert (rt.pause_left_s("smsc") > 0) is paused
    assert (again is not None) is retried


def test_a_status_report_moves_the_record_and_schedules_by_its_age(rt: Runtime,
                                                                   store: Store) -> None:
    rec = _msg(store, 6)
    store.transition(rec["id"], Status.SUBMITTED, submitted_ms=now_ms() - 200_000)
    plan = CheckPlan(60, 3600)
    rt.outcomes.status(rec["id"], StatusReport(Status.SUBMITTED, "0", extra={"mcc": "257"}),
                       plan, chain=True)
    after = store.get(rec["id"])
    assert after["provider_status"] == "0" and after["hlr_mcc"] == "257"
    eta = _queued_jobs(store, "sms.smsc.status")[0]["options"]["eta"]
    assert 199_000 <= eta - now_ms() <= 201_000  # as long again as it has lived
    rt.outcomes.status(rec["id"], StatusReport(Status.DELIVERED, "1"), plan, chain=False)
    assert store.get(rec["id"])["status"] == "delivered"


def _receipt(msg_id: str, status: Status, err: str | None = None, **kw: Any) -> DeliveryReceipt:
    return DeliveryReceipt(msg_id=msg_id, provider_id="abc",
                           report=StatusReport(status, status.value.upper(), error_code=err,
                                               reason=kw.pop("reason", ""),
                                               fields={"dlr_cost": "0.5"},
                                               resend=kw.pop("resend", None),
                                               account_problem=kw.pop("account_problem", None)),
                           **kw)


def test_a_receipt_is_taken_once_and_a_late_one_changes_nothing(rt: Runtime,
                                                                store: Store) -> None:
    rec = _msg(store, 7)
    store.transition(rec["id"], Status.SUBMITTED, inflight_ms=now_ms())
    account = rt.settings.account("smsc")
    assert rt.outcomes.receipt(account, _receipt(rec["id"], Status.DELIVERED)) is True
    after = store.get(rec["id"])
    assert (after["status"], after["provider_id"], after["dlr_cost"], after["inflight_ms"]) == \
        ("delivered", "abc", "0.5", "")
    # a final record does not take another receipt (a number match tries the next message)
    assert rt.outcomes.receipt(account, _receipt(rec["id"], Status.FAILED)) is False
    assert rt.outcomes.receipt(account, _receipt("gone", Status.FAILED)) is False


def test_an_account_receipt_fails_the_message_and_pauses(rt: Runtime, store: Store) -> None:
    rec = _msg(store, 8)
    store.transition(rec["id"], Status.SUBMITTED)
    problem = AccountProblem("insufficient funds", code="224", alert="no_funds")
    rt.outcomes.receipt(rt.settings.account("smsc"),
                        _receipt(rec["id"], Status.FAILED, "224", account_problem=problem))
    assert store.get(rec["id"])["status"] == "failed" and rt.pause_left_s("smsc") > 0


@pytest.mark.parametrize("resend, status, delay_s", [
    (Resend.RETRY, "queued", 60.0),   # resend_after_s (>= the duplicate window, 60 s)
    (Resend.FLOOD, "deferred", 60.0),  # the flood gap (30 s) or the duplicate window
])
def test_a_resend_receipt_sends_again_once_per_receipt_within_its_allowance(
        rt: Runtime, store: Store, resend: Resend, status: str, delay_s: float) -> None:
    rec = _msg(store, 9)
    store.transition(rec["id"], Status.SUBMITTED, provider_id="abc")
    account = rt.settings.account("smsc")
    fact = _receipt(rec["id"], Status.FAILED, "220", reason="queue overflowed",
                    resend=resend, resend_after_s=10.0, resends=1)
    assert rt.outcomes.receipt(account, fact) is True
    assert rt.outcomes.receipt(account, fact) is True  # the same receipt again: no second job
    after = store.get(rec["id"])
    assert after["status"] == status and after["resubmits"] == "1"
    jobs = _queued_jobs(store, "sms.smsc.bulk")
    assert [j["args"] for j in jobs] == [[rec["id"]]]
    assert delay_s - 1 <= (jobs[0]["options"]["eta"] - now_ms()) / 1000 <= delay_s
    if resend is Resend.FLOOD:
        assert store.r.hget(f"gonets:flood:smsc:{rec['phone']}", "n") == \
            str(account.limits.flood_max_messages)
    # sent and failed again: the allowance (one resend) is used up, the failure is final
    store.transition(rec["id"], Status.SUBMITTED, provider_id="def")
    again = DeliveryReceipt(msg_id=rec["id"], provider_id="def", report=fact.report,
                            resends=1)
    assert rt.outcomes.receipt(account, again) is True
    assert store.get(rec["id"])["status"] == "failed"


def test_outgoing_carries_the_attempt_in_flight(store: Store) -> None:
    rec = _msg(store, 10)
    assert outgoing(rec).inflight_ms == 0
    store.begin_attempt(rec["id"])
    out: Outgoing = outgoing(store.get(rec["id"]))
    assert out.inflight_ms > 0


# --- providers only speak their protocol -----------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
#: what a provider module must never import: the records, the broker, the worker's runtime,
#: and the modules that act on records (outcomes, traffic rules)
FORBIDDEN = ("core.store", "core.payment_store", "dramatiq", "workers.runtime",
             "workers.outcomes", "workers.traffic", "workers.actors", "workers.payments")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):  # function-level imports too
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("path", sorted(
    [*(ROOT / "workers" / "providers").glob("*.py"), *(ROOT / "workers" / "smpp").glob("*.py")]),
    ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_provider_module_touches_records_broker_or_runtime(path: Path) -> None:
    bad = {m for m in _imports(path) for f in FORBIDDEN if m == f or m.startswith(f + ".")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


# --- timing rules written once ---------------------------------------------------------------


@pytest.mark.parametrize("age_s", [0, 30, 900, 3 * 3600, 2 * 24 * 3600])
def test_the_sweep_backs_off_by_the_one_formula(rt: Runtime, store: Store, age_s: float) -> None:
    from scheduler import sweeps

    now = now_ms()
    rec = _msg(store, 20)  # queued: its send job owns it, the sweep only moves its next check
    store.update(rec["id"], created_ms=now - int(age_s * 1000))
    sweeps.status_sweep(store, None, rt.settings, now=now)
    due = store.r.zscore(store.nonfinal_key, rec["id"])
    assert due == now + sweeps.SWEEP_PLAN.next_delay_s(age_s) * 1000


def test_a_poll_past_the_give_up_age_closes_the_message_as_the_sweep_does(
        rt: Runtime, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from scheduler import sweeps
    from workers.actors import poll_status

    give_up_ms = rt.settings.status_give_up_s * 1000
    polled, swept = _msg(store, 21), _msg(store, 22)
    for rec in (polled, swept):
        store.transition(rec["id"], Status.SUBMITTED, submitted_ms=now_ms() - give_up_ms - 1000)
    monkeypatch.setattr("workers.runtime._runtime", rt)  # the worker's runtime
    poll_status(polled["id"])
    store.schedule_check(polled["id"], 0)
    sweeps.status_sweep(store, None, rt.settings, now=now_ms())
    a, b = store.get(polled["id"]), store.get(swept["id"])
    assert a["status"] == b["status"] == "unknown" and a["reason"] == b["reason"]
    assert b["reason"] == "no final status from the provider within 72 h"


def test_a_sweep_batch_asks_each_message_once_and_hands_back_only_the_ones_not_asked(
        rt: Runtime, store: Store, smsc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's batch job reads its records ``BATCH_READ`` at a time (one round trip each)
    and asks SMSC for each submitted message once, in order: not a final one, not one whose
    record is gone. When SMSC asks it to wait midway (error 9 on status.php), the ids not yet
    asked go back as one delayed job, the refused one first; none asked is asked again."""
    from core.broker import get_broker
    from core.contracts import POLL_STATUS_BATCH
    from workers import actors

    monkeypatch.setattr("workers.runtime._runtime", rt)  # the worker's runtime
    get_broker(rt.settings)
    provider = rt.provider(rt.settings.account("smsc"))
    ids = []
    for i in range(actors.BATCH_READ * 2 + 10):  # three reads
        rec = _msg(store, 100 + i)
        provider.send(outgoing(rec))  # SMSC has it, under its seq
        store.transition(rec["id"], Status.SUBMITTED, submitted_ms=now_ms())
        ids.append(rec["id"])
    store.transition(ids[3], Status.DELIVERED)  # final already
    ids.insert(5, "gone0000000000000000000000000001")  # its record expired
    to_ask = [i for i in ids if i not in (ids[3], ids[5])]
    refused_at = actors.BATCH_READ + 7  # the 57th request is refused: in the second read
    asked: list[str] = []
    real_status = provider.status

    def status(msg: Outgoing) -> Any:
        asked.append(msg.id)
        if len(asked) == refused_at:
            smsc.force_error["status"] = [9, 1]  # "too many requests", once
        return real_status(msg)

    monkeypatch.setattr(provider, "status", status)
    actors.poll_status_batch("smsc", ids)

    assert asked == to_ask[:refused_at]
    # what SMSC received: one status request per message asked, the refused one included
    received = [x["params"]["id"] for x in smsc.log.items() if x["path"] == "/sys/status.php"]
    assert received == [store.get(i)["seq"] for i in to_ask[:refused_at]]
    answered = to_ask[:refused_at - 1]
    assert all(store.get(i).get("provider_status") for i in answered)
    assert not any(store.get(i).get("provider_status") for i in to_ask[refused_at - 1:])
    jobs = [j for j in _queued_jobs(store, "sms.smsc.status")
            if j["actor_name"] == POLL_STATUS_BATCH]
    assert len(jobs) == 1
    assert jobs[0]["args"] == ["smsc", ids[ids.index(to_ask[refused_at - 1]):], 1]
    assert jobs[0]["options"]["eta"] > now_ms()  # after the wait SMSC asked for


# --- payments: the same table, for money -------------------------------------------------------
# (the smsc account stands in for a bePaid one: what an outcome does depends on the error
# class and the step, never on the provider)


def _payment(rt: Runtime, n: int, *, inflight: bool) -> dict[str, str]:
    pay_id = f"p{n:031d}"
    rt.payments.create_payment(pay_id, {"phone": "375291234567", "amount": 100,
                                        "currency": "BYN"}, account="smsc", due_ms=0)
    if inflight:
        rt.payments.update_payment(pay_id, inflight_ms=now_ms())
    return rt.payments.payment(pay_id)


PAY_CASES = [
    # error, from the payment request itself, status after, still in flight, paused, retry s
    (OutcomeUnknown("timeout after sending"), True, "queued", True, False, 3.0),
    (OutcomeUnknown("timeout on the check"), False, "queued", True, False, 2.0),
    (RetryLater("connection refused"), True, "queued", False, False, 2.0),
    (SlowDown("429", delay_s=7.0), True, "queued", False, False, 7.0),
    (AccountProblem("bad shop credentials", code="401", alert="credentials"), True, "queued",
     False, True, 2.5),
    (Permanent("amount too large", code="422"), True, "rejected", False, False, None),
    (Permanent("not an MTS number", code="F.1001"), False, "rejected", True, False, None),
]


@pytest.mark.parametrize("exc, sent, status, inflight, paused, delay_s", PAY_CASES)
def test_a_failed_payment_step_does_what_the_table_says(
        rt: Runtime, exc: ProviderError, sent: bool, status: str, inflight: bool, paused: bool,
        delay_s: float | None) -> None:
    rec = _payment(rt, 1, inflight=True)  # an earlier attempt's outcome is unknown
    again = rt.outcomes.payment_failed(rec, rt.settings.account("smsc"), exc, sent=sent)
    after = rt.payments.payment(rec["id"])
    assert after["status"] == status
    assert bool(after.get("inflight_ms")) is inflight
    assert (rt.pause_left_s("smsc") > 0) is paused
    if delay_s is None:
        assert again is None and after["reason"] == exc.detail
    else:
        assert again is not None and again.delay is not None
        assert delay_s - 0.2 <= again.delay / 1000 <= delay_s + 0.1
    if paused:
        assert after["waiting_reason"].startswith("account smsc is paused: bad shop credentials")


@pytest.mark.parametrize("exc, attempts, status, paused, retried", [
    (RetryLater("503"), 1, "queued", False, True),
    (RetryLater("503"), 4, "error", False, False),  # check_max_attempts reached: gave up
    (OutcomeUnknown("timeout"), 2, "queued", False, True),  # a check changes nothing: ask again
    (AccountProblem("bad shop credentials", alert="credentials"), 1, "error", True, False),
    (Permanent("invalid phone"), 1, "error", False, False),
])
def test_a_failed_check_does_what_the_table_says(rt: Runtime, exc: ProviderError, attempts: int,
                                                 status: str, paused: bool,
                                                 retried: bool) -> None:
    rt.payments.create_check("c1", {"account": "smsc", "phone": "375291234567"})
    again = rt.outcomes.check_failed("c1", rt.settings.account("smsc"), exc, attempts=attempts,
                                     max_attempts=4)
    after = rt.payments.check("c1")
    assert after["status"] == status and (again is not None) is retried
    assert (rt.pause_left_s("smsc") > 0) is paused
    if status == "error":
        assert exc.detail in after["reason"]


@pytest.mark.parametrize("exc, paused, in_s", [
    (None, False, 300.0),                  # pending 5 min: looked up again 5 min later
    (RetryLater("503"), False, 2.0),
    (SlowDown("429", delay_s=30.0), False, 30.0),
    (AccountProblem("bad shop credentials", alert="credentials"), True, 2.0),
    (Permanent("no such transaction"), False, 2.0),  # a failed lookup never closes a payment
])
def test_the_next_lookup_of_a_pending_payment(rt: Runtime, exc: ProviderError | None,
                                              paused: bool, in_s: float) -> None:
    rec = _payment(rt, 2, inflight=False)
    rt.payments.move_payment(rec["id"], "pending", pending_ms=now_ms() - 300_000)
    rec = rt.payments.payment(rec["id"])
    plan = CheckPlan(60, 3600)
    rt.outcomes.next_lookup(rec, rt.settings.account("smsc"), plan, exc)
    due = rt.payments.r.zscore(rt.payments.due_key("smsc"), rec["id"])
    assert due is not None and in_s - 1 <= (due - now_ms()) / 1000 <= in_s + 0.1
    assert rt.payments.payment(rec["id"])["status"] == "pending"
    assert (rt.pause_left_s("smsc") > 0) is paused


@pytest.mark.parametrize("exc, paused", [
    (RetryLater("503"), False),
    (AccountProblem("bad login", code="2", alert="credentials"), True),
    (Permanent("SMPP has no balance command"), False),
    (Permanent("sender not registered", code="10", alert="sender"), True),
])
def test_a_failed_balance_check_does_what_the_table_says(rt: Runtime, exc: ProviderError,
                                                         paused: bool) -> None:
    rt.outcomes.balance_failed(rt.settings.account("smsc"), exc, started_ms=now_ms())
    assert (rt.pause_left_s("smsc") > 0) is paused
