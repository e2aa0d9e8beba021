"""SMSC HTTP API provider (shared/providers/smsc-http-api-1c-library.txt).

Commands ``send`` (also ``cost=1`` for an estimate), ``status`` (with HLR fields) and
``balance`` on ``/sys/<command>.php``; login+password or an API key; answers in ``fmt=1``
(comma-separated, as the 1C library reads them) or ``fmt=3`` (JSON); the servers of
``base_urls`` tried in turn when one does not answer, as the library does.

Sends carry Gonets' own numeric id (``id=``), so when an answer is lost (timeout after the
request went out, connection reset, 5xx) the message is looked up by that id on the next
server before anything is sent again: a lost answer never doubles a message.
"""

from __future__ import annotations

import json
import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import httpx

from core.contracts import Status
from core.errors import (
    AccountProblem,
    OutcomeUnknown,
    Permanent,
    ProviderError,
    RetryLater,
    SlowDown,
)
from core.provider_options import SmscHttpAccountOptions
from core.settings import Account
from core.smsc_status import smsc_report
from workers.providers.base import (
    Balance,
    CheckPlan,
    Outgoing,
    Pacing,
    ProviderContext,
    StatusReport,
    Submitted,
    account_options,
    wire_extensions,
)

log = logging.getLogger(__name__)

PROVIDER = "smsc_http"
#: the 1C library's servers, tried in this order
DEFAULT_URLS = ["https://smsc.ru", "https://www2.smsc.ru", "https://www3.smsc.ru",
                "https://www4.smsc.ru", "https://www5.smsc.ru"]

# --- protocol knowledge as data ------------------------------------------------------------

#: HTTP API error code -> (error class, kwargs). Codes 1-9 of send.php / status.php.
SEND_ERRORS: dict[int, tuple[type[ProviderError], dict[str, Any]]] = {
    1: (Permanent, {"detail": "bad request parameters"}),
    2: (AccountProblem, {"detail": "bad login/password or API key", "alert": "credentials"}),
    3: (AccountProblem, {"detail": "insufficient funds", "alert": "no_funds"}),
    4: (RetryLater, {"detail": "IP address temporarily blocked by SMSC", "delay_s": 60.0}),
    5: (Permanent, {"detail": "bad delivery time format"}),
    6: (Permanent, {"detail": "message forbidden by text or sender name", "rejected": True}),
    7: (Permanent, {"detail": "bad phone number format", "rejected": True}),
    8: (Permanent, {"detail": "cannot be delivered to this number", "rejected": True}),
    # 9 is also "too many requests": when the lookup shows it was not our own request
    # repeated, SMSC says we send too fast
    9: (SlowDown, {"detail": "too many requests (or an identical one within a minute)",
                   "delay_s": 2.0}),
}
STATUS_ERRORS: dict[int, tuple[type[ProviderError], dict[str, Any]]] = {
    **SEND_ERRORS,
    3: (Permanent, {"detail": "message not found"}),
}
#: message format option -> send.php flag
FORMAT_FLAGS = {"flash": ("flash", "1"), "push": ("push", "1"), "hlr": ("hlr", "1"),
                "bin": ("bin", "1"), "bin_hex": ("bin", "2"), "ping": ("ping", "1"),
                "viber": ("viber", "1")}
#: fmt=1 HLR fields after status,time,err (order of the 1C library)
HLR_FIELDS = ("mcc", "mnc", "country", "operator", "roaming_country", "roaming_operator",
              "imsi", "msc")


class Unreadable(ValueError):
    """An SMSC answer that cannot be read (the only error ``parse_answer`` raises)."""


class _Answer:
    """One decoded answer: ``fields`` for fmt=1, ``data`` for fmt=3; ``error`` if it is one."""

    def __init__(self, fields: list[str] | None = None, data: dict[str, Any] | None = None,
                 error: int | None = None) -> None:
        self.fields = fields or []
        self.data = data or {}
        self.error = error


_INT = re.compile(r"[+-]?[0-9]{1,18}")


