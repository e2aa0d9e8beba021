"""What happens to a record when a provider says something: one module, one table.

Every worker path that learns something about a message or a payment ends here: a send and a
status poll (``workers/actors.py``), an SMPP receipt or incoming message (handed over by the
provider through its ``FactSink``), and the payment actors (``workers/payments.py``).  Providers
only turn their protocol into facts (``core.facts``) and errors (``core.errors``); this module
applies them: the transition, the next poll, a resend, a flood-rule fill, a pause and its
alert, a retry.  (The record change of a status report and of the give-up is
``core.facts.record_status`` / ``give_up``, which the SMSC status webhook and the scheduler's
sweep call too: they may not import workers.)

One table, ``ERROR_ACTIONS``, maps each class of the ``core.errors`` tree to what is done; the
SMS and the payment actors both read it through ``action_for``:

    error            action          the record                        the account
    OutcomeUnknown   LOOK_UP_FIRST   stays in flight: the next try     -
                                     looks it up before resending
    AlreadyAccepted  TAKEN_EARLIER   ``unknown``: the first copy was   -
                                     taken, its id was lost
    SlowDown         SLOW_DOWN       deferred, requeued later          its send rate drops
    RetryLater       RETRY           requeued later                    -
    AccountProblem   PAUSE           kept, ``waiting_reason`` says     paused, alerted once
                                     why; tried again after the pause  per incident
    Permanent        CLOSE           closed (SMS rejected or failed,   paused and alerted too
                                     a poll's message unknown, a       when the error names
                                     payment rejected, a check error)  an ``alert``

The lookup of a message whose outcome is unknown does not use the table: only an answer that
proves the outcome (found, not found) clears the in-flight marker; any failure of the lookup
itself is retried as a lookup, with back-off, and alerts when it keeps failing
(``lookup_failed``); a provider that cannot be asked applies the account's ``on_lost_answer``
(``lost_answer``).

Two steps read a row their own way, said where they do it: a service-activation check ends in
``error`` on an account problem (a customer waits for its answer), and a failed lookup of a
pending payment never closes it (what bePaid could not answer is asked again).

Over 400 lines on purpose: "what happens to a record when a provider says X" is answered in
one file, for messages and payments alike.
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import dramatiq

from core import routing, usage
from core.broker import enqueue, enqueued, get_broker, prepare_delayed, running_job_ack
from core.contracts import (
    POLL_STATUS,
    SEND_SMS,
    SEND_SMS_URGENT,
    Status,
    send_actor,
    send_queue,
    status_queue,
)
from core.doorbell import rings
from core.errors import (
    AccountProblem,
    AlreadyAccepted,
    NoLookup,
    OutcomeUnknown,
    Permanent,
    ProviderError,
    RetryLater,
    SlowDown,
    UnknownMessage,
)
from core.facts import (
    DeliveryReceipt,
    Incoming,
    Resend,
    StatusReport,
    Submitted,
    give_up,
    outcome_unknown,
    record_status,
)
from core.ids import uuid4_str
from core.keys import LOOKUPS_FAILING
from core.payments import CheckStatus, PaymentStatus, Transaction
from core.privacy import mask_phone
from core.settings import Account, Route
from core.store import QueuedJob, Store
from core.timing import CheckPlan, age_s, now_ms, within_validity_ms
from workers import traffic
from workers.providers.base import Outgoing

if TYPE_CHECKING:
    from workers.runtime import Runtime

log = logging.getLogger("gonets.worker")

#: the send actors (one per lane), whose job ``submitted`` acks with its last write
SEND_ACTORS = (SEND_SMS, SEND_SMS_URGENT)
#: how long to wait before retrying a transient SMS failure without a hint from the provider
RETRY_DELAY_S = 5.0
#: a paused account's message comes back this long after the pause ends
PAUSE_MARGIN_S = 0.5
#: a transient payment failure without a hint from bePaid is retried after this long
PAY_RETRY_DELAY_S = 2.0
#: a service-activation check that could not be asked is asked again after this long
CHECK_RETRY_DELAY_S = 1.0
#: the account is alerted (once per incident) when one message's lookup failed this often
LOOKUP_ALERT_AFTER = 3
#: with ``on_lost_answer`` "resend", a message is sent again at most this often after lost
#: answers; then it ends ``unknown`` (each resend may be one more copy)
LOST_ANSWER_RESENDS = 3


class Action(StrEnum):
    #: it may have reached the provider: keep it in flight, look it up before any resend
    LOOK_UP_FIRST = "look_up_first"
    #: the provider says we send too fast: hold it, lower the account's rate
    SLOW_DOWN = "slow_down"
    #: nothing happened: try again later
    RETRY = "retry"
    #: the account cannot work: pause it and alert, keep the record, retry after the pause
    PAUSE = "pause"
    #: this record can never succeed: close it
    CLOSE = "close"
    #: a resend was refused as a duplicate of the first copy, whose answer was lost: the first
    #: went; close it ``unknown`` (not rejected)
    TAKEN_EARLIER = "taken_earlier"


#: error class -> action; a class not listed takes its nearest listed base's action
ERROR_ACTIONS: dict[type[ProviderError], Action] = {
    OutcomeUnknown: Action.LOOK_UP_FIRST,
    AlreadyAccepted: Action.TAKEN_EARLIER,
    SlowDown: Action.SLOW_DOWN,
    RetryLater: Action.RETRY,
    AccountProblem: Action.PAUSE,
    Permanent: Action.CLOSE,
    # anything else a provider did: it may have been sent, so treat it as unknown
    ProviderError: Action.LOOK_UP_FIRST,
}


def action_for(exc: ProviderError) -> Action:
    for cls in type(exc).__mro__:
        if cls in ERROR_ACTIONS:
            return ERROR_ACTIONS[cls]
    raise TypeError(f"not a provider error: {exc!r}")


def hinted_delay_s(exc: ProviderError, default_s: float) -> float:
    """The delay the provider asked for, else ``default_s``."""
    return exc.delay_s if isinstance(exc, RetryLater) and exc.delay_s else default_s


def lost_answer_policy(configured: str, rec: dict[str, str]) -> str:
    """``resend`` or ``give_up`` for a message whose answer was lost where the provider cannot
    be asked. ``auto``: an urgent transactional message (a login code: a second copy costs
    little, a missing one locks a customer out) is resent; anything else (bulk, promotional: a
    second copy annoys and costs) is given up."""
    if configured != "auto":
        return configured
    urgent = rec.get("lane") == "urgent" and (rec.get("kind") or "transactional") == \
        "transactional"
    return "resend" if urgent else "give_up"


def retry(reason: str, delay_s: float) -> dramatiq.Retry:
    return dramatiq.Retry(reason, delay=max(int(delay_s * 1000), 1))


def alert_of(exc: Permanent) -> AccountProblem | None:
    """The account problem a permanent error also names (MTS 10: unregistered sender)."""
    if not exc.alert:
        return None
    return AccountProblem(exc.detail, code=exc.code, provider=exc.provider, alert=exc.alert)


class Outcomes:
    """Applies facts to records for one worker process (``Runtime.outcomes``)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        #: account -> whether its reported price is kept (``core.routing.learns_price``)
        self._learns: dict[str, bool] = {}

    @property
    def store(self) -> Store:
        return self.rt.store

    # --- the account ---------------------------------------------------------------------

    def pause(self, account: Account, exc: AccountProblem, *,
              started_ms: int | None = None) -> None:
        """Pause the account's pool and alert once per incident (``Runtime.pause``)."""
        self.rt.pause(account.name, exc, started_ms=started_ms)

    def _alert_if_named(self, account: Account, exc: Permanent,
                        started_ms: int | None) -> None:
        """A permanent error that names an account alert (MTS 10: unregistered sender) pauses
        the account too."""
        problem = alert_of(exc)
        if problem is not None:
            self.pause(account, problem, started_ms=started_ms)

    def wait_for_pause(self, rec: dict[str, str], account: Account, *,
                       payment: bool = False) -> dramatiq.Retry:
        """The record waits while its account is paused: it stays ``queued`` and its
        ``waiting_reason`` says why, until it is sent (a message) or created (a payment)."""
        left = self.rt.pause_left_s(account.name)
        why = f"account {account.name} is paused: {self.rt.pause_detail(account.name)}"
        try:
            if payment:
                self.rt.payments.update_payment(rec["id"], waiting_reason=why)
            else:
                self.store.update(rec["id"], waiting_reason=why)
        except UnknownMessage:
            pass
        delay_ms = within_validity_ms(rec, int((left + PAUSE_MARGIN_S) * 1000))
        return retry(why, delay_ms / 1000)

    # --- sends ---------------------------------------------------------------------------

    def submitted(self, rec: dict[str, str], account: Account, out: Outgoing, sub: Submitted,
                  plan: CheckPlan) -> None:
        """The provider took the message: it is ``submitted``; follow its status. One round
        trip (``Store.mark_submitted``): its provider id, the transition, the usage count, the
        poll chain's token and the first poll's job."""
        msg_id = rec["id"]
        self.rt.resume(account.name)
        broker = get_broker(self.rt.settings)
        token, delay_ms = self._poll_token(), int(plan.first_s * 1000)
        job = prepare_delayed(broker, status_queue(account.name), POLL_STATUS, msg_id, token,
                              delay_ms=delay_ms)
        # the send job running this is acked in the same step (nothing of it is left to do)
        ack = running_job_ack(broker, SEND_ACTORS, msg_id)
        self.store.mark_submitted(
            msg_id, account=account.name, provider_id=sub.provider_id,
            fields=self._submitted_fields("accepted", provider_id=sub.provider_id,
                                          parts_billed=sub.parts, cost=sub.cost),
            usage_key=usage.today_key(self.store, account.name), usage_ttl_s=usage.KEEP_S,
            kind=out.kind, parts=sub.parts or out.parts, poll_token=token,
            poll_at_ms=now_ms() + delay_ms,
            job=QueuedJob(job.queue_key, job.messages_key, job.redis_id, job.data,
                          job.doorbell if rings(broker, delay_ms) else "",
                          job.message.queue_name),
            ack=(ack.acks_key, ack.messages_key, ack.redis_id) if ack else None)
        if ack is not None:
            ack.done()
        enqueued(broker, job, delay_ms)
        if sub.cost and self._learns_price(account.name):  # for prefer = "cheapest"
            routing.record_price(self.store.r, self.store.keys, account.name, sub.cost,
                                 sub.parts or out.parts)

    def _learns_price(self, account: str) -> bool:
        if account not in self._learns:
            self._learns[account] = routing.learns_price(self.rt.settings, account)
        return self._learns[account]

    def found(self, rec: dict[str, str], account: Account, out: Outgoing, rep: StatusReport,
              plan: CheckPlan) -> None:
        """A send whose outcome was unknown reached the provider after all: never resend it."""
        msg_id = rec["id"]
        pid = out.provider_id or str(out.seq)
        self.store.bind_provider_id(account.name, pid, msg_id)
        self._submitted(msg_id, rep.raw, account.name, provider_id=pid)
        usage.count(self.store, account.name, out.kind, out.parts)
        self.status(msg_id, rep, plan, chain=True)

    def _submitted(self, msg_id: str, raw: str, account: str, **fields: Any) -> None:
        # the event names the account that took it (callbacks and history show it)
        self.store.transition(msg_id, Status.SUBMITTED, account=account,
                              **self._submitted_fields(raw, **fields))

    @staticmethod
    def _submitted_fields(raw: str, **fields: Any) -> dict[str, Any]:
        """The fields a record gets with ``submitted``: the provider's status, when, nothing
        in flight or waiting any more."""
        return {"provider_status": raw, "submitted_ms": now_ms(), "inflight_ms": "",
                "waiting_reason": "", **fields}

    def not_sent(self, msg_id: str) -> None:
        """A traffic rule stopped the message before it went out: no attempt, nothing in flight."""
        self.store.update(msg_id, inflight_ms="")
        self.store.incr(msg_id, "attempts", -1)

    def expire(self, msg_id: str, reason: str) -> None:
        self.store.transition(msg_id, Status.EXPIRED, reason=reason, inflight_ms="")

    def defer(self, rec: dict[str, str], delay_s: float, reason: str) -> dramatiq.Retry:
        """Hold the message: ``deferred`` with the reason, back after ``delay_s`` (sooner if
        its validity ends first: it comes back then and is marked expired)."""
        self.store.transition(rec["id"], Status.DEFERRED, reason=reason)
        return dramatiq.Retry(reason, delay=within_validity_ms(rec, int(delay_s * 1000)))

    def send_failed(self, rec: dict[str, str], account: Account, exc: ProviderError, *,
                    sent_ms: int | None) -> dramatiq.Retry | None:
        """A send failed: do what the table says. Returns the Retry to raise, or None when the
        message is closed. (A failed *lookup* never comes here: ``lookup_failed``.)"""
        msg_id = rec["id"]
        action = action_for(exc)
        if action is Action.CLOSE:
            assert isinstance(exc, Permanent)
            problem = alert_of(exc)
            if problem is not None and rec.get("route"):
                # refused for a reason of the account's (MTS 10: sender not registered there):
                # nothing went out, another account of the route may take it
                self.store.update(msg_id, inflight_ms="")
                self.pause(account, problem, started_ms=sent_ms)
                if self.failover(rec, account, problem.alert, exc.detail):
                    return None
            self.store.transition(msg_id, Status.REJECTED if exc.rejected else Status.FAILED,
                                  reason=exc.detail, error_code=exc.code, inflight_ms="")
            self._alert_if_named(account, exc, sent_ms)
            return None
        if action is Action.TAKEN_EARLIER:
            self.rt.resume(account.name)
            self.store.transition(msg_id, Status.UNKNOWN, provider_status=exc.code or "",
                                  reason=f"{exc.detail}; its delivery cannot be followed",
                                  error_code="lost_answer", inflight_ms="",
                                  lost_answer="first_copy_taken")
            usage.count(self.store, account.name, rec.get("kind") or "transactional",
                        int(rec.get("parts") or 1))
            return None
        if action is Action.LOOK_UP_FIRST:
            # it may have gone out through this account: it stays here until that is known
            # (other messages leave the account once it has been failing long enough)
            self.unreachable(rec, account, exc)
            return retry("outcome unknown; will look it up first",
                         hinted_delay_s(exc, self.rt.settings.lookup_retry_s))
        self.store.update(msg_id, inflight_ms="")
        if action is Action.PAUSE:
            assert isinstance(exc, AccountProblem)
            self.pause(account, exc, started_ms=sent_ms)
            if self.failover(rec, account, exc.alert, exc.detail):
                return None
            return self.wait_for_pause(rec, account)
        if action is Action.SLOW_DOWN:
            traffic.get_traffic(self.store).slowed(account)
            return self.defer(rec, hinted_delay_s(exc, traffic.SLOWDOWN_DELAY_S),
                              f"provider asked to slow down: {exc.detail}")
        if self.unreachable(rec, account, exc) and \
                self.failover(rec, account, "unreachable", exc.detail):
            return None
        return retry(exc.detail, hinted_delay_s(exc, RETRY_DELAY_S))

    # --- lookups of messages whose outcome is unknown -----------------------------------

    def lookup_answered(self, account: Account) -> None:
        """A lookup got an answer: an open "lookups keep failing" alert is over."""
        if self.rt.accounts.close_alert(account.name, LOOKUPS_FAILING):
            log.warning("account %s: lookups are answered again", account.name)

    def lookup_failed(self, rec: dict[str, str], account: Account,
                      exc: ProviderError) -> dramatiq.Retry | None:
        """The lookup of a message whose outcome is unknown got no answer that proves the
        outcome. The marker stays (only such an answer clears it) and the message is looked up
        again -- never sent -- with back-off (``lookup_retry_s`` doubling up to
        ``lookup_retry_max_s``); the account is alerted once per incident when one message's
        lookup failed ``LOOKUP_ALERT_AFTER`` times, and paused on an account problem as a send
        would. Only after ``status_give_up_s`` does the record end ``unknown``. Returns the
        Retry to raise, or None when it was closed."""
        msg_id, s = rec["id"], self.rt.settings
        if age_s(rec) > s.status_give_up_s:
            self.store.transition(msg_id, Status.UNKNOWN, error_code="lookup_failed",
                                  reason="outcome unknown: the provider could not be asked for "
                                  f"{s.status_give_up_s / 3600:g} h ({exc.detail})")
            return None
        if type(exc) is OutcomeUnknown:
            # not a failure: the provider cannot say yet (SMPP: the receipt may still come)
            return retry(f"outcome unknown; {exc.detail}", hinted_delay_s(exc, s.lookup_retry_s))
        self.unreachable(rec, account, exc)  # other messages may leave a failing account
        failures = self.store.incr(msg_id, "lookup_failures")
        delay_s = min(s.lookup_retry_max_s, s.lookup_retry_s * 2 ** min(failures - 1, 30))
        delay_s = max(delay_s, hinted_delay_s(exc, 0.0))
        action = action_for(exc)
        if action is Action.PAUSE:
            assert isinstance(exc, AccountProblem)
            self.pause(account, exc)
            delay_s = max(delay_s, self.rt.pause_left_s(account.name) + PAUSE_MARGIN_S)
        elif action is Action.CLOSE:
            assert isinstance(exc, Permanent)
            self._alert_if_named(account, exc, None)
        why = (f"outcome unknown: the lookup failed {failures} time(s) ({exc.detail}); it is "
               f"looked up again in {delay_s:.1f} s and never sent again before an answer")
        self.store.update(msg_id, waiting_reason=why)
        log.warning("send %s: %s", msg_id, why)
        if failures >= LOOKUP_ALERT_AFTER:
            info = f"{exc.detail} (message {msg_id}, {failures} failed lookups)"
            if self.rt.accounts.open_alert(account.name, LOOKUPS_FAILING, info):
                log.error("account %s: lookups of messages whose outcome is unknown keep "
                          "failing (%s); they are kept and looked up again, never resent",
                          account.name, exc.detail,
                          extra={"gonets_alert": LOOKUPS_FAILING, "account": account.name})
        return retry(why, delay_s)

    def lost_answer(self, rec: dict[str, str], account: Account, exc: NoLookup) -> bool:
        """The provider cannot be asked about a send whose answer was lost: the account's
        ``on_lost_answer`` decides. True: send it again (the record notes it); False: it was
        closed ``unknown`` (give up, or the resends allowed are used up)."""
        msg_id = rec["id"]
        policy = lost_answer_policy(exc.on_lost_answer, rec)
        resends = int(rec.get("lost_answer_resends") or 0)
        if policy == "resend" and resends < LOST_ANSWER_RESENDS:
            self.store.update(msg_id, lost_answer="resent", lost_answer_resends=resends + 1,
                              waiting_reason=f"{exc.detail}; sent again (on_lost_answer = "
                              f"{exc.on_lost_answer}): it may arrive twice")
            log.warning("send %s: answer lost and %s; sent again (on_lost_answer = %s)",
                        msg_id, exc.detail, exc.on_lost_answer)
            return True
        why = (f"outcome unknown: the answer was lost and {exc.detail}; not sent again "
               f"(on_lost_answer = {exc.on_lost_answer})" if policy == "give_up" else
               f"outcome unknown: the answer was lost {resends + 1} times and {exc.detail}; "
               "not sent again")
        self.store.transition(msg_id, Status.UNKNOWN, reason=why, error_code="lost_answer",
                              inflight_ms="", lost_answer="gave_up")
        log.warning("send %s: %s", msg_id, why)
        return False

    # --- routes (core/routing.py) --------------------------------------------------------

    def _route(self, rec: dict[str, str]) -> Route | None:
        name = rec.get("route")
        return self.rt.settings.route_named(name) if name else None

    def unreachable(self, rec: dict[str, str], account: Account, exc: ProviderError) -> bool:
        """A try of a routed message failed with a retry-later error (no connection, 5xx, no
        answer): note the run of failures; once it has lasted the route's
        ``failover_after_s`` the account is paused (an ``unreachable`` incident: new messages
        skip it, one alert) and True is returned. A slow-down, an account problem or a
        permanent refusal (of a lookup) are answers, not failures to reach it."""
        route = self._route(rec)
        if route is None or isinstance(exc, (SlowDown, AccountProblem, Permanent)):
            return False  # it answered: not unreachable (an account problem pauses anyway)
        lasted = routing.mark_unreachable(self.store.r, self.store.keys, account.name, now_ms())
        if lasted < route.failover_after_s:
            return False
        self.pause(account, AccountProblem(f"unreachable for {lasted:.0f} s ({exc.detail})",
                                           code=exc.code, provider=exc.provider,
                                           alert="unreachable"))
        return True

    def paused_failover(self, rec: dict[str, str], account: Account) -> bool:
        """The account's pool is paused: a routed message with nothing in flight moves on."""
        if not rec.get("route") or outcome_unknown(rec):
            return False
        raw = self.rt.accounts.overview([account.name])[0].incident
        info = json.loads(raw) if raw else {}
        return self.failover(rec, account, str(info.get("alert") or "paused"),
                             f"the pool is paused: {info.get('detail') or 'account problem'}")

    def failover(self, rec: dict[str, str], account: Account, reason: str, detail: str) -> bool:
        """Move a message ``account`` cannot take to the next account of its route whose pool
        is not paused, and queue its send there (same lane: B's pacing and urgent-first hold).
        Refused (False) when it has no route, no account is free, or it is not waiting with
        nothing in flight (``Store.move``). Counts the failover; alerts once per incident of
        the account and route."""
        route = self._route(rec)
        if route is None:
            return False
        settings, r, keys = self.rt.settings, self.store.r, self.store.keys
        to = routing.next_account(r, keys, settings, route, account.name)
        if to is None:
            return False
        target = settings.account(to)
        if not self.store.move(rec["id"], account.name, to, target.provider, reason=reason,
                               detail=detail, max_moves=routing.MAX_MOVES,
                               to_sender=target.default_sender):
            return False
        routing.count_failover(r, keys, route.key, account.name, reason)
        enqueue(get_broker(settings), send_queue(to, rec["lane"]), send_actor(rec["lane"]),
                rec["id"])
        if routing.route_alert(r, keys, route.key, account.name, detail):
            log.error("route %s: account %s cannot take messages (%s: %s); they go to %s",
                      route.key, account.name, reason, detail, to,
                      extra={"gonets_alert": "failover", "account": account.name,
                             "route": route.key})
        return True

    # --- statuses ------------------------------------------------------------------------

    def schedule_poll(self, msg_id: str, account: str, delay_s: float) -> None:
        """Enqueue the next status poll. Each poll carries a token; only the newest token's poll
        runs, so a poll chain never forks into two."""
        token = self._poll_token()
        self.store.set_poll(msg_id, token, now_ms() + int(delay_s * 1000))
        enqueue(get_broker(self.rt.settings), status_queue(account), POLL_STATUS, msg_id, token,
                delay_ms=int(delay_s * 1000))

    @staticmethod
    def _poll_token() -> str:
        return uuid4_str()[:8]

    def status(self, msg_id: str, rep: StatusReport, plan: CheckPlan, *, chain: bool) -> None:
        """Apply a status; ``chain``: the worker's own poll chain follows a non-final one.
        A status whose error asks for more (SMSC err 220, 224, 251: ``core/smsc_status.py``)
        does what the same receipt would."""
        if rep.resend is None and rep.account_problem is None:
            record_status(self.store, msg_id, rep)
        elif (rec := self.store.find(msg_id)) is not None:
            self._report(self.rt.settings.account(rec["account"]),
                         DeliveryReceipt(msg_id, rec.get("provider_id", ""), rep))
        if chain and not rep.status.final:
            rec = self.store.find(msg_id)
            if rec is not None:
                self.schedule_poll(msg_id, rec["account"], plan.next_delay_s(age_s(rec)))

    def give_up(self, msg_id: str) -> None:
        give_up(self.store, msg_id, self.rt.settings.status_give_up_s)

    def poll_failed(self, rec: dict[str, str], account: Account, exc: ProviderError, *,
                    started_ms: int) -> dramatiq.Retry | None:
        """A status request failed: the table again, for a message already sent."""
        action = action_for(exc)
        if action is Action.CLOSE:  # the provider cannot say: it never will
            assert isinstance(exc, Permanent)
            self.store.transition(rec["id"], Status.UNKNOWN, reason=exc.detail,
                                  error_code=exc.code)
            self._alert_if_named(account, exc, started_ms)
            return None
        if action is Action.PAUSE:
            assert isinstance(exc, AccountProblem)
            self.pause(account, exc, started_ms=started_ms)
            return retry(exc.detail, self.rt.pause_left_s(account.name) + PAUSE_MARGIN_S)
        return retry(exc.detail, hinted_delay_s(exc, RETRY_DELAY_S))

    def balance_failed(self, account: Account, exc: ProviderError, *,
                       started_ms: int) -> None:
        """A balance check could not be made: an account problem pauses the account as it
        would on a send; anything else waits for the next check."""
        log.warning("balance of %s unavailable: %s", account.name, exc)
        action = action_for(exc)
        if action is Action.PAUSE:
            assert isinstance(exc, AccountProblem)
            self.pause(account, exc, started_ms=started_ms)
        elif action is Action.CLOSE:
            assert isinstance(exc, Permanent)
            self._alert_if_named(account, exc, started_ms)

    # --- payments (``workers/payments.py``) ------------------------------------------------

    def check_failed(self, check_id: str, account: Account, exc: ProviderError, *,
                     attempts: int, max_attempts: int) -> dramatiq.Retry | None:
        """A service-activation check failed. A customer is waiting for its answer, so an
        account problem pauses the account *and* ends the check with ``error``; a transient
        failure is asked again, ``max_attempts`` times in all."""
        ps = self.rt.payments
        action = action_for(exc)
        if action is Action.PAUSE:
            assert isinstance(exc, AccountProblem)
            self.pause(account, exc)
        elif action is Action.CLOSE:
            assert isinstance(exc, Permanent)
            self._alert_if_named(account, exc, None)
        elif attempts < max_attempts:  # a check changes nothing at bePaid: ask again
            return retry(exc.detail, hinted_delay_s(exc, CHECK_RETRY_DELAY_S))
        else:
            ps.move_check(check_id, CheckStatus.ERROR, reason=f"gave up: {exc.detail}",
                          error_code=exc.code)
            return None
        ps.move_check(check_id, CheckStatus.ERROR, reason=exc.detail, error_code=exc.code)
        return None

    def payment_failed(self, rec: dict[str, str], account: Account, exc: ProviderError, *,
                       sent: bool) -> dramatiq.Retry | None:
        """A payment's check, lookup (``sent`` False) or payment request (``sent`` True: its
        ``inflight_ms`` was set before it went out) failed: the table, for money."""
        ps, pay_id = self.rt.payments, rec["id"]
        action = action_for(exc)
        if action is Action.CLOSE:
            assert isinstance(exc, Permanent)
            ps.move_payment(pay_id, PaymentStatus.REJECTED, reason=exc.detail,
                            error_code=exc.code, inflight_ms="" if sent else None,
                            account=account.name)
            self._alert_if_named(account, exc, None)
            return None
        if action is Action.LOOK_UP_FIRST and sent:
            # keep inflight_ms: the next attempt looks it up by tracking_id before anything
            # else; wait at least as long as bePaid had to answer, so a slow request has landed
            return retry("payment outcome unknown; will look it up first",
                         hinted_delay_s(exc, max(account.timeout_s, PAY_RETRY_DELAY_S)))
        if sent:  # refused at the door or never reached: nothing was created
            ps.update_payment(pay_id, inflight_ms="")
        if action is Action.PAUSE:
            assert isinstance(exc, AccountProblem)
            self.pause(account, exc)
            return self.wait_for_pause(rec, account, payment=True)
        return retry(exc.detail, hinted_delay_s(exc, PAY_RETRY_DELAY_S))

    def paid(self, account: Account, pay_id: str, tx: Transaction, *, source: str,
             plan: CheckPlan) -> bool:
        """Apply what bePaid said of a payment (its answer to the payment request, when
        ``source`` is "payment", or a lookup); a transaction that does not match the record is
        logged and ignored (never applied). True when the status changed."""
        ps = self.rt.payments
        if source == "payment":  # bePaid took the request: the account works
            self.rt.resume(account.name)
            try:
                ps.update_payment(pay_id, waiting_reason="")
            except UnknownMessage:
                return False
        try:
            return ps.apply(pay_id, tx, source=source, lookup_after_s=plan.first_s)
        except UnknownMessage:
            return False
        except ValueError as exc:
            log.error("payment %s: bePaid answer ignored: %s", pay_id, exc)
            return False

    def next_lookup(self, rec: dict[str, str], account: Account, plan: CheckPlan,
                    exc: ProviderError | None = None) -> None:
        """When the sweep looks a pending payment up again (the one back-off formula, by how
        long it has been pending). A lookup that failed never closes a payment (what bePaid
        could not answer is asked again, sooner if it said when); an account problem pauses
        the account as anywhere else."""
        delay_s = plan.next_delay_s(age_s(rec, since="pending_ms"))
        if exc is not None:
            log.warning("lookup %s: %s; will try again", rec["id"], exc.detail)
            if action_for(exc) is Action.PAUSE:
                assert isinstance(exc, AccountProblem)
                self.pause(account, exc)
            delay_s = min(delay_s, max(PAY_RETRY_DELAY_S, hinted_delay_s(exc, 0.0)))
        self.rt.payments.schedule_lookup(rec["id"], account.name,
                                         now_ms() + int(delay_s * 1000))

    # --- what arrives on its own (FactSink) ----------------------------------------------

    def receipt(self, account: Account, fact: DeliveryReceipt) -> bool:
        """Apply a delivery receipt; True when its message took it (exists, was not final)."""
        return self._report(account, fact, provider_id=fact.provider_id, receipt_ms=now_ms(),
                            inflight_ms="")

    def _report(self, account: Account, fact: DeliveryReceipt, **fields: Any) -> bool:
        """A status that may ask for more (a resend, an account alert), from a receipt or a
        poll alike; True when its message took it."""
        problem = fact.report.account_problem
        if fact.report.resend is not None and self._resend(account, fact):
            return True
        try:
            t = record_status(self.store, fact.msg_id, fact.report, **fields)
        except UnknownMessage:
            return False  # expired after retention
        if problem is not None:
            try:
                self.pause(account, problem)
            except Exception:  # the status is stored; the session thread must go on
                log.exception("account %s: could not raise the %s alert", account.name,
                              problem.alert)
        return t.changed or not t.status.final

    def _resend(self, account: Account, fact: DeliveryReceipt) -> bool:
        """A receipt asks for its message again (err 220: the operator's queue overflowed;
        251: the provider's flood rule, which also fills the number's flood burst so our own
        rule holds what follows). Returns False when its final status applies instead (the
        allowance is used up, or the message is not ``submitted``)."""
        rec = self.store.find(fact.msg_id)
        if rec is None:
            return True  # expired after retention: nothing to do
        lim = account.limits
        if fact.report.resend is Resend.FLOOD:
            traffic.get_traffic(self.store).flood.saturate(account, rec["phone"],
                                                            rec.get("route"))
            delay_s, status = lim.flood_gap_s, Status.DEFERRED
        else:
            delay_s, status = fact.resend_after_s, Status.QUEUED
        # the same text to the same number within the provider's duplicate window would be
        # refused as a repeat (SMSC: one identical request a minute): wait it out
        delay_s = max(delay_s, lim.duplicate_window_s)
        rep = fact.report
        done = self.store.resubmit(fact.msg_id, fact.provider_id,
                                   reason=f"{rep.reason}; sent again",
                                   error_code=rep.error_code or "", status=status,
                                   max_resubmits=fact.resends)
        if done == 0:
            return False
        if done == 1:
            enqueue(get_broker(self.rt.settings), send_queue(account.name, rec["lane"]),
                    send_actor(rec["lane"]), fact.msg_id, delay_ms=int(delay_s * 1000))
            log.warning("account %s: message %s got err %s (%s); sent again in %.0f s",
                        account.name, fact.msg_id, rep.error_code, rep.reason, delay_s)
        return True

    def incoming(self, account: Account, fact: Incoming) -> None:
        """Keep a subscriber's message as an event of ``<ns>:smpp:incoming``."""
        # the incoming stream: written only here (core/keys.py smpp:incoming)
        self.store.r.xadd(self.store.keys.smpp_incoming(), {
            "account": account.name, "from": fact.sender, "to": fact.recipient,
            "text": fact.text, "at_ms": str(now_ms())},
            maxlen=self.rt.settings.events_maxlen, approximate=True)
        log.info("account %s: incoming message from %s", account.name, mask_phone(fact.sender))
