"""SMS2 HTTP gate provider (shared/providers/sms2-http-gate.md).

Scripts on the gate (``base_urls[0]``, default ``https://my.sms2.ru``), all POSTed as
``application/x-www-form-urlencoded`` in **Windows-1251** with ``user`` and ``pass``:

* ``sms.cgi`` (``phone``, ``message``, ``from``, ``flash``) answers
  ``Message successfully sent! Message_ID=…`` or one of the ``Error: …`` lines of
  ``SEND_ERRORS``;
* ``sms_status2.cgi`` (``mess_id``) answers ``Status: unknown|delivered|not_delivered`` or
  ``Error: authentication failure`` / ``Error: no such message``;
* ``get_credit_info.cgi`` answers ``Balance: 5006.75; Overdraft: -10000.00``;
* ``api_call.cgi`` (``function`` = ``list_of_bases``, ``add_phone_to_base``,
  ``add_phone_to_base_batch``, ``is_phone_in_base``, ``get_base``, ``remove_phone_from_base``,
  ``start_multicast``): phone bases and campaigns, methods of ``Sms2Http`` below and
  ``gonets sms2 …`` commands;
* ``api.php`` (MMS: ``user``, ``hash`` = MD5 of the password, ``phone``, ``subject``,
  ``text`` in UTF-8, a PNG ``picture``; 300 KB at most, checked before sending) answers
  ``Ok_…`` or ``Error`` and a description.

Every answer is read by pure functions (``parse_line`` and friends) that raise ValueError on
anything they do not recognise; the provider turns that into ``OutcomeUnknown`` for a send
(the message is kept and tried again) and ``RetryLater`` for a read.  Unknown ``Error: …``
lines are kept raw (as the error code) and fail the message.

The gate has no lookup by a reference of ours: a send whose answer was lost cannot be checked,
so ``lookup`` raises ``NoLookup`` with the account's ``on_lost_answer`` (resend, give up, or
auto).  When a resend of such a message is answered ``Error: message duplication``, the gate
took the first copy: ``AlreadyAccepted`` (the record ends ``unknown``, not ``rejected``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from decimal import InvalidOperation
from typing import Any
from urllib.parse import urlencode

import httpx

from core import sms2_rules
from core.contracts import Status
from core.errors import (
    AlreadyAccepted,
    InvalidInput,
    NoLookup,
    OutcomeUnknown,
    Permanent,
    RetryLater,
)
from core.provider_options import Sms2HttpAccountOptions
from core.settings import Account
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
from workers.providers.sms2_protocol import (
    _ERROR,
    BASE_ERRORS,
    DUPLICATION,
    PROVIDER,
    SEND_ERRORS,
    STATUS_ERRORS,
    BatchResult,
    Credit,
    PhoneBase,
    decode,
    error_for,
    parse_bases,
    parse_batch,
    parse_credit,
    parse_line,
    parse_phones,
    parse_yes_no,
    status_report,
)

# --- the provider --------------------------------------------------------------------------


class Sms2Http:
    def __init__(self, account: Account, ctx: ProviderContext | None = None, *,
                 client: httpx.Client | None = None) -> None:
        self.account = account
        self.opts = account_options(Sms2HttpAccountOptions, account)
        self.poll_plan = CheckPlan(self.opts.first_poll_s, self.opts.max_poll_interval_s)
        self.url = (account.base_urls[0] if account.base_urls else DEFAULT_URL).rstrip("/")
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(account.timeout_s, connect=min(5.0, account.timeout_s)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    # --- plumbing
    def _post(self, script: str, params: dict[str, str],
              pace: Pacing | None = None) -> httpx.Response:
        data = {"user": self.account.secret("user"), "pass": self.account.secret("password"),
                **params}
        body = urlencode(data, encoding=sms2_rules.ENCODING)
        return self.client.post(f"{self.url}/{script}", content=body.encode("ascii"), headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=windows-1251"},
            extensions=wire_extensions(pace))

    def _read(self, script: str, params: dict[str, str]) -> str:
        """A call that changes nothing at the gate, or whose repeat is harmless."""
        try:
            resp = self._post(script, params)
        except httpx.TransportError as exc:
            raise RetryLater(f"SMS2 {script} did not answer", provider=PROVIDER,
                             delay_s=self.opts.retry_delay_s) from exc
        if resp.status_code != 200:
            raise RetryLater(f"SMS2 {script} answered HTTP {resp.status_code}",
                             code=f"http {resp.status_code}", provider=PROVIDER,
                             delay_s=self.opts.retry_delay_s)
        return decode(resp.content)

    # --- SMS
    def send_params(self, msg: Outgoing) -> dict[str, str]:
        return {"phone": msg.phone, "message": msg.text, "from": msg.sender or "",
                "flash": "1" if msg.options.get("flash") else "0"}

    def send(self, msg: Outgoing, pace: Pacing | None = None) -> Submitted:
        try:
            sms2_rules.check_message(msg.phone, msg.text, msg.sender)
        except InvalidInput as exc:  # the producer checks first; this is a last guard
            raise Permanent(f"SMS2 would refuse it: {exc}", code="checked before sending",
                            provider=PROVIDER, rejected=True) from exc
        try:
            resp = self._post("sms.cgi", self.send_params(msg), pace)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryLater("SMS2 unreachable", provider=PROVIDER,
                             delay_s=self.opts.retry_delay_s) from exc
        except httpx.TransportError as exc:
            raise OutcomeUnknown("SMS2 did not answer the send", provider=PROVIDER,
                                 delay_s=self.opts.retry_delay_s) from exc
        if resp.status_code != 200:
            raise RetryLater(f"SMS2 answered HTTP {resp.status_code}",
                             code=f"http {resp.status_code}", provider=PROVIDER,
                             delay_s=self.opts.retry_delay_s)
        try:
            line = parse_line(decode(resp.content))
        except ValueError as exc:
            raise OutcomeUnknown("SMS2 answered the send with something unreadable",
                                 provider=PROVIDER, delay_s=self.opts.retry_delay_s) from exc
        if line.kind == "sent":
            return Submitted(provider_id=line.value, parts=msg.parts)
        if line.kind == "error":
            if line.value == DUPLICATION and msg.inflight_ms:
                raise AlreadyAccepted("SMS2 took the first copy: it refused this resend as a "
                                      "duplicate", code=DUPLICATION, provider=PROVIDER)
            raise error_for(SEND_ERRORS, line.value)
        raise OutcomeUnknown(f"SMS2 answered the send with a {line.kind} line",
                             provider=PROVIDER, delay_s=self.opts.retry_delay_s)

    def _status(self, provider_id: str) -> StatusReport | None:
        text = self._read("sms_status2.cgi", {"mess_id": provider_id})
        try:
            line = parse_line(text)
        except ValueError as exc:
            raise RetryLater("SMS2 answered a status request with something unreadable",
                             provider=PROVIDER, delay_s=self.opts.retry_delay_s) from exc
        if line.kind == "error":
            if line.value == "no such message":
                return None
            raise error_for(STATUS_ERRORS, line.value)
        if line.kind != "status":
            raise RetryLater(f"SMS2 answered a status request with a {line.kind} line",
                             provider=PROVIDER, delay_s=self.opts.retry_delay_s)
        return status_report(line.value)

    def lookup(self, msg: Outgoing) -> StatusReport | None:
        if not msg.provider_id:
            raise NoLookup("SMS2 cannot be asked whether it took a message whose answer (and "
                           "id) was lost", provider=PROVIDER,
                           on_lost_answer=self.opts.on_lost_answer)
        return self._status(msg.provider_id)

    def status(self, msg: Outgoing) -> StatusReport:
        rep = self._status(msg.provider_id) if msg.provider_id else None
        if rep is None:
            return StatusReport(status=Status.UNKNOWN, raw="no such message",
                                extra={"reason": "SMS2 has no such message"})
        return rep

    def credit(self) -> Credit:
        """Balance and overdraft (the threshold at which the account is switched off), RUB."""
        text = self._read("get_credit_info.cgi", {})
        try:
            line = parse_line(text)
        except ValueError as exc:
            raise RetryLater("unreadable SMS2 balance answer", provider=PROVIDER) from exc
        if line.kind == "error":
            raise error_for(SEND_ERRORS, line.value)
        try:
            return parse_credit(text)
        except (ValueError, InvalidOperation) as exc:
            raise RetryLater("unreadable SMS2 balance answer", provider=PROVIDER) from exc

    def balance(self) -> Balance:
        return Balance(self.credit().balance, "RUB")

    # --- phone bases and campaigns (api_call.cgi)
    def _api(self, function: str, params: dict[str, str], parse: Any) -> Any:
        text = self._read("api_call.cgi", {"function": function, **params})
        if _ERROR.match(text):
            raise error_for(BASE_ERRORS, parse_line(text).value)
        try:
            return parse(text)
        except (ValueError, TypeError, InvalidOperation) as exc:
            raise RetryLater(f"unreadable SMS2 {function} answer", provider=PROVIDER) from exc

    @staticmethod
    def _base(base: str) -> str:
        if not isinstance(base, str) or not base.strip() or "," in base:
            raise InvalidInput("base", "a base name is required (no commas)")
        return base.strip()

    def list_bases(self) -> list[PhoneBase]:
        return self._api("list_of_bases", {}, parse_bases)  # type: ignore[no-any-return]

    def add_phone(self, base: str, phone: str) -> None:
        self._api("add_phone_to_base", {"base": self._base(base),
                                        "phone": sms2_rules.check_phone(phone, "phone")},
                  _expect_success)

    def add_phones(self, base: str, phones: Iterable[str]) -> BatchResult:
        """Add many numbers at once; the gate reports how many went in and which did not."""
        items = [p.strip().lstrip("+") for p in phones if p.strip()]
        if not items:
            raise InvalidInput("phones", "at least one number is required")
        return self._api("add_phone_to_base_batch",  # type: ignore[no-any-return]
                         {"base": self._base(base), "phones": "\n".join(items)}, parse_batch)

    def has_phone(self, base: str, phone: str) -> bool:
        return self._api("is_phone_in_base",  # type: ignore[no-any-return]
                         {"base": self._base(base),
                          "phone": sms2_rules.check_phone(phone, "phone")}, parse_yes_no)

    def get_base(self, base: str) -> list[str]:
        return self._api("get_base", {"base": self._base(base)},  # type: ignore[no-any-return]
                         parse_phones)

    def remove_phone(self, base: str, phone: str) -> None:
        self._api("remove_phone_from_base", {"base": self._base(base),
                                             "phone": sms2_rules.check_phone(phone, "phone")},
                  _expect_success)

    def start_multicast(self, bases: Iterable[str], text: str, sender: str,
                        start_at: datetime | None = None) -> None:
        """Queue a campaign to every number of ``bases`` at ``start_at`` (gate's local time;
        now when None).  The text and sender are checked as for a single SMS."""
        names = [self._base(b) for b in bases]
        if not names:
            raise InvalidInput("bases", "at least one base is required")
        params = {"bases": ",".join(names), "message": sms2_rules.check_text(text),
                  "from": sms2_rules.check_sender(sender)}
        if start_at is not None:
            params["start_at"] = start_at.strftime("%Y-%m-%d %H:%M")
        self._api("start_multicast", params, _expect_success)

    # --- MMS (api.php)
    def send_mms(self, phone: str, subject: str, text: str, picture: bytes) -> str:
        """Send one MMS now; returns the gate's id. Size and format are checked first."""
        digits = sms2_rules.check_phone(phone, "phone")
        if not picture.startswith(PNG_MAGIC):
            raise InvalidInput("picture", "must be a PNG image")
        size = len(subject.encode("utf-8")) + len(text.encode("utf-8")) + len(picture)
        if size > MMS_MAX_BYTES:
            raise InvalidInput("picture", f"the MMS would be {size // 1024} KB; SMS2 takes at "
                                          f"most {MMS_MAX_BYTES // 1024} KB")
        data = {"user": self.account.secret("user"),
                "hash": hashlib.md5(self.account.secret("password").encode("utf-8"),
                                    usedforsecurity=False).hexdigest(),
                "phone": digits, "subject": subject, "text": text}
        try:
            resp = self.client.post(f"{self.url}/api.php", data=data,
                                    files={"picture": ("picture.png", picture, "image/png")})
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryLater("SMS2 unreachable", provider=PROVIDER) from exc
        except httpx.TransportError as exc:
            raise OutcomeUnknown("SMS2 did not answer the MMS", provider=PROVIDER) from exc
        if resp.status_code != 200:
            raise RetryLater(f"SMS2 answered HTTP {resp.status_code}", provider=PROVIDER)
        answer = resp.content.decode("utf-8", "replace").strip()
        try:
            line = parse_line(answer)
        except ValueError as exc:
            raise OutcomeUnknown("SMS2 answered the MMS with something unreadable",
                                 provider=PROVIDER) from exc
        if line.kind == "ok":
            return line.value
        if line.kind == "error":
            raise error_for(SEND_ERRORS, line.value)
        raise OutcomeUnknown(f"SMS2 answered the MMS with a {line.kind} line",
                             provider=PROVIDER)

    def close(self) -> None:
        self.client.close()

DEFAULT_URL = "https://my.sms2.ru"
MMS_MAX_BYTES = 300 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

def _expect_success(text: str) -> None:
    if text.strip().lower() != "success":
        raise ValueError("expected Success")
