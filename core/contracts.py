"""Job contracts shared by producers and workers: statuses, lanes, queue and actor names.

A producer enqueues by queue and actor name from here; it never imports worker code.
Job payloads carry ids only: the phone number, the text and any secret stay in the store.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """One status model for every provider.

    ``queued → submitted → delivered | failed | expired | rejected``, with ``deferred`` while
    traffic rules hold a message.  ``unknown`` is final too: the provider can no longer say
    what happened (kept with a reason, never polled forever).
    """

    QUEUED = "queued"
    DEFERRED = "deferred"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"
    UNKNOWN = "unknown"

    @property
    def final(self) -> bool:
        return self in FINAL

    @property
    def rank(self) -> int:
        return RANK[self]


FINAL = frozenset({Status.DELIVERED, Status.FAILED, Status.EXPIRED, Status.REJECTED,
                   Status.UNKNOWN})
#: a status change never goes to a lower rank; a final status never changes
RANK = {
    Status.QUEUED: 0,
    Status.DEFERRED: 0,
    Status.SUBMITTED: 1,
    Status.DELIVERED: 2,
    Status.FAILED: 2,
    Status.EXPIRED: 2,
    Status.REJECTED: 2,
    Status.UNKNOWN: 2,
}


class Lane(StrEnum):
    """Urgent single messages (login codes) go before bulk mailings."""

    URGENT = "urgent"
    BULK = "bulk"


class Kind(StrEnum):
    TRANSACTIONAL = "transactional"
    PROMOTIONAL = "promotional"


# --- actors and queues -------------------------------------------------------------------

SEND_SMS = "send_sms"
#: the same job for the urgent lane; workers run it before bulk jobs they hold
SEND_SMS_URGENT = "send_sms_urgent"
POLL_STATUS = "poll_status"
#: one job, many ids of one account: the scheduler's status sweep (``poll_status_batch(ids)``)
POLL_STATUS_BATCH = "poll_status_batch"
#: ``check_balance(account)`` on the account's status queue; alerts under ``limits.min_balance``
CHECK_BALANCE = "check_balance"
#: the pending-payment sweep (issue 6's actor), enqueued by the scheduler every few minutes
SWEEP_PENDING_PAYMENTS = "sweep_pending_payments"
PAYMENTS_SWEEP_QUEUE = "payments.sweeps"


def send_queue(account: str, lane: Lane | str) -> str:
    return f"sms.{account}.{Lane(lane).value}"


def status_queue(account: str) -> str:
    return f"sms.{account}.status"


def pool_queues(account: str) -> list[str]:
    """Every queue the worker pool of one SMS account consumes (urgent first)."""
    return [send_queue(account, Lane.URGENT), send_queue(account, Lane.BULK), status_queue(account)]


def send_actor(lane: Lane | str) -> str:
    """The actor name a send job of this lane is enqueued under."""
    return SEND_SMS_URGENT if Lane(lane) == Lane.URGENT else SEND_SMS
