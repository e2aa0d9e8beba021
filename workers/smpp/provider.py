"""The SMPP provider: submits, lookups and status over one ``Session`` per process.

``smsc_smpp`` and ``mts_smpp`` are this class with different defaults (see their modules); what
the account's options put on the wire (submit_sm parameters, bind flags, SMSC's text
conventions) is ``options.py``, and which message a receipt is for (ids, early receipts,
orphans) is ``correlation.py``, which hands each matched receipt to the worker as a fact.
Nothing here touches a message record.

Unknown outcomes.  A submit written to a link that died before its answer may have been
taken.  Within the server's duplicate window (SMSC: one identical request per minute) the
identical PDU is sent again: the server either takes it (the first never arrived) or refuses
it as a duplicate (the first arrived) — it cannot double.  Past that window the message is an
"orphan" (``correlation.py``) that a receipt for that number with an unknown id is matched to,
for ``receipt_wait_s``; then, with no receipt and nothing to ask, the account's
``on_lost_answer`` decides (``NoLookup``: resend, or end ``unknown``).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, ClassVar

from smpplib import consts

from core.contracts import Status
from core.errors import (
    AccountProblem,
    ConfigError,
    NoLookup,
    OutcomeUnknown,
    Permanent,
    ProviderError,
    RetryLater,
    SlowDown,
)
from core.keys import Keys
from core.observability.tracing import span
from core.provider_options import SmppAccountOptions
from core.settings import Account
from core.timing import now_ms
from workers.providers.base import (
    Balance,
    CheckPlan,
    Outgoing,
    Pacing,
    ProviderContext,
    StatusReport,
    Submitted,
    account_options,
)
from workers.smpp.correlation import Correlation
from workers.smpp.lease import bind_lease
from workers.smpp.options import split_host, submit_params, system_type
from workers.smpp.receipt import STAT_MAP, STATE_WORDS
from workers.smpp.session import (
    LinkLost,
    NotBound,
    Resp,
    Session,
    SessionConfig,
    SlotMissed,
)

log = logging.getLogger("gonets.smpp")

# --- protocol knowledge as data -------------------------------------------------------------

#: submit_sm_resp command_status -> (error class, kwargs)  (SMPP v3.4 §5.1.3)
SUBMIT_ERRORS: dict[int, tuple[type[ProviderError], dict[str, Any]]] = {
    consts.SMPP_ESME_RTHROTTLED: (SlowDown, {"detail": "throttled (ESME_RTHROTTLED)",
                                             "delay_s": 1.0}),
    consts.SMPP_ESME_RMSGQFUL: (SlowDown, {"detail": "message queue full", "delay_s": 5.0}),
    consts.SMPP_ESME_RINVBNDSTS: (RetryLater, {"detail": "not bound for submits"}),
    consts.SMPP_ESME_RSYSERR: (RetryLater, {"detail": "server system error"}),
    consts.SMPP_ESME_RINVSRCADR: (AccountProblem, {"detail": "sender not allowed",
                                                   "alert": "sender"}),
    consts.SMPP_ESME_RINVDSTADR: (Permanent, {"detail": "invalid destination number",
                                              "rejected": True}),
    consts.SMPP_ESME_RINVMSGLEN: (Permanent, {"detail": "invalid message length"}),
    consts.SMPP_ESME_RINVESMCLASS: (Permanent, {"detail": "invalid esm_class"}),
    consts.SMPP_ESME_RINVEXPIRY: (Permanent, {"detail": "invalid validity period"}),
    consts.SMPP_ESME_RINVPASWD: (AccountProblem, {"detail": "bad password",
                                                  "alert": "credentials"}),
    consts.SMPP_ESME_RINVSYSID: (AccountProblem, {"detail": "unknown login",
                                                  "alert": "credentials"}),
    consts.SMPP_ESME_RBINDFAIL: (AccountProblem, {"detail": "bind failed",
                                                  "alert": "credentials"}),
}
#: how a server refuses a second identical submit within its duplicate window
DUPLICATE_STATUS = consts.SMPP_ESME_RSUBMITFAIL


class SmppProvider:
    PROVIDER = "smpp"
    #: options that differ per provider type (overridden by smsc_smpp / mts_smpp)
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, account: Account, ctx: ProviderContext | None = None, *,
                 start: bool = False) -> None:
        self.account = account
        self.opts = account_options(SmppAccountOptions, account, self.DEFAULTS)
        if not account.smpp_host:
            raise ConfigError(f"accounts.{account.name}.smpp_host is not set")
        if ctx is None:
            raise ConfigError("the SMPP provider needs a worker context (Redis)")
        self.ctx = ctx
        self.poll_plan = CheckPlan(self.opts.first_poll_s, self.opts.max_poll_interval_s)
        s = ctx.settings
        self.ns = s.namespace
        #: which message a receipt is for; matched receipts go to ``ctx.facts``
        self.receipts = Correlation(account, self.opts, ctx.redis, namespace=s.namespace,
                                    sink=ctx.facts, provider=self.PROVIDER)
        hosts = [split_host(account.smpp_host, account.smpp_port, f"accounts.{account.name}"
                            ".smpp_host")]
        if account.smpp_backup_host:
            hosts.append(split_host(account.smpp_backup_host, account.smpp_port,
                                    f"accounts.{account.name}.smpp_backup_host"))
        login = account.secret("login")  # checked now: a missing credential is a config error
        self.lease = bind_lease(ctx.redis, namespace=s.namespace, login=login,
                                slots=self.opts.mcon or 1, ttl_s=self.opts.lease_ttl_s)
        self.cfg = SessionConfig(
            account=account.name, hosts=tuple(hosts),
            system_id=lambda: account.secret("login"),
            password=lambda: account.secret("password"),
            system_type=self.system_type(), bind_mode=self.opts.bind_mode,
            tls=self._tls() if self.opts.tls else None,
            max_pending=self.opts.max_pending_submits, enquire_link_s=self.opts.enquire_link_s,
            response_timeout_s=self.opts.response_timeout_s,
            connect_timeout_s=min(10.0, account.timeout_s),
            backoff_min_s=self.opts.backoff_min_s, backoff_max_s=self.opts.backoff_max_s)
        self.session = Session(self.cfg, self.receipts.on_deliver, self.lease)
        self._start_lock = threading.Lock()
        self._started = False
        if start:
            self.start()

    def start(self) -> SmppProvider:
        """Start the session thread (once). Building a provider has no side effects; the
        pool starts it, and so does the first send or status poll."""
        if self.ctx.facts is None:
            raise ConfigError(f"accounts.{self.account.name}: an SMPP session receives "
                              "receipts and needs a worker's fact sink")
        with self._start_lock:
            if not self._started:
                self._started = True
                self.session.start()
        return self

    # --- configuration
    def system_type(self) -> str:
        return system_type(self.opts, self.account.name)

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.opts.ca_file)
        if not self.opts.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _resend_key(self, msg_id: str) -> str:
        return Keys(self.ns).smpp("resend", self.account.name, msg_id)

    # --- pool integration
    def wait_turn(self, stop: threading.Event) -> bool:
        """Block until this process may bind (holds a lease); False if ``stop`` came first.
        The worker pool starts consuming only after this returns True."""
        self.start()
        said = False
        while not stop.is_set() and not self.session.lease_checked.wait(0.2):
            pass
        while not stop.is_set():
            if not self.session.standing_by:
                if said:
                    log.warning("smpp %s: bind lease taken; this process sends now",
                                self.account.name)
                return True
            if not said:
                print(f"gonets worker: {self.account.name} standing by (every bind lease "
                      "is held elsewhere)", flush=True)
                said = True
            stop.wait(0.2)
        return False

    def is_alive(self) -> bool:
        return not self._started or self.session.is_alive()

    # --- sending
    def submit_params(self, msg: Outgoing) -> list[dict[str, Any]]:
        return submit_params(msg, self.opts, self.PROVIDER)

    def _wait(self, fut: Future[Resp], deadline: float) -> Resp:
        """The answer to one request. NotBound if it was never written."""
        try:
            return fut.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            if fut.cancel():
                raise NotBound("no bind in time; the request was withdrawn unsent") from None
            # written: the session answers it or fails it within response_timeout_s
            return fut.result(timeout=self.opts.response_timeout_s + 5)

    def _submit_parts(self, params: list[dict[str, Any]], only: list[int] | None = None,
                      pace: Pacing | None = None) -> dict[int, Resp | LinkLost | NotBound]:
        """Submit the parts (all, or the indexes in ``only``) through the window, together in
        one pacing slot: the first transmission takes the slot the actor booked, every later
        one (a resend after a lost link, parts the bind refused for now) a new one. Parts
        whose slot went by before the session thread could write them (a stalled host) are
        given a new slot."""
        idx = list(range(len(params))) if only is None else list(only)
        out: dict[int, Resp | LinkLost | NotBound] = {}
        deadline = time.monotonic() + self.opts.bind_wait_s
        while idx:
            slot_at, late_s = 0.0, None
            if pace is not None:
                slot_at, late_s = pace.take(len(idx)).at, pace.tolerance_s
            futs: dict[int, Future[Resp]] = {}
            for i in idx:
                try:
                    futs[i] = self.session.request("submit_sm", params[i], not_before=slot_at,
                                                   late_s=late_s)
                except NotBound as exc:
                    out[i] = exc
            missed: list[int] = []
            for i, fut in futs.items():
                try:
                    out[i] = self._wait(fut, deadline)
                except SlotMissed:
                    missed.append(i)
                except (LinkLost, NotBound) as exc:
                    out[i] = exc
                except FutureTimeout:
                    out[i] = LinkLost("no answer and no link-loss report", time.monotonic())
            if missed and pace is not None:
                try:
                    pace.missed()
                except RetryLater as exc:  # no slot could be kept: these parts did not go
                    for i in missed:
                        out[i] = NotBound(str(exc))
                    break
            idx = missed
        return out

    def send(self, msg: Outgoing, pace: Pacing | None = None) -> Submitted:
        self.start()
        self._raise_if_unusable()
        params = self.submit_params(msg)
        # the resend marker: this provider's own key (core/keys.py smpp:resend)
        resending = bool(self.ctx.redis.delete(self._resend_key(msg.id)))
        started = time.monotonic()
        with span("smpp.submit", "submit_sm -> submit_sm_resp", parts=len(params)):
            results = self._submit_parts(params, pace=pace)
        ids: dict[int, str] = {}
        duplicate_parts: list[int] = []
        attempt = -1
        while True:  # ends in a return, a raise, or the 45 s guard below
            attempt += 1
            retry: list[int] = []
            unknown: list[tuple[int, LinkLost]] = []
            for i, r in sorted(results.items()):
                if isinstance(r, NotBound):
                    retry.append(i)
                elif isinstance(r, LinkLost):
                    unknown.append((i, r))
                elif r.status == consts.SMPP_ESME_ROK:
                    ids[i] = str(r.fields.get("message_id") or "")
                elif r.status == DUPLICATE_STATUS and (resending or attempt > 0):
                    duplicate_parts.append(i)  # our own earlier copy was taken
                elif r.status == DUPLICATE_STATUS:
                    raise Permanent("the server refused an identical message sent within "
                                    "its duplicate window", code=f"0x{r.status:02x}",
                                    provider=self.PROVIDER, rejected=True)
                elif r.status in (consts.SMPP_ESME_RTHROTTLED, consts.SMPP_ESME_RMSGQFUL) \
                        and (ids or duplicate_parts):
                    retry.append(i)  # parts of one message must all go within a minute
                else:
                    self._raise_status(r.status, sent_parts=len(ids))
            if not retry and not unknown:
                break
            # what a lost link leaves: resend only while the server's duplicate rule covers it
            window = self.opts.duplicate_window_s
            for i, ll in unknown:
                if window > 0 and time.monotonic() - ll.sent_at < window - 15:
                    retry.append(i)
                else:
                    self.receipts.orphan(msg)
                    raise OutcomeUnknown("the link died before the server answered; waiting "
                                         "for its receipt before any resend",
                                         provider=self.PROVIDER, delay_s=30.0)
            if not ids and not duplicate_parts and not unknown:
                if resending:  # an earlier copy may be out: keep it marked for a lookup
                    raise OutcomeUnknown("no SMPP bind to resend on", provider=self.PROVIDER,
                                         delay_s=5.0)
                # nothing went out at all: give the message back to the queue
                raise RetryLater("no SMPP bind available", provider=self.PROVIDER,
                                 delay_s=2.0)
            if time.monotonic() - started > 45:
                self.receipts.orphan(msg)
                raise OutcomeUnknown("parts of the message could not all be sent within a "
                                     "minute", provider=self.PROVIDER, delay_s=30.0)
            if unknown:
                resending = True
            time.sleep(min(1.0, 0.2 * (attempt + 1)))
            # a second transmission: it books its own pacing slot
            results = self._submit_parts(params, sorted(retry), pace)
        provider_ids = list(dict.fromkeys(ids[i] for i in sorted(ids) if ids[i]))
        if duplicate_parts and not provider_ids:
            # every part was taken before, answers lost: the receipt brings the id
            pid = self.receipts.orphan(msg)
            return Submitted(provider_id=pid or "", parts=len(params))
        self.receipts.remember(msg.id, provider_ids)
        return Submitted(provider_id=provider_ids[0] if provider_ids else "",
                         parts=len(params))

    def _raise_if_unusable(self) -> None:
        err = self.session.bind_error
        if err is not None and not self.session.bound:
            cls, kw = SUBMIT_ERRORS.get(err.status, (AccountProblem, {
                "detail": "bind refused", "alert": "credentials"}))
            raise cls(code=f"0x{err.status:02x}", provider=self.PROVIDER, **kw) from err

    def _raise_status(self, status: int, sent_parts: int) -> None:
        cls, kw = SUBMIT_ERRORS.get(status, (Permanent, {"detail": "submit refused"}))
        if sent_parts and cls is not Permanent:
            cls, kw = OutcomeUnknown, {"detail": f"some parts taken, then {kw['detail']}",
                                       "delay_s": 30.0}
        raise cls(code=f"0x{status:02x}", provider=self.PROVIDER, **kw)

    # --- lookup of a send whose outcome is unknown
    def lookup(self, msg: Outgoing) -> StatusReport | None:
        if self.receipts.provider_ids(msg.id) is not None:
            return StatusReport(status=Status.SUBMITTED, raw="accepted")
        age_s = (now_ms() - (msg.inflight_ms or now_ms())) / 1000
        if self.opts.duplicate_window_s > 0 and age_s < self.opts.duplicate_window_s - 15:
            # an identical resend is refused if the first was taken: safe to try
            self.ctx.redis.set(self._resend_key(msg.id), "1", ex=300)  # its own key, as above
            return None
        if self.receipts.orphan(msg) is not None:  # its receipt came already
            return StatusReport(status=Status.SUBMITTED, raw="accepted")
        wait_s = self.opts.receipt_wait_s
        if age_s < wait_s:
            raise OutcomeUnknown("waiting for the receipt of a submit whose answer was lost",
                                 provider=self.PROVIDER, delay_s=min(30.0, wait_s - age_s))
        # a receipt may still come (SMSC: up to a day, err 245), but a resend could now be a
        # second copy and nothing can be asked: the account's policy decides
        self.receipts.forget_orphan(msg)
        window = self.opts.duplicate_window_s
        raise NoLookup(f"no receipt came within {wait_s:g} s"
                       + (f", the server's {window:g} s duplicate window is over" if window else
                          "") + ", and SMPP has no lookup by a reference of ours",
                       provider=self.PROVIDER, on_lost_answer=self.opts.on_lost_answer)

    # --- status
    def _provider_id(self, msg: Outgoing) -> str | None:
        """The server's id of ``msg``: the one its submit_sm_resp (or matched receipt) gave."""
        ids = self.receipts.provider_ids(msg.id)
        return ids[0] if ids else msg.provider_id

    def status(self, msg: Outgoing) -> StatusReport:
        pid = self._provider_id(msg)
        if not pid:
            return StatusReport(status=Status.SUBMITTED, raw="no id yet")
        sender = msg.sender or ""
        params = dict(message_id=pid, source_addr=sender.lstrip("+"),
                      source_addr_ton=(consts.SMPP_TON_INTL if sender.lstrip("+").isdigit()
                                       else consts.SMPP_TON_ALNUM),
                      source_addr_npi=(consts.SMPP_NPI_ISDN if sender.lstrip("+").isdigit()
                                       else consts.SMPP_NPI_UNK))
        self.start()
        try:
            fut = self.session.request("query_sm", params)
            resp = self._wait(fut, time.monotonic() + self.opts.bind_wait_s)
        except (NotBound, LinkLost) as exc:
            raise RetryLater(f"query_sm not answered: {exc}", provider=self.PROVIDER) from exc
        if resp.status == consts.SMPP_ESME_RQUERYFAIL:
            raise Permanent("the server has no such message", code="0x67",
                            provider=self.PROVIDER)
        if resp.status != consts.SMPP_ESME_ROK:
            raise RetryLater("query_sm refused", code=f"0x{resp.status:02x}",
                             provider=self.PROVIDER)
        state = int(resp.fields.get("message_state") or 0)
        word = STATE_WORDS.get(state, "UNKNOWN")
        err = resp.fields.get("error_code")
        return StatusReport(status=STAT_MAP.get(word, Status.SUBMITTED), raw=word,
                            error_code=str(err) if err else None)

    def balance(self) -> Balance:
        raise Permanent("SMPP has no balance command; use the account's HTTP API",
                        provider=self.PROVIDER)

    def close(self) -> None:
        if self._started:
            self.session.close(drain_timeout_s=self.ctx.settings.drain_timeout_s)
