"""The one small protocol every provider module implements.

A provider turns an ``Outgoing`` message into a provider id, asks for a status, and reports
the account's balance.  It raises only errors of ``core.errors`` (translated at this
boundary, with the cause kept); traffic rules, retries and the store are not its business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import redis

from core.contracts import Status
from core.provider_options import account_options as account_options  # the one reader
from core.settings import Account, Settings


@dataclass(frozen=True)
class Outgoing:
    id: str
    #: numeric id unique per account, reused on every attempt of this message (SMSC takes it
    #: as the message id, which makes a lost answer recoverable by looking it up)
    seq: int
    phone: str
    text: str
    sender: str | None
    parts: int
    encoding: str
    kind: str = "transactional"
    lane: str = "bulk"
    validity_min: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    provider_id: str | None = None


@dataclass(frozen=True)
class Submitted:
    provider_id: str
    parts: int | None = None
    cost: str | None = None
    balance: str | None = None


@dataclass(frozen=True)
class StatusReport:
    status: Status
    #: the provider's own state, kept raw (e.g. SMSC "1", MTS "DELIVERED")
    raw: str
    error_code: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Balance:
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class PollPlan:
    """When to ask for the status of a submitted message that has no final status yet."""

    first_s: float = 60.0
    max_interval_s: float = 3600.0
    #: a message older than this is closed as ``unknown``: the provider cannot answer any more
    give_up_after_s: float = 3 * 24 * 3600.0

    def next_delay_s(self, polls_done: int) -> float:
        return min(self.first_s * (2 ** polls_done), self.max_interval_s)


@dataclass(frozen=True)
class ProviderContext:
    settings: Settings
    redis: redis.Redis


class Provider(Protocol):
    account: Account
    poll_plan: PollPlan

    def send(self, msg: Outgoing) -> Submitted:
        """Hand the message to the provider. Raises a ``core.errors.ProviderError``."""

    def lookup(self, msg: Outgoing) -> StatusReport | None:
        """What the provider knows of a message whose send outcome is unknown; ``None`` when it
        has no record of it (so sending it again cannot double it)."""

    def status(self, msg: Outgoing) -> StatusReport:
        """The current status of a submitted message."""

    def balance(self) -> Balance:
        """The account's balance."""

    def close(self) -> None:
        """Release connections."""
