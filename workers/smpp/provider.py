"""The SMPP provider: messages, receipts and status over one ``Session`` per process.

``smsc_smpp`` and ``mts_smpp`` are this class with different defaults (see their modules).

Message ids.  A ``submit_sm_resp`` id is stored under every normal form of it
(``receipt.id_keys``) as ``<ns>:smpp:mid:<account>:<key> -> <gonets id>``; a receipt looks
itself up under every normal form of its own id.  A receipt whose id is not known yet (it
overtook its submit_sm_resp, or came on another process's bind) is kept as
``<ns>:smpp:early:<account>:<key>`` and applied when the id is stored; both sides write first
and read the other second, so one of them always sees the other.

Unknown outcomes.  A submit written to a link that died before its answer may have been
taken.  Within the server's duplicate window (SMSC: one identical request per minute) the
identical PDU is sent again: the server either takes it (the first never arrived) or refuses
it as a duplicate (the first arrived) — it cannot double.  Past that window nothing is resent
until the receipt could no longer come (``receipt_wait_s``); meanwhile the message is an
"orphan" (``<ns>:smpp:orphan:<account>:<phone>``) that a receipt for that number with an
unknown id is matched to.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from smpplib import consts

from core.contracts import Status
from core.errors import (
    AccountProblem,
    ConfigError,
    OutcomeUnknown,
    Permanent,
    ProviderError,
    RetryLater,
    SlowDown,
)
from core.observability.tracing import span
from core.privacy import mask_phone
from core.settings import Account
from core.store import Store, now_ms
from workers.providers.base import (
    account_options,
    Balance,
    Outgoing,
    CheckPlan,
    ProviderContext,
    StatusReport,
    Submitted,
)
from workers.smpp import codec
from workers.smpp.lease import BindLease
from workers.smpp.receipt import (
    ERR_TABLE,
    STAT_MAP,
    STATE_WORDS,
    Malformed,
    Receipt,
    id_keys,
    parse_deliver_sm,
    receipt_fields,
    receipt_from,
)
from workers.smpp.session import (
    BindRefused,
    LinkLost,
    NotBound,
    Resp,
    Session,
    SessionConfig,
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
#: SMSC's message-type prefixes (smsc-smpp.md, "Sending a …")
TYPE_PREFIX = {"mail": "__MAIL__: ", "call": "__CALL__: ", "viber": "__VIBER__: ",
               "soc": "__SOC__: ", "tgm": "__TGM__: ", "bot": "__BOT__: "}
CONTROL_MARKERS = ("__MAIL__", "__CALL__", "__VIBER__", "__SOC__", "__TGM__", "__BOT__",
                   "__HLR__", "__PING__")
COMMENT = "\n~~~\n"
#: how long the id mappings live (a receipt later than this finds nothing)
MAP_TTL_S = 7 * 24 * 3600


class SmppAccountOptions(BaseModel):
    """``accounts.<name>.options`` of an SMPP account. Units are in the names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bind_mode: Literal["transceiver", "transmitter", "receiver"] = "transceiver"
    #: simultaneous binds the login allows (``MCONn``); None: one, and no flag is sent
    mcon: int | None = Field(None, ge=1, le=9)
    #: bind with ``ISO``: Latin texts go as ISO-8859-1 instead of GSM 03.38
    iso: bool = False
    #: bind with ``SINGLE``: an id and a receipt per part
    single: bool = False
    #: extra system_type words, sent as given after the flags above
    system_type_extra: list[str] = Field(default_factory=list)
    tls: bool = False
    #: CA bundle the server certificate is verified against (default: the system's)
    ca_file: str | None = None
    verify_tls: bool = True
    max_pending_submits: int = Field(300, ge=1, le=10_000)
    enquire_link_s: float = Field(60.0, gt=0, lt=120)
    response_timeout_s: float = Field(30.0, gt=0)
    #: how long an actor waits for a bind before it gives its message back to the queue
    bind_wait_s: float = Field(20.0, gt=0)
    lease_ttl_s: float = Field(10.0, ge=1)
    backoff_min_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    source_addr_ton: int | None = Field(None, ge=0, le=6)
    source_addr_npi: int | None = Field(None, ge=0, le=18)
    dest_addr_ton: int = Field(1, ge=0, le=6)
    dest_addr_npi: int = Field(1, ge=0, le=18)
    registered_delivery: bool = True
    #: concatenate with SAR TLVs instead of a UDH
    sar: bool = False
    #: the server refuses an identical submit within this many seconds (SMSC: 60); 0: it
    #: does not, so a submit of unknown outcome is never resent before ``receipt_wait_s``
    duplicate_window_s: float = Field(60.0, ge=0)
    #: after this long without a receipt a submit of unknown outcome is taken as never sent
    receipt_wait_s: float = Field(6 * 3600.0, gt=0)
    #: after a receipt with a retryable error (err 220) the message is sent again this much
    #: later, at most ``resubmits`` times in all (251, the provider's flood rule, waits for
    #: the account's flood gap instead)
    retry_receipt_delay_s: float = Field(60.0, gt=0)
    resubmits: int = Field(3, ge=0, le=10)
    #: the message types and comment of SMSC (``__MAIL__``… ``\\n~~~\\n``)
    smsc_text_types: bool = True
    first_poll_s: float = Field(600.0, gt=0)
    max_poll_interval_s: float = Field(6 * 3600.0, gt=0)


