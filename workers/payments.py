"""The ``payments`` pool: MTS Money through bePaid.

Actors (queues per bePaid account, see ``core.payments``):

* ``check_mts_money(check_id)`` — the service-activation check; ends ``done`` with a typed
  result, or ``error`` when bePaid could not be asked after ``check_max_attempts``.
* ``pay_mts_money(pay_id)`` — checks the number (unless the record carries a check result),
  derives ``confirm_agreement`` from it and the customer's answer, and creates the payment.
* ``lookup_payment(pay_id)`` — asks bePaid for the payment (by ``uid``, else by
  ``tracking_id``) and applies what it says.
* ``sweep_pending_payments(account)`` — enqueues a lookup of every payment of the account that
  is due (pending longer than ``pending_lookup_after_s``): a lost webhook never leaves a
  payment pending forever.

Never a double charge: before the payment request goes out the record gets ``inflight_ms``;
if the outcome is unknown (timeout, reset, 5xx after sending) it stays set, and every later
attempt first looks the payment up by ``tracking_id`` and creates it again only when bePaid
has no record of it.  One worker at a time talks to bePaid about a payment (a Redis lock), so
a redelivered job cannot race its twin.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from core.broker import enqueue
from core.errors import ProviderError
from core.payment_store import PaymentStore
from core.payments import (
    CHECK_MTS_MONEY,
    LOOKUP_PAYMENT,
    PAY_MTS_MONEY,
    SWEEP_PENDING_PAYMENTS,
    CheckResult,
    CheckStatus,
    CustomerAnswer,
    PaymentStatus,
    confirm_agreement,
    payments_sweep_queue,
    pick,
)
from core.settings import Account
from core.store import now_ms
from core.timing import CheckPlan
from workers.outcomes import PAY_RETRY_DELAY_S, retry
from workers.providers.payment import PaymentProvider, PaymentRequest
from workers.runtime import get_runtime

log = logging.getLogger("gonets.payments")

#: a payment another worker holds is tried again after this long
RETRY_DELAY_S = PAY_RETRY_DELAY_S
#: how long one worker may hold a payment while it talks to bePaid, beyond the account's
#: timeout for each of its three requests (check, lookup, payment); a worker killed while
#: holding it delays the payment's redelivered job by at most this long
LOCK_SLACK_S = 5.0
#: the sweep leases what it enqueues for this long (a lookup reschedules it itself)
SWEEP_LEASE_S = 60.0
#: most lookups one sweep enqueues (the next sweep takes the rest)
SWEEP_BATCH = 500


def payment_store() -> PaymentStore:
    return get_runtime().payments


def client(account: Account) -> PaymentProvider:
    """The account's payment provider (one per process, closed with the runtime)."""
    return get_runtime().payment_provider(account)


def lookup_plan(bp: PaymentProvider) -> CheckPlan:
    """When a pending payment is looked up again (``core.timing``'s one back-off formula)."""
    return CheckPlan(bp.opts.pending_lookup_after_s, bp.opts.max_lookup_interval_s)


# --- check ---------------------------------------------------------------------------------


def check_mts_money(check_id: str) -> None:
    ps = payment_store()
    rec = ps.find_check(check_id)
    if rec is None or CheckStatus(rec["status"]).final:
        return
    rt = get_runtime()
    account = rt.settings.account(rec["account"])
    bp = client(account)
    attempts = ps.incr_check(check_id, "attempts")
    try:
        ans = bp.check(rec["phone"])
    except ProviderError as exc:
        again = rt.outcomes.check_failed(check_id, account, exc, attempts=attempts,
                                         max_attempts=bp.opts.check_max_attempts)
        if again is None:
            return
        raise again from exc
    done: dict[str, Any] = {
        "result": ans.result.value, "api_version": ans.api_version, "code": ans.code,
        "message": ans.message, "friendly_message": ans.friendly_message,
        "operator": ans.operator, "checked_ms": now_ms()}
    ps.move_check(check_id, CheckStatus.DONE, **done)


# --- payment -------------------------------------------------------------------------------


def pay_mts_money(pay_id: str) -> None:
    ps = payment_store()
    rec = ps.find_payment(pay_id)
    if rec is None:
        log.warning("pay %s: no such record (expired or deleted); nothing to do", pay_id)
        return
    if PaymentStatus(rec["status"]) is not PaymentStatus.QUEUED:
        return  # created already (pending) or final: webhook, lookups and the sweep own it
    rt = get_runtime()
    account = rt.settings.account(rec["account"])
    if rt.pause_left_s(account.name) > 0:
        raise rt.outcomes.wait_for_pause(rec, account, payment=True)
    token = ps.lock(pay_id, 3 * account.timeout_s + LOCK_SLACK_S)
    if token is None:
        raise retry("another worker is handling this payment", RETRY_DELAY_S)
    try:
        _pay(ps, pay_id, account)
    finally:
        ps.unlock(pay_id, token)


