"""Facts: what a provider said about a message, typed, and the record change a status makes.

Providers speak their protocols and turn what they hear into these; they never touch the
store, the broker or the worker runtime.  A fact is either returned (or, for what arrives on
its own, handed to the provider's ``FactSink``) or raised as an error of ``core.errors``:

    returned / handed over                     raised (core.errors)
    Submitted        accepted, with its id     SlowDown        slow down
    StatusReport     a status (poll, lookup,   OutcomeUnknown  the outcome is unknown
                     status webhook)           AccountProblem  the account cannot send
    DeliveryReceipt  a receipt (SMPP)          Permanent       this message can never go
    Incoming         a subscriber's message    RetryLater      nothing happened; try later

What a worker does with a fact (the next poll, a resend, a flood-rule fill, a pause and its
alert, a retry) is decided in one module, ``workers/outcomes.py``.  The record change a status
makes is here, in the shared package, because two roles that must not import workers make it
too, each synchronously: the SMSC status webhook (it answers SMSC only once the status is
stored, and two callbacks for one message apply in the order they came) and the scheduler's
sweep when it gives up on a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.contracts import Status
from core.errors import AccountProblem
from core.store import Store, Transition


@dataclass(frozen=True)
class Submitted:
    """The provider accepted the message and named it ``provider_id``."""

    provider_id: str
    parts: int | None = None
    cost: str | None = None
    balance: str | None = None


class Resend(StrEnum):
    """Why a receipt asks for its message to be sent again."""

    #: the operator's queue overflowed (SMSC err 220): the same message later
    RETRY = "retry"
    #: the provider's flood rule for the number (SMSC err 251): after the number's flood gap
    FLOOD = "flood"


@dataclass(frozen=True)
class StatusReport:
    """What the provider says the message's status is."""

    status: Status
    #: the provider's own state, kept raw (e.g. SMSC "1", MTS "DELIVERED")
    raw: str
    error_code: str | None = None
    #: HLR results (stored as ``hlr_<key>``)
    extra: dict[str, str] = field(default_factory=dict)
    #: what the error code means, in words (stored as ``reason``)
    reason: str = ""
    #: further record fields the report carries, stored as they are (receipt TLVs)
    fields: dict[str, str] = field(default_factory=dict)
    #: set when the status's error code asks for the message to be sent again instead
    #: (SMSC err 220, 251: ``core/smsc_status.py``, for a poll, a webhook and a receipt alike)
    resend: Resend | None = None
    #: set when the status's error code says the account cannot send (no funds, forbidden IP,
    #: sender)
    account_problem: AccountProblem | None = None


@dataclass(frozen=True)
class DeliveryReceipt:
    """A delivery receipt matched to the message ``msg_id``."""

    msg_id: str
    #: the receipt's own message id (a resend is made once per receipt id)
    provider_id: str
    report: StatusReport
    #: when the report asks for the message to be sent again (``report.resend``): a RETRY
    #: comes ``resend_after_s`` later (a FLOOD after the number's flood gap), at most
    #: ``resends`` times for the message (the account's policy, from the provider's options)
    resend_after_s: float = 60.0
    resends: int = 3


@dataclass(frozen=True)
class Incoming:
    """A message a subscriber sent to the account."""

    sender: str
    recipient: str
    text: str


def outcome_unknown(rec: dict[str, str]) -> bool:
    """True when an attempt to send the message went out and no answer proved what became of
    it (the record's ``inflight_ms`` marker, set before a send goes out). Such a record must
    never be sent again, through this account or another (failover), before its provider's
    lookup answers "found" or "not found": the send job does that lookup first. The marker is
    cleared only by an answer that proves the outcome (``workers/outcomes.py``)."""
    return bool(rec.get("inflight_ms")) and not Status(rec.get("status") or "queued").final


def status_fields(rep: StatusReport) -> dict[str, Any]:
    """The record fields a status report sets besides its status."""
    return {**{f"hlr_{k}": v for k, v in rep.extra.items()}, **rep.fields}


def record_status(store: Store, msg_id: str, rep: StatusReport,
                  **fields: Any) -> Transition[Status]:
    """Move the record to the reported status (a final status never changes, a late one never
    moves it back: ``Store.transition``), keeping the raw state and code."""
    return store.transition(msg_id, rep.status, provider_status=rep.raw,
                            error_code=rep.error_code, reason=rep.reason,
                            **status_fields(rep), **fields)


def give_up(store: Store, msg_id: str, give_up_s: float) -> Transition[Status]:
    """Close a message the provider gave no final status for in ``give_up_s`` as ``unknown``."""
    return store.transition(msg_id, Status.UNKNOWN, reason="no final status from the provider "
                            f"within {give_up_s / 3600:g} h")
