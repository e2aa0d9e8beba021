"""SMSC's message status codes, one table for the status poll and the status webhook.

``workers/providers/smsc_http.py`` reads a ``status.php`` answer with it and
``producers/http/smsc_webhook.py`` reads SMSC's status callbacks with it (producers do not
import workers, so the table lives in the shared package, like ``core/sms2_rules.py``).
A status answer is ``(status, time, err)`` (shared/providers/smsc-http-api-1c-library.txt,
``ПолучитьСтатус``); the codes and their meaning are SMSC's, kept raw on the record.
"""

from __future__ import annotations

from core.contracts import Status
from core.facts import StatusReport

#: SMSC message status -> Gonets status (None: SMSC has no such message)
STATUS_MAP: dict[int, Status | None] = {
    -3: None, -2: Status.SUBMITTED, -1: Status.SUBMITTED, 0: Status.SUBMITTED,
    1: Status.DELIVERED, 2: Status.DELIVERED, 3: Status.EXPIRED, 4: Status.DELIVERED,
    20: Status.FAILED, 22: Status.REJECTED, 23: Status.REJECTED, 24: Status.FAILED,
    25: Status.FAILED,
}


def smsc_report(code: int, err: str | None = None,
                extra: dict[str, str] | None = None) -> StatusReport | None:
    """The status report of SMSC status ``code`` with error ``err`` ("0" or None: none);
    None when SMSC has no such message.  An unknown code keeps the message ``submitted`` (the
    raw code is kept and the poll goes on): a code Gonets cannot read never closes it."""
    status = STATUS_MAP.get(code, Status.SUBMITTED)
    if status is None:
        return None
    return StatusReport(status=status, raw=str(code),
                        error_code=err if err not in (None, "", "0") else None,
                        extra=extra or {})
