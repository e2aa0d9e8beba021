"""The SMS actors: ``send_sms(id)`` and ``poll_status(id)``.

Both are idempotent by message id: a job delivered twice (dramatiq is at-least-once) finds the
record already past the point it would move it to and does nothing.  A send whose outcome is
unknown leaves ``inflight_ms`` on the record; the next attempt looks the message up at the
provider before it sends anything.
"""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from core import usage
from core.broker import enqueue
from core.contracts import (
    CHECK_BALANCE,
    POLL_STATUS,
    POLL_STATUS_BATCH,
    SEND_SMS,
    SEND_SMS_URGENT,
    Status,
    status_queue,
)
from core.errors import AccountProblem, OutcomeUnknown, Permanent, RetryLater, SlowDown
from core.store import now_ms
from workers import traffic
from workers.providers.base import PollPlan, StatusReport
from workers.runtime import get_runtime, outgoing

log = logging.getLogger("gonets.worker")

#: how long to wait before retrying a transient failure without a hint from the provider
RETRY_DELAY_S = 5.0


def _retry(reason: str, delay_s: float) -> dramatiq.Retry:
    return dramatiq.Retry(reason, delay=int(delay_s * 1000))


def send_sms(msg_id: str) -> None:
    rt = get_runtime()
    store = rt.store
    rec = store.find(msg_id)
    if rec is None:
        log.warning("send %s: no such record (expired or deleted); nothing to send", msg_id)
        return
    status = Status(rec["status"])
    if status == Status.SUBMITTED:
        # sent already; this job came back (its worker died after the send): make sure the
        # status is followed, superseding any poll chain the dead worker may have started
        account = rt.settings.account(rec["account"])
        _schedule_poll(msg_id, account.name, rt.provider(account).poll_plan.first_s)
        return
    if status.final:
        return
    expires = int(rec.get("expires_ms") or 0)
    if expires and now_ms() >= expires:
        store.transition(msg_id, Status.EXPIRED, reason="validity ended before it could be sent")
        return
    account = rt.settings.account(rec["account"])
    left = rt.pause_left_s(account.name)
    if left > 0:
        wait_s = left + 0.5
        if expires:  # come back when the validity ends, to be expired then, if sooner
            wait_s = min(wait_s, max((expires - now_ms()) / 1000 + 0.02, 0.001))
        raise _retry(f"account {account.name} paused", wait_s)
    provider = rt.provider(account)
    new_seq = not rec.get("seq")
    if new_seq:
        rec["seq"] = str(store.next_seq(account.name))
    out = outgoing(rec)
    rules = traffic.get_traffic(store)
    sent_ms: int | None = None
    try:
        if rec.get("inflight_ms"):
            found = provider.lookup(out)
            if found is not None:
                store.bind_provider_id(account.name, out.provider_id or str(out.seq), msg_id)
                _apply_submitted(msg_id, found.raw, provider_id=out.provider_id or str(out.seq))
                usage.count(store, account.name, out.kind, out.parts)
                _apply_status(msg_id, found, provider.poll_plan, polls_done=0)
                return
        store.begin_attempt(msg_id, seq=rec["seq"] if new_seq else None)
        # window, flood rule, pacing slot (the send follows it at once); may hold or expire it
        rules.admit(account, rec)
        sent_ms = now_ms()
        sub = provider.send(out)
    except traffic.Hold as hold:
        _not_sent(msg_id)
        raise traffic.defer(store, msg_id, rec, hold.delay_s, hold.reason) from None
    except traffic.Expired as exc:
        _not_sent(msg_id)
        store.transition(msg_id, Status.EXPIRED, reason=str(exc))
        return
    except Permanent as exc:
        store.transition(msg_id, Status.REJECTED if exc.rejected else Status.FAILED,
                         reason=exc.detail, error_code=exc.code, inflight_ms="")
        if exc.alert:  # e.g. sender not registered: this message fails, the account pauses
            rt.pause(account.name, AccountProblem(exc.detail, code=exc.code,
                                                  provider=exc.provider, alert=exc.alert),
                     started_ms=sent_ms)
        return
    except AccountProblem as exc:
        store.update(msg_id, inflight_ms="")
        rt.pause(account.name, exc, started_ms=sent_ms)
        raise _retry(f"account problem {exc.alert}", rt.pause_left_s(account.name) + 0.5) from exc
    except OutcomeUnknown as exc:
        raise _retry("outcome unknown; will look it up first", exc.delay_s or RETRY_DELAY_S) \
            from exc
    except SlowDown as exc:
        store.update(msg_id, inflight_ms="")
        rules.slowed(account)
        raise traffic.defer(store, msg_id, rec, exc.delay_s or traffic.SLOWDOWN_DELAY_S,
                            f"provider asked to slow down: {exc.detail}") from exc
    except RetryLater as exc:
        store.update(msg_id, inflight_ms="")
        raise _retry(exc.detail, exc.delay_s or RETRY_DELAY_S) from exc
    rt.resume(account.name)
    store.bind_provider_id(account.name, sub.provider_id, msg_id)
    _apply_submitted(msg_id, "accepted", provider_id=sub.provider_id, parts_billed=sub.parts,
                     cost=sub.cost)
    usage.count(store, account.name, out.kind, sub.parts or out.parts)
    _schedule_poll(msg_id, account.name, provider.poll_plan.first_s)


