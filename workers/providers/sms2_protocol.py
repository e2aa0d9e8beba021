"""SMS2 HTTP gate, the protocol as data and pure readers (shared/providers/sms2-http-gate.md).

The gate answers in text lines (Windows-1251); every reader here is a pure function that raises
ValueError on anything it does not recognise.  The provider (``sms2_http.py``) turns that into
``OutcomeUnknown`` for a send and ``RetryLater`` for a read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from core import sms2_rules
from core.contracts import Status
from core.errors import (
    AccountProblem,
    Permanent,
    ProviderError,
)
from workers.providers.base import (
    StatusReport,
)

PROVIDER = "sms2_http"

# --- protocol knowledge as data ------------------------------------------------------------

_E = tuple[type[ProviderError], dict[str, Any]]
#: the ``Error: …`` answer to a send the gate takes for a duplicate of one it has; to a resend
#: after a lost answer it means the first copy went (``sms2_http.py``)
DUPLICATION = "message duplication"
#: ``Error: …`` answers of sms.cgi -> (error class, kwargs); the text is kept as the code
SEND_ERRORS: dict[str, _E] = {
    "authentication failure": (AccountProblem, {"detail": "SMS2 refused the login/password",
                                                "alert": "credentials"}),
    "can't send this message": (Permanent, {"detail": "SMS2 refused the text or sender name",
                                            "rejected": True}),
    "your credit is null": (AccountProblem, {"detail": "SMS2 credit is exhausted",
                                             "alert": "no_funds"}),
    "direction is closed": (Permanent, {"detail": "SMS2 has closed this direction",
                                        "rejected": True}),
    "unsupported phone number": (Permanent, {"detail": "SMS2 does not serve this number",
                                             "rejected": True}),
    "unsupported sender": (Permanent, {"detail": "sender name not registered with SMS2",
                                       "alert": "sender"}),
    "phone blacklisted": (Permanent, {"detail": "the number is blacklisted at SMS2",
                                      "rejected": True}),
    "blocked text message": (Permanent, {"detail": "SMS2 blocked the text", "rejected": True}),
    DUPLICATION: (Permanent, {"detail": "SMS2 took it for a duplicate of a message "
                                                  "sent shortly before", "rejected": True}),
    "service is switched off": (AccountProblem, {"detail": "the SMS2 gate is switched off for "
                                                           "this account",
                                                 "alert": "service_off"}),
}
#: ``Error: …`` answers of sms_status2.cgi (``no such message`` is read as "not found")
STATUS_ERRORS: dict[str, _E] = {
    "authentication failure": SEND_ERRORS["authentication failure"],
}
#: ``Error: …`` answers of api_call.cgi
BASE_ERRORS: dict[str, _E] = {
    "authentication failure": SEND_ERRORS["authentication failure"],
    "wrong function": (Permanent, {"detail": "SMS2 says the call's parameters are wrong"}),
    "wrong phone number": (Permanent, {"detail": "wrong phone number format, or not served"}),
    "wrong base": (Permanent, {"detail": "no such phone base"}),
    "base is protected": (Permanent, {"detail": "the base is protected: it can be used for "
                                                "campaigns only, never edited or copied"}),
    "can't add phone number": (Permanent, {"detail": "SMS2 could not add the number"}),
    "can't remove phone number": (Permanent, {"detail": "SMS2 could not remove the number"}),
}
#: sms_status2.cgi state -> Gonets status
STATUS_MAP: dict[str, Status] = {
    "unknown": Status.SUBMITTED,  # handed to the operator's SMSC; ask again later
    "delivered": Status.DELIVERED,
    "not_delivered": Status.FAILED,
}
BASE_FUNCTIONS = ("list_of_bases", "add_phone_to_base", "add_phone_to_base_batch",
                  "is_phone_in_base", "get_base", "remove_phone_from_base", "start_multicast")


# --- pure readers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One gate answer: ``kind`` is sent, error, status, credit, ok (MMS) or text."""

    kind: str
    value: str
    extra: str = ""


_SENT = re.compile(r"^Message successfully sent!\s*Message_ID\s*=\s*(\S+)$", re.I)
_ERROR = re.compile(r"^Error\b[\s:]*(.*)$", re.I | re.S)
_STATUS = re.compile(r"^Status:\s*(\S+)$", re.I)
_CREDIT = re.compile(r"^Balance:\s*(-?\d+(?:\.\d+)?)\s*;\s*Overdraft:\s*(-?\d+(?:\.\d+)?)$",
                     re.I | re.ASCII)
