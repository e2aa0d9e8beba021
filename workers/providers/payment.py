"""The small protocol every payment provider implements (bePaid's MTS Money today).

Beside ``base.Provider`` (SMS): a payments account's pool builds its provider with
``workers.providers.build_payments``; an SMS-only operation on it (``build``: send, status,
balance, cost) is a ConfigError naming the account.  A payment provider checks whether a
number can pay, creates a payment and looks one up; it raises only errors of ``core.errors``
(``OutcomeUnknown`` when a payment may have been created: look it up by ``tracking_id``
before sending it again), and never touches the store, the broker or the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from core.payments import CheckResult, Transaction
from core.provider_options import BepaidOptions
from core.settings import Account


@dataclass(frozen=True)
class CheckAnswer:
    """What a service-activation check said, typed."""

    result: CheckResult
    api_version: int
    #: v2 ``error_code`` or v3 ``code``
    code: str | None = None
    message: str | None = None
    #: v3: the text for the customer
    friendly_message: str | None = None
    #: v2: ``mts``, ``other`` or None
    operator: str | None = None

    def fields(self) -> dict[str, Any]:
        return {"result": self.result.value, "api_version": self.api_version, "code": self.code,
                "message": self.message, "friendly_message": self.friendly_message,
                "operator": self.operator}


@dataclass(frozen=True)
class PaymentRequest:
    """One payment to create; ``tracking_id`` is the Gonets payment id."""

    tracking_id: str
    amount: int
    currency: str
    description: str
    phone: str
    confirm_agreement: Literal["already_accepted", "accept"]
    return_url: str
    notification_url: str | None = None
    expired_at: str | None = None
    test: bool = False


class PaymentProvider(Protocol):
    account: Account
    #: the account's options (``core.provider_options``)
    opts: BepaidOptions

    def check(self, phone: str) -> CheckAnswer:
        """Can this number pay (is the service active, must the terms be accepted)?"""

    def pay(self, req: PaymentRequest) -> Transaction:
        """Create the payment. ``OutcomeUnknown`` when it may have been created."""

    def by_uid(self, uid: str) -> Transaction | None:
        """The provider's transaction by its own id (None: it has none)."""

    def by_tracking_id(self, tracking_id: str) -> list[Transaction]:
        """Every transaction the provider has for our payment id (empty: none)."""

    def close(self) -> None:
        """Release connections."""