def number(v: Any) -> int:
    """An integer SMSC wrote as a number or a string of ASCII digits (``"²"`` is no digit);
    raises Unreadable for anything else (None, a list, a fraction, inf)."""
    if isinstance(v, bool):
        raise Unreadable(f"not a number: {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e18:
        return int(v)
    if isinstance(v, str) and _INT.fullmatch(v.strip()):
        return int(v.strip())
    raise Unreadable(f"not a number: {str(v)[:20]!r}")


def money(v: Any) -> Decimal:
    """An amount SMSC wrote as a number or a decimal string; raises Unreadable for anything
    else, NaN and infinities included (a balance check compares it)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)) \
            or not str(v).isascii():  # Decimal reads "٣" as 3: no digit SMSC writes
        raise Unreadable(f"not an amount: {str(v)[:20]!r}")
    try:
        d = Decimal(str(v).strip())
    except InvalidOperation:
        raise Unreadable(f"not an amount: {str(v)[:20]!r}") from None
    if not d.is_finite():
        raise Unreadable("not a finite amount")
    return d


def _text(v: Any) -> str | None:
    return None if v is None or isinstance(v, (dict, list, bool)) else str(v)


def parse_answer(body: str, fmt: int) -> _Answer:
    """Decode a send/status/balance answer. Raises Unreadable (a ValueError) on anything
    malformed, and nothing else, whatever the text."""
    body = body.strip()
    if fmt == 3:
        try:
            data = json.loads(body)
        except RecursionError as exc:  # "[" * 100_000
            raise Unreadable("the JSON answer nests too deeply to be read") from exc
        except ValueError as exc:
            raise Unreadable(f"not a JSON answer: {exc}") from exc
        if not isinstance(data, dict):
            raise Unreadable("JSON answer is not an object")
        if "error_code" in data or "error" in data:
            code = number(data.get("error_code"))
            if code <= 0:
                raise Unreadable("error answer without a positive error_code")
            return _Answer(data=data, error=code)
        return _Answer(data=data)
    if not body:
        raise Unreadable("empty answer")
    fields = [f.strip() for f in body.split(",")]
    if len(fields) == 2 and fields[1].startswith("-"):
        code = number(fields[1][1:])
        if code <= 0:
            raise Unreadable("bad error code")
        return _Answer(fields=fields, error=code)
    return _Answer(fields=fields)


def _raise(table: dict[int, tuple[type[ProviderError], dict[str, Any]]], code: int,
           cause: Exception | None = None) -> None:
    cls, kw = table.get(code, (Permanent, {"detail": "unknown SMSC error"}))
    exc = cls(code=str(code), provider=PROVIDER, **kw)
    raise exc from cause


class SmscHttp:
    def __init__(self, account: Account, ctx: ProviderContext | None = None, *,
                 client: httpx.Client | None = None) -> None:
        self.account = account
        self.opts = account_options(SmscHttpAccountOptions, account)
        self.poll_plan = CheckPlan(self.opts.first_poll_s, self.opts.max_poll_interval_s)
        self.urls = [u.rstrip("/") for u in (account.base_urls or DEFAULT_URLS)]
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(account.timeout_s, connect=min(5.0, account.timeout_s)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        # built once, not on every request: each command's URL on each server, the headers,
        # the timeout (httpx's build_request merges all of these per call: ~0.1 CPU-ms)
        self._endpoints = {(url, command): httpx.URL(f"{url}/sys/{command}.php")
                           for url in self.urls for command in ("send", "status", "balance")}
        self._headers = httpx.Headers({**self.client.headers,
                                       "Content-Type": "application/x-www-form-urlencoded"})
        self._timeout = self.client.timeout.as_dict()

    # --- plumbing
    def _auth(self) -> dict[str, str]:
        if self.account.has_secret("apikey"):
            return {"apikey": self.account.secret("apikey")}
        return {"login": self.account.secret("login"), "psw": self.account.secret("password")}

    def _post(self, url: str, command: str, params: dict[str, str],
              pace: Pacing | None = None) -> httpx.Response:
        data = {**self._auth(), "fmt": str(self.opts.fmt), "charset": "utf-8", **params}
        # the request as client.post would build it, from the parts built once (through
        # client.send: its pool, and sentry-sdk's span of the call)
        request = httpx.Request("POST", self._endpoints[url, command],
                                content=urlencode(data).encode("ascii"), headers=self._headers,
                                extensions={"timeout": self._timeout, **wire_extensions(pace)})
        return self.client.send(request)

    def _decode(self, resp: httpx.Response) -> _Answer:
        ctype = resp.headers.get("content-type", "")
        text = resp.content.decode("utf-16-be" if "utf-16" in ctype else "utf-8", "replace")
        return parse_answer(text, self.opts.fmt)

    def _idempotent(self, command: str, params: dict[str, str]) -> _Answer:
        """A read-only command, tried on each server in turn."""
        last: Exception | None = None
        for url in self.urls:
            try:
                resp = self._post(url, command, params)
            except httpx.TransportError as exc:
                last = exc
                continue
            if resp.status_code >= 500:
                last = RuntimeError(f"HTTP {resp.status_code}")
                continue
            try:
                return self._decode(resp)
            except (ValueError, UnicodeDecodeError) as exc:
                last = exc
                continue
        raise RetryLater(f"no SMSC server answered {command}", provider=PROVIDER) from last

    # --- protocol
    def send_params(self, msg: Outgoing) -> dict[str, str]:
        p = {"phones": msg.phone, "mes": msg.text, "id": str(msg.seq), "cost": "3"}
        if msg.sender:
            p["sender"] = msg.sender
        if msg.validity_min:
            p["valid"] = f"{msg.validity_min // 60:02d}:{msg.validity_min % 60:02d}"
        o = msg.options
        if o.get("translit"):
            p["translit"] = str(o["translit"])
        for key in ("time", "tz", "maxsms"):
            if o.get(key) is not None:
                p[key] = str(o[key])
        flag = FORMAT_FLAGS.get(o.get("format", "sms"))
        if flag:
            p[flag[0]] = flag[1]
        return p

    def send(self, msg: Outgoing, pace: Pacing | None = None) -> Submitted:
        params = self.send_params(msg)
        ambiguous: Exception | None = None
        unreachable: Exception | None = None
        for url in self.urls:
            if ambiguous is not None:
                # an earlier server may have taken it: look before sending again
                try:
                    found = self._lookup_on(url, msg)
                except (httpx.TransportError, ValueError, ProviderError):
                    continue
                if found is not None:
                    return Submitted(provider_id=str(msg.seq))
            try:
                # each request waits for its own pacing slot (a retry on the backup server
                # is a second transmission: it books one)
                resp = self._post(url, "send", params, pace)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                unreachable = exc  # nothing went out
                continue
            except RetryLater as exc:  # no pacing slot could be kept: this one did not go
                if ambiguous is not None:
                    raise OutcomeUnknown("SMSC did not confirm the send; look it up before "
                                         "resending", provider=PROVIDER) from ambiguous
                raise exc
            except httpx.TransportError as exc:
                ambiguous = exc
                continue
            if resp.status_code >= 500:
                ambiguous = RuntimeError(f"HTTP {resp.status_code} from {url}")
                continue
            try:
                ans = self._decode(resp)
            except (ValueError, UnicodeDecodeError) as exc:
                ambiguous = exc
                continue
            if ans.error == 9:
                # the same request reached SMSC within the minute: it has ours already?
                try:
                    found = self.lookup(msg)
                except ProviderError as exc:  # cannot tell: it may have ours, look it up later
                    raise OutcomeUnknown("SMSC refused an identical request and could not be "
                                         "asked whether it has ours", provider=PROVIDER) from exc
                if found is not None:
                    return Submitted(provider_id=str(msg.seq))
            if ans.error is not None:
                _raise(SEND_ERRORS, ans.error)
            return self._submitted(ans, msg)
        if ambiguous is not None:
            raise OutcomeUnknown("SMSC did not confirm the send; look it up before resending",
                                 provider=PROVIDER) from ambiguous
        raise RetryLater("no SMSC server could be reached", provider=PROVIDER) from unreachable

    def _submitted(self, ans: _Answer, msg: Outgoing) -> Submitted:
        try:
            if self.opts.fmt == 3:
                d = ans.data
                return Submitted(provider_id=str(number(d["id"])),
                                 parts=number(d.get("cnt", 0)) or None,
                                 cost=_text(d.get("cost")), balance=_text(d.get("balance")))
            f = ans.fields
            return Submitted(provider_id=str(number(f[0])),
                             parts=number(f[1]) if len(f) > 1 else None,
                             cost=f[2] if len(f) > 2 else None,
                             balance=f[3] if len(f) > 3 else None)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise OutcomeUnknown("SMSC answered the send with something unreadable",
                                 provider=PROVIDER) from exc

    def _status_answer(self, ans: _Answer) -> StatusReport | None:
        if ans.error is not None:
            if ans.error == 3:
                return None
            _raise(STATUS_ERRORS, ans.error)
        try:
            if self.opts.fmt == 3:
                d = ans.data
                code, err = number(d["status"]), number(d.get("err", 0))
                extra = {k: str(d[k]) for k in (*HLR_FIELDS, "cn", "net") if d.get(k) not in
                         (None, "")}
            else:
                f = ans.fields
                code, err = number(f[0]), number(f[2]) if len(f) > 2 else 0
                extra = {k: v for k, v in zip(HLR_FIELDS, f[3:], strict=False) if v}
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise RetryLater("SMSC answered a status request with something unreadable",
                             provider=PROVIDER) from exc
        return smsc_report(code, str(err), extra)  # one table with the status webhook

    def _lookup_on(self, url: str, msg: Outgoing) -> StatusReport | None:
        resp = self._post(url, "status", {"phone": msg.phone, "id": str(msg.seq)})
        if resp.status_code >= 500:
            raise ValueError(f"HTTP {resp.status_code}")
        return self._status_answer(self._decode(resp))

    def lookup(self, msg: Outgoing) -> StatusReport | None:
        ans = self._idempotent("status", {"phone": msg.phone, "id": str(msg.seq)})
        return self._status_answer(ans)

    def status(self, msg: Outgoing) -> StatusReport:
        rep = self.lookup(msg)
        if rep is None:
            return StatusReport(status=Status.UNKNOWN, raw="-3", error_code="3",
                                extra={"reason": "SMSC has no such message"})
        return rep

    def cost(self, msg: Outgoing) -> tuple[Decimal, int]:
        """Estimated cost and number of SMS, without sending (``cost=1``)."""
        params = {k: v for k, v in self.send_params(msg).items() if k not in ("id", "cost")}
        ans = self._idempotent("send", {**params, "cost": "1"})
        if ans.error is not None:
            _raise(SEND_ERRORS, ans.error)
        try:
            if self.opts.fmt == 3:
                return money(ans.data["cost"]), number(ans.data["cnt"])
            return money(ans.fields[0]), number(ans.fields[1])
        except (KeyError, IndexError, ValueError) as exc:
            raise RetryLater("unreadable cost answer", provider=PROVIDER) from exc

    def balance(self) -> Balance:
        ans = self._idempotent("balance", {})
        if ans.error is not None:
            _raise(SEND_ERRORS, ans.error)
        try:
            if self.opts.fmt == 3:
                return Balance(money(ans.data["balance"]),
                               _text(ans.data.get("currency")) or "RUB")
            return Balance(money(ans.fields[0]), "RUB")
        except (KeyError, IndexError, ValueError) as exc:
            raise RetryLater("unreadable balance answer", provider=PROVIDER) from exc

    def close(self) -> None:
        self.client.close()