_OK = re.compile(r"^Ok_(\S+)$")


def decode(body: bytes) -> str:
    """Answers are Windows-1251 text (ASCII in practice); anything else is replaced."""
    return body.decode(sms2_rules.ENCODING, "replace").strip()


def parse_line(text: str) -> Line:
    """Read one sms.cgi / sms_status2.cgi / get_credit_info.cgi / api.php answer."""
    text = text.strip()
    if not text:
        raise ValueError("empty answer")
    first = text.splitlines()[0].strip()
    if m := _SENT.match(first):
        return Line("sent", m.group(1))
    if m := _STATUS.match(first):
        return Line("status", m.group(1).lower())
    if m := _CREDIT.match(first):
        return Line("credit", m.group(1), m.group(2))
    if m := _OK.match(first):
        return Line("ok", m.group(1))
    if m := _ERROR.match(text):
        reason = " ".join((m.group(1) or "").split()).rstrip(".").lower()
        return Line("error", reason)
    raise ValueError("not an SMS2 answer")


def error_for(table: dict[str, _E], reason: str) -> ProviderError:
    """The Gonets error for an ``Error: …`` line; unknown ones are kept raw and permanent."""
    entry = table.get(reason)
    if entry is None:
        return Permanent(f"SMS2 error: {reason[:200] or 'unspecified'}", code=reason[:200] or
                         "error", provider=PROVIDER)
    cls, kw = entry
    return cls(code=reason, provider=PROVIDER, **kw)


def status_report(state: str) -> StatusReport:
    """Unknown states are kept raw and polled again."""
    return StatusReport(status=STATUS_MAP.get(state, Status.SUBMITTED), raw=state)


@dataclass(frozen=True)
class Credit:
    balance: Decimal
    overdraft: Decimal


def parse_credit(text: str) -> Credit:
    line = parse_line(text)
    if line.kind != "credit":
        raise ValueError("not a credit answer")
    return Credit(Decimal(line.value), Decimal(line.extra))


@dataclass(frozen=True)
class PhoneBase:
    name: str
    id: str
    phones_total: int


@dataclass(frozen=True)
class BatchResult:
    added: int
    errors: list[str]


def parse_bases(text: str) -> list[PhoneBase]:
    try:
        data = json.loads(text)
    except RecursionError as exc:  # "[" * 100_000: the readers raise only ValueError
        raise ValueError("list_of_bases answer nests too deeply to be read") from exc
    if not isinstance(data, list):
        raise ValueError("list_of_bases answer is not a list")
    out = []
    for item in data:
        if not isinstance(item, dict) or "base_name" not in item:
            raise ValueError("list_of_bases item without base_name")
        total = str(item.get("phones_total", "0")).strip() or "0"
        if not _DIGITS.fullmatch(total):
            raise ValueError("list_of_bases item with a phones_total that is not a count")
        out.append(PhoneBase(str(item["base_name"]), str(item.get("id", "")), int(total)))
    return out


_BATCH_SUCCESS = re.compile(r'"success"\s*(?:=>|:)\s*"?(\d+)"?', re.ASCII)
#: a count or a phone number: ASCII digits only ("²" passes str.isdigit())
_DIGITS = re.compile(r"[0-9]{1,18}")
_BATCH_ERRORS = re.compile(r'"errors"\s*(?:=>|:)\s*\[(.*?)\]', re.S)


def parse_batch(text: str) -> BatchResult:
    """``{"success"=>N, "errors"=>["…", …]}`` (Perl hash notation; JSON accepted too)."""
    m = _BATCH_SUCCESS.search(text)
    if not m:
        raise ValueError("add_phone_to_base_batch answer without success count")
    e = _BATCH_ERRORS.search(text)
    errors = re.findall(r'"([^"]*)"', e.group(1)) if e else []
    return BatchResult(int(m.group(1)), errors)


def parse_phones(text: str) -> list[str]:
    """get_base: one number a line, or ``No phones in base``."""
    if text.strip().lower() == "no phones in base":
        return []
    phones = [p for p in re.split(r"[\s,;]+|<br\s*/?>", text.strip()) if p]
    if not all(_DIGITS.fullmatch(p) for p in phones):
        raise ValueError("get_base answer is not a list of numbers")
    return phones


def parse_yes_no(text: str) -> bool:
    t = text.strip().lower()
    if t not in ("yes", "no"):
        raise ValueError("is_phone_in_base answer is neither Yes nor No")
    return t == "yes"