def _pay(ps: PaymentStore, pay_id: str, account: Account) -> None:
    rt = get_runtime()
    bp = client(account)
    rec = ps.payment(pay_id)  # re-read under the lock
    if PaymentStatus(rec["status"]) is not PaymentStatus.QUEUED:
        return
    # 1. what may be sent: the check (unless the record has its result) and the customer
    #    answer; 2. if an earlier attempt's outcome is unknown, what bePaid has already
    try:
        result_raw = rec.get("check_result")
        if not result_raw:
            ans = bp.check(rec["phone"])
            result_raw = ans.result.value
            ps.update_payment(pay_id, check_result=result_raw, check_code=ans.code,
                              check_message=ans.friendly_message or ans.message)
        result = CheckResult(result_raw)
        answer = CustomerAnswer(rec["customer_answer"]) if rec.get("customer_answer") else None
        agreement = confirm_agreement(result, answer)
        if agreement is None:
            _refuse(ps, pay_id, account, result, answer, rec.get("check_code"))
            return
        if rec.get("inflight_ms"):
            found = pick(bp.by_tracking_id(pay_id))
            if found is not None:
                log.info("pay %s: outcome was unknown; bePaid has it (%s), not sending again",
                         pay_id, found.raw_status)
                rt.outcomes.paid(account, pay_id, found, source="lookup", plan=lookup_plan(bp))
                return
            log.info("pay %s: outcome was unknown; bePaid has no record of it, sending again",
                     pay_id)
    except ProviderError as exc:
        again = rt.outcomes.payment_failed(rec, account, exc, sent=False)
        if again is None:
            return
        raise again from exc

    # 3. the payment request: inflight_ms is set before it goes out
    ps.update_payment(pay_id, inflight_ms=now_ms(), confirm_agreement=agreement)
    ps.incr_payment(pay_id, "attempts")
    try:
        tx = bp.pay(_request(rec, pay_id, agreement))
    except ProviderError as exc:
        again = rt.outcomes.payment_failed(rec, account, exc, sent=True)
        if again is None:
            return
        raise again from exc
    rt.outcomes.paid(account, pay_id, tx, source="payment", plan=lookup_plan(bp))


def _refuse(ps: PaymentStore, pay_id: str, account: Account, result: CheckResult,
            answer: CustomerAnswer | None, code: str | None) -> None:
    """Close a payment that must not reach bePaid: declined terms, or a number that cannot
    pay with MTS Money."""
    if result is CheckResult.MUST_ACCEPT_TERMS:
        why = ("the customer declined the MTS Money terms" if answer is CustomerAnswer.DECLINE
               else "MTS Money is not active for this number and the customer has not "
                    "accepted its terms")
        ps.move_payment(pay_id, PaymentStatus.DECLINED, reason=why, account=account.name)
        return
    ps.move_payment(pay_id, PaymentStatus.REJECTED, account=account.name, error_code=code,
                    reason=f"MTS Money cannot be used: the check says {result.value}")


def _request(rec: dict[str, str], pay_id: str, agreement: str) -> PaymentRequest:
    return PaymentRequest(
        tracking_id=pay_id, amount=int(rec["amount"]), currency=rec["currency"],
        description=rec["description"], phone=rec["phone"],
        confirm_agreement=agreement,  # type: ignore[arg-type]
        return_url=rec["return_url"], notification_url=rec.get("notification_url") or None,
        expired_at=rec.get("expired_at") or None, test=rec.get("test") == "1")


# --- lookups and the sweep -----------------------------------------------------------------


def lookup_payment(pay_id: str) -> None:
    ps = payment_store()
    rec = ps.find_payment(pay_id)
    if rec is None or PaymentStatus(rec["status"]).final:
        return
    rt = get_runtime()
    account = rt.settings.account(rec["account"])
    bp = client(account)
    ps.incr_payment(pay_id, "lookups")
    plan = lookup_plan(bp)
    try:
        tx = bp.by_uid(rec["uid"]) if rec.get("uid") else None
        if tx is None:
            tx = pick(bp.by_tracking_id(pay_id))
    except ProviderError as exc:
        rt.outcomes.next_lookup(rec, account, plan, exc)
        return
    if tx is not None:
        rt.outcomes.paid(account, pay_id, tx, source="lookup", plan=plan)
    rt.outcomes.next_lookup(ps.find_payment(pay_id) or rec, account, plan)


def sweep_pending_payments(account_name: str | None = None) -> int:
    """Enqueue a lookup of every due payment of ``account_name`` (of every bePaid account when
    None: the scheduler's timer); returns how many."""
    if account_name is None:
        settings = get_runtime().settings
        return sum(sweep_pending_payments(a.name) for a in settings.payment_accounts())
    ps = payment_store()
    broker = dramatiq.get_broker()
    assert isinstance(broker, RedisBroker)
    ids = ps.due(account_name, limit=SWEEP_BATCH)
    lease = now_ms() + int(SWEEP_LEASE_S * 1000)
    for pay_id in ids:
        ps.schedule_lookup(pay_id, account_name, lease)
        enqueue(broker, payments_sweep_queue(account_name), LOOKUP_PAYMENT, pay_id)
    if ids:
        log.info("sweep %s: %d payment(s) to look up", account_name, len(ids))
    return len(ids)


def sweep_pending_payments_job(account_name: str | None = None) -> None:
    """The actor: a job's return value is discarded (no Results middleware), and dramatiq
    warns about every one that is not None."""
    sweep_pending_payments(account_name)


def register(broker: RedisBroker) -> None:
    """Declare the payment actors on ``broker`` (jobs name their own queues)."""
    dramatiq.actor(actor_name=CHECK_MTS_MONEY, queue_name="payments.unrouted",
                   broker=broker, max_retries=100, time_limit=2 * 60 * 1000)(check_mts_money)
    dramatiq.actor(actor_name=PAY_MTS_MONEY, queue_name="payments.unrouted",
                   broker=broker, max_retries=10_000, time_limit=5 * 60 * 1000)(pay_mts_money)
    dramatiq.actor(actor_name=LOOKUP_PAYMENT, queue_name="payments.unrouted",
                   broker=broker, max_retries=10, time_limit=2 * 60 * 1000)(lookup_payment)
    dramatiq.actor(actor_name=SWEEP_PENDING_PAYMENTS, queue_name="payments.unrouted",
                   broker=broker, max_retries=3,
                   time_limit=5 * 60 * 1000)(sweep_pending_payments_job)
