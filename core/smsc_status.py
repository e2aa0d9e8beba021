"""SMSC's message status codes and status error codes: one table for every path a status
comes by — the HTTP status poll, SMSC's status webhook and the SMPP delivery receipt.

``workers/providers/smsc_http.py`` reads a ``status.php`` answer with it,
``producers/http/smsc_webhook.py`` reads SMSC's status callbacks with it and
``workers/smpp/correlation.py`` reads receipts' ``err`` with it (producers do not import
workers, so the table lives in the shared package, like ``core/sms2_rules.py``).  A status
answer is ``(status, time, err)`` (shared/providers/smsc-http-api-1c-library.txt,
``ПолучитьСтатус``); ``err`` is the list "Error codes in the status" of
shared/providers/smsc-smpp.md, the same codes over HTTP and SMPP.  The codes and their meaning
are SMSC's, kept raw on the record.

What an ``err`` asks of Gonets besides the status (``ErrInfo.action``), whichever way it came:

    retry    220 the operator's queue overflowed   send it again later (``Resend.RETRY``)
    flood    251 too many to one number            fill the number's flood rule, send later
    funds    224 insufficient funds                alert ``no_funds``, pause the account
    account  239 forbidden IP, 254 sender          alert ``ip`` / ``sender``, pause the account
    unknown  245 status not received               a failure with it is an unknown outcome:
                                                   "impossible to say for sure whether the
                                                   message was delivered or not"
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.contracts import Status
from core.errors import AccountProblem
from core.facts import Resend, StatusReport

#: SMSC message status -> Gonets status (None: SMSC has no such message)
STATUS_MAP: dict[int, Status | None] = {
    -3: None, -2: Status.SUBMITTED, -1: Status.SUBMITTED, 0: Status.SUBMITTED,
    1: Status.DELIVERED, 2: Status.DELIVERED, 3: Status.EXPIRED, 4: Status.DELIVERED,
    20: Status.FAILED, 22: Status.REJECTED, 23: Status.REJECTED, 24: Status.FAILED,
    25: Status.FAILED,
}


@dataclass(frozen=True)
class ErrInfo:
    meaning: str
    #: what Gonets does: "final" (keep the status), "retry" (resend), "flood" (traffic rule),
    #: "funds" (account alert), "account" (other account alert), "unknown" (a failure with it
    #: is an unknown outcome)
    action: str = "final"


#: SMSC ``err`` codes of the status (smsc-smpp.md, "Error codes in the status")
ERR_TABLE: dict[int, ErrInfo] = {
    0: ErrInfo("no error"),
    1: ErrInfo("the subscriber does not exist"),
    6: ErrInfo("subscriber is offline"),
    11: ErrInfo("the service is not connected"),
    12: ErrInfo("error in the subscriber's phone"),
    13: ErrInfo("subscriber is blocked"),
    21: ErrInfo("no support for the service"),
    200: ErrInfo("virtual sending (test mode)"),
    219: ErrInfo("SIM card replaced"),
    220: ErrInfo("queue overflowed at the operator", "retry"),
    224: ErrInfo("insufficient funds", "funds"),
    237: ErrInfo("the callee did not answer"),
    238: ErrInfo("no template"),
    239: ErrInfo("forbidden IP address", "account"),
    240: ErrInfo("subscriber is busy"),
    241: ErrInfo("conversion error"),
    242: ErrInfo("answering machine"),
    243: ErrInfo("no contract"),
    244: ErrInfo("mailing is prohibited"),
    245: ErrInfo("status not received", "unknown"),
    246: ErrInfo("time limit"),
    247: ErrInfo("daily message limit exceeded"),
    248: ErrInfo("no route"),
    249: ErrInfo("invalid number format"),
    250: ErrInfo("number forbidden by the account's settings"),
    251: ErrInfo("limit exceeded for a single number", "flood"),
    252: ErrInfo("number not permitted"),
    253: ErrInfo("prohibited by the spam filter"),
    254: ErrInfo("unregistered sender id", "account"),
    255: ErrInfo("rejected by the operator"),
}
#: the err actions that name an account problem -> its alert
ACCOUNT_ALERTS = {"funds": "no_funds", "account": "sender"}
#: err codes whose account alert is not the action's default
ALERT_BY_ERR = {239: "ip"}


def err_info(err: int | None) -> ErrInfo | None:
    if err is None:
        return None
    return ERR_TABLE.get(err, ErrInfo(f"error {err}"))


def with_err(rep: StatusReport, err: int | None, provider: str) -> StatusReport:
    """``rep`` as its ``err`` reads in the table: its meaning as the reason, the resend or
    account alert it asks for, and a failure that is really an unknown outcome (245)."""
    info = err_info(err)
    if info is None or not err:
        return rep
    status = rep.status
    if info.action == "unknown" and status == Status.FAILED:
        status = Status.UNKNOWN
    resend = None
    if info.action in ("retry", "flood") and status != Status.DELIVERED:
        resend = Resend(info.action)
    problem = None
    if info.action in ACCOUNT_ALERTS:
        problem = AccountProblem(info.meaning, code=str(err), provider=provider,
                                 alert=ALERT_BY_ERR.get(err, ACCOUNT_ALERTS[info.action]))
    return replace(rep, status=status, reason=info.meaning, resend=resend,
                   account_problem=problem)


def _err_int(err: str | None) -> int | None:
    try:
        return int(err) if err not in (None, "") else None
    except ValueError:
        return None


def smsc_report(code: int, err: str | None = None,
                extra: dict[str, str] | None = None,
                provider: str = "smsc_http") -> StatusReport | None:
    """The status report of SMSC status ``code`` with error ``err`` ("0" or None: none);
    None when SMSC has no such message.  An unknown code keeps the message ``submitted`` (the
    raw code is kept and the poll goes on): a code Gonets cannot read never closes it."""
    status = STATUS_MAP.get(code, Status.SUBMITTED)
    if status is None:
        return None
    rep = StatusReport(status=status, raw=str(code),
                       error_code=err if err not in (None, "", "0") else None,
                       extra=extra or {})
    return with_err(rep, _err_int(err), provider)