def split_host(value: str, default_port: int | None, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    if default_port is None:
        raise ConfigError(f"{what}: no port (set smpp_port or write host:port)")
    return value, default_port


def smsc_text(text: str, options: dict[str, Any]) -> str:
    """The text SMSC must receive for a typed message (smsc-smpp.md)."""
    kind = options.get("type", "sms")
    if any(text.startswith(m) for m in CONTROL_MARKERS) or COMMENT in text:
        raise Permanent("the text holds SMSC control markers (__TYPE__ or \\n~~~\\n); "
                        "use the message options instead", provider="smpp", rejected=True)
    if kind == "hlr":
        out = "__HLR__"
    elif kind == "ping":
        out = "__PING__"
    elif kind == "tgm":
        if not (text.isdigit() and 4 <= len(text) <= 8 and text.isascii()):
            raise Permanent("a Telegram code must be 4-8 digits", provider="smpp",
                            rejected=True)
        out = TYPE_PREFIX["tgm"] + text
    elif kind == "mail":
        out = f"{TYPE_PREFIX['mail']}{text}\nsubj:{options['subject']}"
    elif kind == "call":
        out = TYPE_PREFIX["call"] + text + (f"\nvoice:{options['voice']}"
                                            if options.get("voice") else "")
    elif kind == "bot":
        bot = options["bot"] if options["bot"].startswith("@") else "@" + options["bot"]
        out = f"{TYPE_PREFIX['bot']}{text}\nbot:{bot}"
    elif kind in TYPE_PREFIX:
        out = TYPE_PREFIX[kind] + text
    else:
        out = text
    if options.get("comment"):
        out += COMMENT + options["comment"]
    return out


class SmppProvider:
    PROVIDER = "smpp"
    #: options that differ per provider type (overridden by smsc_smpp / mts_smpp)
    DEFAULTS: dict[str, Any] = {}

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
        self.store = Store(ctx.redis, namespace=s.namespace, retention_s=s.retention_s,
                           events_maxlen=s.events_maxlen)
        self.ns = s.namespace
        hosts = [split_host(account.smpp_host, account.smpp_port, f"accounts.{account.name}"
                            ".smpp_host")]
        if account.smpp_backup_host:
            hosts.append(split_host(account.smpp_backup_host, account.smpp_port,
                                    f"accounts.{account.name}.smpp_backup_host"))
        login = account.secret("login")  # checked now: a missing credential is a config error
        self.lease = BindLease(ctx.redis, namespace=s.namespace, login=login,
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
        self.session = Session(self.cfg, self.on_deliver, self.lease)
        self._start_lock = threading.Lock()
        self._started = False
        if start:
            self.start()

    def start(self) -> "SmppProvider":
        """Start the session thread (once). Building a provider has no side effects; the
        pool starts it, and so does the first send or status poll."""
        with self._start_lock:
            if not self._started:
                self._started = True
                self.session.start()
        return self

    # --- configuration
    def system_type(self) -> str:
        flags = []
        if self.opts.mcon is not None:
            flags.append(f"MCON{self.opts.mcon}")
        if self.opts.iso:
            flags.append("ISO")
        if self.opts.single:
            flags.append("SINGLE")
        flags += self.opts.system_type_extra
        st = ",".join(flags)
        if len(st) > 12:
            raise ConfigError(f"accounts.{self.account.name}: system_type {st!r} is longer "
                              "than SMPP's 12 characters")
        return st

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.opts.ca_file)
        if not self.opts.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    # --- keys
    def _k(self, *parts: str) -> str:
        return ":".join((self.ns, "smpp", *parts, ))

    def _mid_key(self, key: str) -> str:
        return self._k("mid", self.account.name, key)

    def _early_key(self, key: str) -> str:
        return self._k("early", self.account.name, key)

    def _orphan_key(self, phone: str) -> str:
        return self._k("orphan", self.account.name, phone)

    def _resend_key(self, msg_id: str) -> str:
        return self._k("resend", self.account.name, msg_id)

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
        text = smsc_text(msg.text, msg.options) if self.opts.smsc_text_types else msg.text
        try:
            enc = codec.encode(text, iso=self.opts.iso, ref=msg.seq & 0xFF, sar=self.opts.sar)
        except codec.TooLong as exc:
            raise Permanent(str(exc), provider=self.PROVIDER, rejected=True) from exc
        sender = msg.sender or ""
        if self.opts.source_addr_ton is not None:
            ton, npi = self.opts.source_addr_ton, self.opts.source_addr_npi or 0
        elif sender.lstrip("+").isdigit():
            ton, npi = consts.SMPP_TON_INTL, consts.SMPP_NPI_ISDN
        else:
            ton, npi = consts.SMPP_TON_ALNUM, consts.SMPP_NPI_UNK
        base: dict[str, Any] = dict(
            source_addr_ton=ton, source_addr_npi=npi, source_addr=sender.lstrip("+"),
            dest_addr_ton=self.opts.dest_addr_ton, dest_addr_npi=self.opts.dest_addr_npi,
            destination_addr=msg.phone, data_coding=enc.data_coding, esm_class=enc.esm_class,
            registered_delivery=1 if self.opts.registered_delivery else 0,
            priority_flag=1 if msg.lane == "urgent" else 0)
        if msg.validity_min:
            # relative validity (SMPP v3.4 §7.1.1): YYMMDDhhmmss000R
            days, rest = divmod(msg.validity_min, 1440)
            hours, minutes = divmod(rest, 60)
            base["validity_period"] = f"0000{days:02d}{hours:02d}{minutes:02d}00000R"
        out = []
        for i, part in enumerate(enc.parts, 1):
            p = dict(base, short_message=part)
            if self.opts.sar and enc.count > 1:
                p.update(sar_msg_ref_num=enc.ref, sar_total_segments=enc.count,
                         sar_segment_seqnum=i)
            out.append(p)
        return out

    def _wait(self, fut: Future[Resp], deadline: float) -> Resp:
        """The answer to one request. NotBound if it was never written."""
        try:
            return fut.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            if fut.cancel():
                raise NotBound("no bind in time; the request was withdrawn unsent") from None
            # written: the session answers it or fails it within response_timeout_s
            return fut.result(timeout=self.opts.response_timeout_s + 5)

    def _submit_parts(self, params: list[dict[str, Any]],
                      only: list[int] | None = None) -> dict[int, Resp | LinkLost | NotBound]:
        """Submit the parts (all, or the indexes in ``only``) through the window at once."""
        idx = list(range(len(params))) if only is None else only
        futs: dict[int, Future[Resp]] = {}
        out: dict[int, Resp | LinkLost | NotBound] = {}
        for i in idx:
            try:
                futs[i] = self.session.request("submit_sm", params[i])
            except NotBound as exc:
                out[i] = exc
        deadline = time.monotonic() + self.opts.bind_wait_s
        for i, fut in futs.items():
            try:
                out[i] = self._wait(fut, deadline)
            except (LinkLost, NotBound) as exc:
                out[i] = exc
            except FutureTimeout:
                out[i] = LinkLost("no answer and no link-loss report", time.monotonic())
        return out

    def send(self, msg: Outgoing) -> Submitted:
        self.start()
        self._raise_if_unusable()
        params = self.submit_params(msg)
        resending = bool(self.ctx.redis.delete(self._resend_key(msg.id)))
        started = time.monotonic()
        with span("smpp.submit", "submit_sm -> submit_sm_resp", parts=len(params)):
            results = self._submit_parts(params)
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
                    self._orphan(msg)
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
                self._orphan(msg)
                raise OutcomeUnknown("parts of the message could not all be sent within a "
                                     "minute", provider=self.PROVIDER, delay_s=30.0)
            if unknown:
                resending = True
            time.sleep(min(1.0, 0.2 * (attempt + 1)))
            results = self._submit_parts(params, sorted(retry))
        provider_ids = list(dict.fromkeys(ids[i] for i in sorted(ids) if ids[i]))
        if duplicate_parts and not provider_ids:
            # every part was taken before, answers lost: the receipt brings the id
            pid = self._orphan(msg)
            return Submitted(provider_id=pid or "", parts=len(params))
        self.remember(msg.id, provider_ids)
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

    # --- id mapping and early receipts
    def remember(self, msg_id: str, provider_ids: list[str]) -> None:
        """Store provider id -> message id, then apply receipts that came first."""
        pipe = self.ctx.redis.pipeline()
        keys: list[str] = []
        for pid in provider_ids:
            for k in id_keys(pid):
                keys.append(k)
                pipe.set(self._mid_key(k), msg_id, ex=MAP_TTL_S)
        pipe.set(self._k("gid", self.account.name, msg_id), json.dumps(provider_ids),
                 ex=MAP_TTL_S)
        for k in keys:
            pipe.getdel(self._early_key(k))
        res = pipe.execute()
        for raw in res[len(keys) + 1:]:
            if raw:
                self._apply(msg_id, _receipt_load(raw), early=True)

    def _orphan(self, msg: Outgoing) -> str | None:
        """Mark ``msg`` as sent with its answer lost; a receipt for its number with an unknown
        id will be taken as its own.  Returns that receipt's id if one came already."""
        r = self.ctx.redis
        key = self._orphan_key(msg.phone)
        r.zadd(key, {msg.id: now_ms()}, nx=True)
        r.expire(key, int(self.opts.receipt_wait_s) + 3600)
        early = self._k("earlyphone", self.account.name, msg.phone)
        while True:
            pid = r.lpop(early)
            if pid is None:
                return None
            if any(r.exists(self._early_key(k)) for k in id_keys(pid)):
                r.zrem(key, msg.id)
                log.warning("smpp %s: receipt %s matched by number to %s (its answer was lost)",
                            self.account.name, pid, msg.id)
                self.remember(msg.id, [pid])
                return str(pid)

    # --- lookup of a send whose outcome is unknown
    def lookup(self, msg: Outgoing) -> StatusReport | None:
        r = self.ctx.redis
        known = r.get(self._k("gid", self.account.name, msg.id))
        if known:
            return StatusReport(status=Status.SUBMITTED, raw="accepted")
        rec = self.store.find(msg.id) or {}
        inflight = int(rec.get("inflight_ms") or 0) or now_ms()
        age_s = (now_ms() - inflight) / 1000
        if self.opts.duplicate_window_s > 0 and age_s < self.opts.duplicate_window_s - 15:
            # an identical resend is refused if the first was taken: safe to try
            r.set(self._resend_key(msg.id), "1", ex=300)
            return None
        self._orphan(msg)
        if age_s < self.opts.receipt_wait_s:
            raise OutcomeUnknown("waiting for the receipt of a submit whose answer was lost",
                                 provider=self.PROVIDER,
                                 delay_s=min(60.0, self.opts.receipt_wait_s - age_s))
        r.zrem(self._orphan_key(msg.phone), msg.id)
        return None  # no receipt could still come: it was never taken

    # --- status
    def _provider_id(self, msg: Outgoing) -> str | None:
        """The server's id of ``msg``: the one its submit_sm_resp (or matched receipt) gave."""
        known = self.ctx.redis.get(self._k("gid", self.account.name, msg.id))
        if known:
            ids = json.loads(known)
            if ids:
                return str(ids[0])
        return msg.provider_id

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

    # --- receiving (dispatcher thread)
    def on_deliver(self, body: bytes) -> int:
        """Apply one deliver_sm; returns the deliver_sm_resp status."""
        try:
            pdu = parse_deliver_sm(body)
        except Malformed as exc:
            log.warning("smpp %s: malformed deliver_sm refused: %s", self.account.name, exc)
            return consts.SMPP_ESME_RINVMSGLEN
        if not pdu.is_receipt:
            self._incoming(pdu)
            return consts.SMPP_ESME_ROK
        try:
            rc = receipt_from(pdu)
        except Malformed as exc:
            log.warning("smpp %s: unreadable receipt dropped: %s", self.account.name, exc)
            return consts.SMPP_ESME_ROK  # resending it would not make it readable
        self.on_receipt(rc, phone=pdu.str("source_addr"))
        return consts.SMPP_ESME_ROK

    def on_receipt(self, rc: Receipt, phone: str = "") -> None:
        keys = id_keys(rc.message_id)
        r = self.ctx.redis
        msg_id = None
        for k in keys:
            msg_id = r.get(self._mid_key(k))
            if msg_id:
                break
        if not msg_id and phone:
            msg_id = self._match_orphan(phone, rc)
        if msg_id:
            self._apply(msg_id, rc)
            return
        # overtook its submit_sm_resp: keep it; remember() applies it. Then look again, in
        # case the mapping landed between our read and our write.
        raw = _receipt_dump(rc, phone)
        pipe = r.pipeline()
        for k in keys:
            pipe.set(self._early_key(k), raw, ex=24 * 3600)
        if phone:  # an orphan registered later finds it by number
            pipe.rpush(self._k("earlyphone", self.account.name, phone), rc.message_id)
            pipe.expire(self._k("earlyphone", self.account.name, phone), 24 * 3600)
        pipe.execute()
        for k in keys:
            msg_id = r.get(self._mid_key(k))
            if msg_id:
                if r.delete(self._early_key(k)):
                    self._apply(msg_id, rc)
                return
        log.info("smpp %s: receipt for unknown id %s kept for its submit",
                 self.account.name, rc.message_id)

    def _match_orphan(self, phone: str, rc: Receipt) -> str | None:
        key = self._orphan_key(phone)
        for mid in self.ctx.redis.zrange(key, 0, -1):
            rec = self.store.find(mid)
            if rec is None or Status(rec["status"]).final:
                self.ctx.redis.zrem(key, mid)
                continue
            self.ctx.redis.zrem(key, mid)
            self.remember(mid, [rc.message_id])
            log.warning("smpp %s: receipt %s matched by number to %s (its answer was lost)",
                        self.account.name, rc.message_id, mid)
            return str(mid)
        return None

    def _apply(self, msg_id: str, rc: Receipt, early: bool = False) -> None:
        info = rc.err_info
        reason = info.meaning if info and rc.err else ""
        if info is not None and rc.err and info.action in ("retry", "flood") \
                and rc.status != Status.DELIVERED and self._resend(msg_id, rc, info.action,
                                                                   reason):
            return
        try:
            self.store.transition(msg_id, rc.status, provider_status=rc.raw,
                                  error_code=str(rc.err) if rc.err else None, reason=reason,
                                  provider_id=rc.message_id, receipt_ms=now_ms(),
                                  inflight_ms="", **receipt_fields(rc))
        except Exception as exc:
            if type(exc).__name__ == "UnknownMessage":
                return  # expired after retention
            raise
        if info is not None and info.action in ("funds", "account"):
            self._alert(rc, info.action)

    def _resend(self, msg_id: str, rc: Receipt, action: str, reason: str) -> bool:
        """A retryable receipt (err 220: the operator's queue overflowed) or the provider's
        flood rule (err 251): send the message again, later, at most ``resubmits`` times;
        251 also fills the number's flood burst so our own rule holds what follows. Returns
        False when the receipt's final status should be applied instead."""
        from core.broker import enqueue
        from core.contracts import send_actor, send_queue
        from workers.traffic import get_traffic

        rec = self.store.find(msg_id)
        if rec is None:
            return True  # expired after retention: nothing to do
        lim = self.account.limits
        if action == "flood":
            get_traffic(self.store).flood.saturate(self.account, rec["phone"])
            delay_s, status = lim.flood_gap_s, Status.DEFERRED
        else:
            delay_s, status = self.opts.retry_receipt_delay_s, Status.QUEUED
        # the same text to the same number within the provider's duplicate window would be
        # refused as a repeat (SMSC: one identical request a minute): wait it out
        delay_s = max(delay_s, lim.duplicate_window_s)
        done = self.store.resubmit(msg_id, rc.message_id, reason=f"{reason}; sent again",
                                   error_code=str(rc.err), status=status,
                                   max_resubmits=self.opts.resubmits)
        if done == 0:
            return False
        if done == 1:
            import dramatiq

            enqueue(dramatiq.get_broker(), send_queue(self.account.name, rec["lane"]),
                    send_actor(rec["lane"]), msg_id, delay_ms=int(delay_s * 1000))
            log.warning("smpp %s: message %s got err %s (%s); sent again in %.0f s",
                        self.account.name, msg_id, rc.err, reason, delay_s)
        return True

    def _alert(self, rc: Receipt, action: str) -> None:
        from workers.runtime import get_runtime

        alert = "no_funds" if action == "funds" else ("ip" if rc.err == 239 else "sender")
        exc = AccountProblem(ERR_TABLE[rc.err or 0].meaning, code=str(rc.err),
                             provider=self.PROVIDER, alert=alert)
        try:
            get_runtime().pause(self.account.name, exc)
        except Exception:
            log.exception("smpp %s: could not raise the %s alert", self.account.name, alert)

    def _incoming(self, pdu: Any) -> None:
        iso = self.opts.iso
        text = codec.decode(pdu.short_message, pdu.int("data_coding"), iso=iso,
                            udhi=bool(pdu.int("esm_class") & 0x40))
        src = pdu.str("source_addr")
        self.ctx.redis.xadd(self._k("incoming"), {
            "account": self.account.name, "from": src, "to": pdu.str("destination_addr"),
            "text": text, "at_ms": str(now_ms())},
            maxlen=self.ctx.settings.events_maxlen, approximate=True)
        log.info("smpp %s: incoming message from %s", self.account.name, mask_phone(src))


def _receipt_dump(rc: Receipt, phone: str) -> str:
    d = {k: v for k, v in rc.__dict__.items()}
    d["phone"] = phone
    return json.dumps(d)


def _receipt_load(raw: str) -> Receipt:
    d = json.loads(raw)
    d.pop("phone", None)
    return Receipt(**d)
