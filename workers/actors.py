"""The SMS actors: ``send_sms(id)`` and ``poll_status(id)``.

Both are idempotent by message id: a job delivered twice (dramatiq is at-least-once) finds the
record already past the point it would move it to and does nothing.  A send whose outcome is
unknown leaves ``inflight_ms`` on the record; the next attempt looks the message up at the
provider before it sends anything, and only the lookup's answer (found, not found) lets it
send: a lookup that fails is tried again as a lookup (``Outcomes.lookup_failed``), and where
the provider cannot be asked the account's ``on_lost_answer`` decides (``Outcomes.lost_answer``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from core.broker import enqueue, get_broker
from core.contracts import (
    CHECK_BALANCE,
    POLL_STATUS,
    POLL_STATUS_BATCH,
    SEND_SMS,
    SEND_SMS_URGENT,
    Status,
    send_actor,
    send_queue,
    status_queue,
)
from core.errors import NoLookup, ProviderError
from core.facts import outcome_unknown
from core.settings import Account
from core.timing import age_s, expired, now_ms
from workers import traffic
from workers.outcomes import RETRY_DELAY_S, Outcomes
from workers.providers.base import Outgoing, Provider
from workers.runtime import Runtime, get_runtime, outgoing

log = logging.getLogger("gonets.worker")


def send_sms(msg_id: str) -> None:
    rt = get_runtime()
    store, oc = rt.store, rt.outcomes
    # the record, and whether the pool's account is paused, in one round trip
    rec, pause_left_s = rt.find_for_send(msg_id)
    if rec is None:
        log.warning("send %s: no such record (expired or deleted); nothing to send", msg_id)
        return
    status = Status(rec["status"])
    if status == Status.SUBMITTED:
        # sent already; this job came back (its worker died after the send): make sure the
        # status is followed, superseding any poll chain the dead worker may have started
        account = rt.settings.account(rec["account"])
        oc.schedule_poll(msg_id, account.name, rt.provider(account).poll_plan.first_s)
        return
    if status.final:
        return
    # an earlier attempt went out and no answer proved what became of it
    in_flight = outcome_unknown(rec)
    if expired(rec) and not in_flight:
        oc.expire(msg_id, "validity ended before it could be sent")
        return
    if rt.pool is not None and rec["account"] != rt.pool:
        # it moved to another account of its route after this job was queued: its send job
        # belongs to that account's pool (a duplicate job there finds it sent, or in flight)
        enqueue(get_broker(rt.settings), send_queue(rec["account"], rec["lane"]),
                send_actor(rec["lane"]), msg_id)
        return
    account = rt.settings.account(rec["account"])
    if pause_left_s is None or rec["account"] != rt.pool:
        pause_left_s = rt.pause_left_s(account.name)
    if pause_left_s > 0:
        if oc.paused_failover(rec, account):  # moved on along its route
            return
        raise oc.wait_for_pause(rec, account)
    provider = rt.provider(account)
    seq: str | None = None  # a number taken here, stored with the attempt
    if in_flight and not rec.get("seq"):  # (an attempt stores its seq: never so in practice)
        seq = rec["seq"] = str(store.next_seq(account.name))
    # (a message without a number gets it with its attempt, below)
    out = outgoing({**rec, "seq": rec.get("seq") or "0"})
    if in_flight and not _look_up(oc, rec, account, provider, out):
        return
    rules = traffic.get_traffic(store)
    # in flight from its pacing booking's step on (a rule may hold it before: then it never
    # was); a first attempt takes the account's next seq in that step too
    attempt = store.attempt(msg_id, seq=seq, new_seq=None if rec.get("seq") else account.name)
    sent_ms: int | None = None
    try:
        # window, flood rule, pacing slot (the provider's writer waits for it where the bytes
        # leave); may hold or expire it
        ticket = rules.admit(account, rec, attempt)
        if attempt.seq is not None and seq is None:
            rec["seq"] = attempt.seq
            out = replace(out, seq=int(attempt.seq))
        sent_ms = now_ms()
        sub = provider.send(out, ticket)
    except traffic.Hold as hold:
        if attempt.begun:
            oc.not_sent(msg_id)
        raise oc.defer(rec, hold.delay_s, hold.reason) from None
    except traffic.Expired as exc:
        if attempt.begun:
            oc.not_sent(msg_id)
        oc.expire(msg_id, str(exc))
        return
    except ProviderError as exc:
        again = oc.send_failed(rec, account, exc, sent_ms=sent_ms)
        if again is None:
            return
        raise again from exc
    oc.submitted(rec, account, out, sub, provider.poll_plan)


def _look_up(oc: Outcomes, rec: dict[str, str], account: Account, provider: Provider,
             out: Outgoing) -> bool:
    """Ask the provider about a message whose earlier attempt's outcome is unknown. True: it
    has no record of it (or, where it cannot be asked, the account's ``on_lost_answer`` says
    resend), so send it; False: done here (found and followed, or closed). A lookup that fails
    raises the Retry of another lookup: only an answer clears the in-flight marker."""
    try:
        found = provider.lookup(out)
    except NoLookup as exc:
        return oc.lost_answer(rec, account, exc)
    except ProviderError as exc:
        again = oc.lookup_failed(rec, account, exc)
        if again is None:
            return False
        raise again from exc
    oc.lookup_answered(account)
    if found is not None:
        oc.found(rec, account, out, found, provider.poll_plan)
        return False
    if expired(rec):  # never went out, and now it is too late
        oc.expire(rec["id"], "validity ended before it could be sent")
        return False
    return True


def poll_status(msg_id: str, token: str | None = None) -> None:
    """Ask the provider for the status. ``token`` is set by the worker's own poll chain; a
    poll without one (a producer's or the scheduler's) always runs but starts no chain."""
    rt = get_runtime()
    _poll(rt, msg_id, rt.store.find(msg_id), token)


def _poll(rt: Runtime, msg_id: str, rec: dict[str, str] | None, token: str | None) -> None:
    if rec is None or Status(rec["status"]).final:
        return
    if token is not None and rec.get("poll_token") != token:
        return  # superseded by a newer poll chain
    if Status(rec["status"]) != Status.SUBMITTED:
        return  # not sent yet: its send job owns it
    if age_s(rec) > rt.settings.status_give_up_s:
        rt.outcomes.give_up(msg_id)
        return
    account = rt.settings.account(rec["account"])
    provider = rt.provider(account)
    started_ms = now_ms()
    try:
        rep = provider.status(outgoing(rec))
    except ProviderError as exc:
        again = rt.outcomes.poll_failed(rec, account, exc, started_ms=started_ms)
        if again is None:
            return
        raise again from exc
    rt.outcomes.status(msg_id, rep, provider.poll_plan, chain=token is not None)


#: a sweep batch the provider keeps refusing is left to the next sweep after this many tries
BATCH_MAX_HOPS = 20
#: records a sweep batch reads in one round trip before polling them one by one (a record
#: read this little ahead is as good: a status it reports never moves a final one back)
BATCH_READ = 50


def poll_status_batch(account: str, ids: list[str], hops: int = 0) -> None:
    """The scheduler's sweep: one poll (without a token: no chain) per id of ``account``.
    If the provider asks to wait, the ids not yet polled go back as one delayed job; the
    polled ones are not asked twice."""
    rt = get_runtime()
    recs: list[dict[str, str] | None] = []
    for i, msg_id in enumerate(ids):
        if i % BATCH_READ == 0:
            recs = rt.store.find_many(ids[i:i + BATCH_READ])
        try:
            _poll(rt, msg_id, recs[i % BATCH_READ], None)
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
    started_ms = now_ms()
    try:
        bal = rt.provider(acct).balance()
    except ProviderError as exc:
        rt.outcomes.balance_failed(acct, exc, started_ms=started_ms)
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
    dramatiq.actor(actor_name=SEND_SMS_URGENT, queue_name="sms.unrouted",
                   broker=broker, max_retries=10_000, time_limit=5 * 60 * 1000,
                   priority=0)(send_sms)
    dramatiq.actor(actor_name=SEND_SMS, queue_name="sms.unrouted", broker=broker,
                   max_retries=10_000, time_limit=5 * 60 * 1000, priority=10)(send_sms)
    dramatiq.actor(actor_name=POLL_STATUS, queue_name="sms.unrouted", broker=broker,
                   max_retries=1_000, time_limit=5 * 60 * 1000)(poll_status)
    dramatiq.actor(actor_name=POLL_STATUS_BATCH, queue_name="sms.unrouted",
                   broker=broker, max_retries=1_000, time_limit=30 * 60 * 1000)(poll_status_batch)
    dramatiq.actor(actor_name=CHECK_BALANCE, queue_name="sms.unrouted",
                   broker=broker, max_retries=3, time_limit=60 * 1000)(check_balance)