def _not_sent(msg_id: str) -> None:
    """A traffic rule stopped the message before it went out: no attempt, nothing in flight."""
    store = get_runtime().store
    store.update(msg_id, inflight_ms="")
    store.incr(msg_id, "attempts", -1)


def _apply_submitted(msg_id: str, raw: str, **fields: object) -> None:
    get_runtime().store.transition(msg_id, Status.SUBMITTED, provider_status=raw,
                                   submitted_ms=now_ms(), inflight_ms="", **fields)


def _schedule_poll(msg_id: str, account: str, delay_s: float) -> None:
    """Enqueue the next status poll. Each poll carries a token; only the newest token's poll
    runs, so a poll chain never forks into two."""
    rt = get_runtime()
    at = now_ms() + int(delay_s * 1000)
    token = str(uuid.uuid4())[:8]
    rt.store.set_poll(msg_id, token, at)
    broker = dramatiq.get_broker()
    assert isinstance(broker, RedisBroker)
    enqueue(broker, status_queue(account), POLL_STATUS, msg_id, token,
            delay_ms=int(delay_s * 1000))


def _apply_status(msg_id: str, rep: StatusReport, plan: PollPlan, polls_done: int) -> None:
    rt = get_runtime()
    fields = {f"hlr_{k}": v for k, v in rep.extra.items()}
    rt.store.transition(msg_id, rep.status, provider_status=rep.raw, error_code=rep.error_code,
                        **fields)
    if not rep.status.final:
        rec = rt.store.find(msg_id)
        if rec is None:
            return
        _schedule_poll(msg_id, rec["account"], plan.next_delay_s(polls_done))


def poll_status(msg_id: str, token: str | None = None) -> None:
    """Ask the provider for the status. ``token`` is set by the worker's own poll chain; a
    poll without one (a producer's or the scheduler's) always runs but starts no chain."""
    rt = get_runtime()
    rec = rt.store.find(msg_id)
    if rec is None or Status(rec["status"]).final:
        return
    if token is not None and rec.get("poll_token") != token:
        return  # superseded by a newer poll chain
    if Status(rec["status"]) != Status.SUBMITTED:
        return  # not sent yet: its send job owns it
    account = rt.settings.account(rec["account"])
    provider = rt.provider(account)
    plan = provider.poll_plan
    age_s = (now_ms() - int(rec.get("submitted_ms") or rec["created_ms"])) / 1000
    if age_s > plan.give_up_after_s:
        rt.store.transition(msg_id, Status.UNKNOWN,
                            reason="the provider gave no final status in time")
        return
    try:
        rep = provider.status(outgoing(rec))
    except (RetryLater, AccountProblem) as exc:
        raise _retry(exc.detail, getattr(exc, "delay_s", None) or RETRY_DELAY_S) from exc
    except Permanent as exc:
        rt.store.transition(msg_id, Status.UNKNOWN, reason=exc.detail, error_code=exc.code)
        return
    polls = rt.store.incr(msg_id, "polls")
    if token is None and rep.status.final is False:
        rt.store.transition(msg_id, rep.status, provider_status=rep.raw,
                            error_code=rep.error_code)
        return
    _apply_status(msg_id, rep, plan, polls)


