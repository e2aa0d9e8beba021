"""MTS Money payments: the contract shared by producers, workers and the webhook receiver.

Statuses (with their rank tables), check results, bePaid's transaction shape, amounts, queues
and actor names. The records live in ``core.payment_store``.

Payment statuses (bePaid's own status is kept raw in ``provider_status``)::

    queued ──▶ pending ──▶ successful | failed | expired
       │                    (bePaid's transaction status; webhook, lookup or sweep)
       ├──▶ declined   the number needs the terms accepted and the customer declined:
       │               nothing was sent to bePaid, nothing charged
       └──▶ rejected   bePaid refused the request, or the number is not MTS / invalid

Amounts are integers in minor units (kopecks for BYN) everywhere; never floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core import contracts as _contracts

# --- statuses ------------------------------------------------------------------------------


class PaymentStatus(StrEnum):
    QUEUED = "queued"
    PENDING = "pending"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"
    DECLINED = "declined"

    @property
    def final(self) -> bool:
        return PAYMENT_RANK[self] == 2

    @property
    def rank(self) -> int:
        return PAYMENT_RANK[self]


class CheckStatus(StrEnum):
    QUEUED = "queued"
    DONE = "done"
    #: bePaid could not be asked (gave up after retries); ``reason`` says why
    ERROR = "error"

    @property
    def final(self) -> bool:
        return CHECK_RANK[self] == 2

    @property
    def rank(self) -> int:
        return CHECK_RANK[self]


#: a status change never goes to a lower rank; rank 2 is final and never changes
PAYMENT_RANK: dict[PaymentStatus, int] = {
    PaymentStatus.QUEUED: 0, PaymentStatus.PENDING: 1, PaymentStatus.SUCCESSFUL: 2,
    PaymentStatus.FAILED: 2, PaymentStatus.EXPIRED: 2, PaymentStatus.REJECTED: 2,
    PaymentStatus.DECLINED: 2,
}
CHECK_RANK: dict[CheckStatus, int] = {CheckStatus.QUEUED: 0, CheckStatus.DONE: 2,
                                      CheckStatus.ERROR: 2}


class CheckResult(StrEnum):
    """The one typed answer of a service-activation check."""

    #: MTS Money is active: pay with ``confirm_agreement=already_accepted``
    ACTIVE = "active"
    #: an MTS number without MTS Money: the customer must accept the terms (``accept``)
    MUST_ACCEPT_TERMS = "must_accept_terms"
    #: the number is not an MTS number: MTS Money cannot be used
    NOT_MTS = "not_mts"
    #: the number is not a valid phone number
    INVALID_PHONE = "invalid_phone"
    #: bePaid refused the check with a code Gonets does not know (kept raw in ``code``)
    REFUSED = "refused"

    @property
    def payable(self) -> bool:
        return self in (CheckResult.ACTIVE, CheckResult.MUST_ACCEPT_TERMS)


class CustomerAnswer(StrEnum):
    """What the customer said to the MTS Money terms (asked only when the check says so)."""

    ACCEPT = "accept"
    DECLINE = "decline"


def confirm_agreement(result: CheckResult, answer: CustomerAnswer | None) -> str | None:
    """bePaid's ``confirm_agreement`` for a check result and the customer's answer.

    ``None`` means: do not send a payment at all (the customer declined or was not asked, or
    the number cannot pay with MTS Money). ``decline`` is never sent: it cannot charge.
    """
    if result is CheckResult.ACTIVE:
        return "already_accepted"
    if result is CheckResult.MUST_ACCEPT_TERMS and answer is CustomerAnswer.ACCEPT:
        return "accept"
    return None


# --- bePaid transactions (payment answers, lookups and notifications share one shape) ------

#: bePaid transaction status -> Gonets payment status. Unknown statuses count as pending
#: (kept raw, looked up again): a status Gonets cannot read must never close a payment.
STATUS_MAP: dict[str, PaymentStatus] = {
    "initial": PaymentStatus.PENDING,
    "pending": PaymentStatus.PENDING,
    "incomplete": PaymentStatus.PENDING,
    "successful": PaymentStatus.SUCCESSFUL,
    "failed": PaymentStatus.FAILED,
    "expired": PaymentStatus.EXPIRED,
    "error": PaymentStatus.REJECTED,
    "deleted": PaymentStatus.FAILED,
}


@dataclass(frozen=True)
class Transaction:
    uid: str
    status: PaymentStatus
    raw_status: str
    tracking_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Tx(BaseModel):
    model_config = ConfigDict(extra="ignore")

    uid: str = Field(min_length=1, max_length=128)
    status: str = Field(min_length=1, max_length=64)
    tracking_id: str | None = Field(None, max_length=255)
    amount: int | None = Field(None, strict=True, ge=0)
    currency: str | None = Field(None, max_length=8)
    message: str | None = Field(None, max_length=4096)
    type: str | None = None
    method_type: str | None = None

    @field_validator("amount", mode="before")
    @classmethod
    def _whole_minor_units(cls, v: Any) -> Any:
        """Minor units are whole: ``100.0`` is the amount 100 (a JSON writer's float), while
        ``100.5`` is no amount (refused, never rounded)."""
        if isinstance(v, float):
            if not v.is_integer():
                raise ValueError("amount must be a whole number of minor units")
            return int(v)
        return v


def parse_transaction(data: Any) -> Transaction:
    """One bePaid transaction object. Raises ValueError on anything malformed."""
    if not isinstance(data, dict):
        raise ValueError("a transaction must be a JSON object")
    try:
        tx = _Tx.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"malformed transaction: {exc.errors()[0]['msg']}") from None
    raw = tx.status
    status = STATUS_MAP.get(raw, PaymentStatus.PENDING)
    message = tx.message
    payment = data.get("payment")
    if message is None and isinstance(payment, dict) and isinstance(payment.get("message"), str):
        message = payment["message"]
    return Transaction(uid=tx.uid, status=status, raw_status=raw, tracking_id=tx.tracking_id,
                       amount=tx.amount, currency=tx.currency, message=message)


def parse_transaction_envelope(data: Any) -> Transaction:
    """``{"transaction": {...}}``: a payment answer, a lookup answer or a notification."""
    if not isinstance(data, dict) or "transaction" not in data:
        raise ValueError("expected an object with a 'transaction'")
    return parse_transaction(data["transaction"])


def parse_transactions(data: Any) -> list[Transaction]:
    """``{"transactions": [...]}`` (lookup by tracking_id); one ``transaction`` is accepted too."""
    if isinstance(data, dict) and isinstance(data.get("transactions"), list):
        return [parse_transaction(t) for t in data["transactions"]]
    if isinstance(data, dict) and "transaction" in data:
        return [parse_transaction(data["transaction"])]
    raise ValueError("expected an object with 'transactions'")


#: when one tracking_id has several transactions (it must not), the one that counts
_PREFERENCE = [PaymentStatus.SUCCESSFUL, PaymentStatus.PENDING, PaymentStatus.FAILED,
               PaymentStatus.EXPIRED, PaymentStatus.REJECTED]


def pick(txs: list[Transaction]) -> Transaction | None:
    if not txs:
        return None
    return sorted(txs, key=lambda t: _PREFERENCE.index(t.status)
                  if t.status in _PREFERENCE else 99)[0]


#: currencies MTS Money (through bePaid) takes; an account may narrow this in its options
CURRENCIES = frozenset({"BYN"})
#: largest amount accepted, in minor units (a guard against unit mistakes: 10 000 000.00 BYN)
MAX_AMOUNT_MINOR = 1_000_000_000


# --- queues and actors ---------------------------------------------------------------------

CHECK_MTS_MONEY = "check_mts_money"
PAY_MTS_MONEY = "pay_mts_money"
LOOKUP_PAYMENT = "lookup_payment"
#: the pending sweep (core.contracts): ``sweep_pending_payments()`` on PAYMENTS_SWEEP_QUEUE, as
#: the scheduler fires it (every bePaid account), or ``sweep_pending_payments(account)`` on
#: ``payments_sweep_queue(account)`` for one account
SWEEP_PENDING_PAYMENTS = _contracts.SWEEP_PENDING_PAYMENTS
PAYMENTS_SWEEP_QUEUE = _contracts.PAYMENTS_SWEEP_QUEUE


def payments_check_queue(account: str) -> str:
    return f"payments.{account}.check"


def payments_pay_queue(account: str) -> str:
    return f"payments.{account}.pay"


def payments_sweep_queue(account: str) -> str:
    """Lookups of pending payments and the sweep that finds them."""
    return f"payments.{account}.lookup"


def payments_pool_queues(account: str) -> list[str]:
    """Every queue the ``payments`` pool of one bePaid account consumes (checks first: a
    customer is waiting for those), and the scheduler's sweep queue every such pool shares."""
    return [payments_check_queue(account), payments_pay_queue(account),
            payments_sweep_queue(account), PAYMENTS_SWEEP_QUEUE]