#: a sweep batch the provider keeps refusing is left to the next sweep after this many tries
BATCH_MAX_HOPS = 20


def poll_status_batch(account: str, ids: list[str], hops: int = 0) -> None:
    """The scheduler's sweep: one poll (without a token: no chain) per id of ``account``.
    If the provider asks to wait, the ids not yet polled go back as one delayed job; the
    polled ones are not asked twice."""
    for i, msg_id in enumerate(ids):
        try:
            poll_status(msg_id)
        except dramatiq.Retry as exc:
            if hops >= BATCH_MAX_HOPS:
                log.warning("status sweep batch: %d ids left to the next sweep", len(ids) - i)
                return
            broker = dramatiq.get_broker()
            assert isinstance(broker, RedisBroker)
            enqueue(broker, status_queue(account), POLL_STATUS_BATCH, account, ids[i:],
                    hops + 1, delay_ms=exc.delay or int(RETRY_DELAY_S * 1000))
            return


def check_balance(account: str) -> None:
    """Ask the provider for the balance; alert once per incident when it is under the
    account's ``limits.min_balance`` (a new incident alerts after it has recovered)."""
    rt = get_runtime()
    acct = rt.settings.account(account)
    try:
        bal = rt.provider(acct).balance()
    except (RetryLater, AccountProblem, NotImplementedError) as exc:
        log.warning("balance of %s unavailable: %s", account, exc)
        return
    rt.accounts.record_balance(account, str(bal.amount))
    threshold = acct.limits.min_balance
    if threshold is not None and bal.amount < Decimal(str(threshold)):
        if rt.accounts.open_low_balance(account, str(bal.amount)):
            log.error("account %s: balance %s %s is under the threshold %s",
                      account, bal.amount, bal.currency, threshold,
                      extra={"gonets_alert": "low_balance", "account": account})
    elif rt.accounts.close_low_balance(account):
        log.warning("account %s: balance %s %s is back above the threshold %s",
                    account, bal.amount, bal.currency, threshold)


def register(broker: RedisBroker) -> None:
    """Declare the actors on ``broker`` (their default queue is never used: jobs name theirs)."""
    # the same actor under two names: a worker's threads take urgent-lane jobs before
    # bulk ones it has fetched already (dramatiq serves lower priority numbers first)
    dramatiq.actor(send_sms, actor_name=SEND_SMS_URGENT, queue_name="sms.unrouted",
                   broker=broker, max_retries=10_000, time_limit=5 * 60 * 1000, priority=0)
    dramatiq.actor(send_sms, actor_name=SEND_SMS, queue_name="sms.unrouted", broker=broker,
                   max_retries=10_000, time_limit=5 * 60 * 1000, priority=10)
    dramatiq.actor(poll_status, actor_name=POLL_STATUS, queue_name="sms.unrouted", broker=broker,
                   max_retries=1_000, time_limit=5 * 60 * 1000)
    dramatiq.actor(poll_status_batch, actor_name=POLL_STATUS_BATCH, queue_name="sms.unrouted",
                   broker=broker, max_retries=1_000, time_limit=30 * 60 * 1000)
    dramatiq.actor(check_balance, actor_name=CHECK_BALANCE, queue_name="sms.unrouted",
                   broker=broker, max_retries=3, time_limit=60 * 1000)


