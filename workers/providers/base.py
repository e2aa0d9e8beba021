"""The one small protocol every provider module implements.

A provider turns an ``Outgoing`` message into a provider id, asks for a status, and reports
the account's balance.  It speaks its protocol only: what it hears becomes a typed fact of
``core.facts`` (returned, or for what arrives on its own -- SMPP receipts, incoming messages
-- handed to the context's ``FactSink``) or an error of ``core.errors`` (translated at this
boundary, with the cause kept).  It never imports the store, the broker or the worker runtime:
what a fact does to a record is decided in ``workers/outcomes.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import redis

from core.facts import DeliveryReceipt, Incoming, StatusReport, Submitted
from core.provider_options import account_options as account_options  # the one reader
from core.settings import Account, Settings
from core.timing import CheckPlan

__all__ = ["Balance", "CheckPlan", "DeliveryReceipt", "FactSink", "Incoming", "Outgoing",
           "Provider", "ProviderContext", "StatusReport", "Submitted", "account_options"]


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
    #: when an earlier attempt whose outcome is unknown went out (ms); 0: none is in flight
    inflight_ms: int = 0


@dataclass(frozen=True)
class Balance:
    amount: Decimal
    currency: str


class FactSink(Protocol):
    """Where a provider hands the facts that arrive on their own (SMPP's session thread)."""

    def receipt(self, account: Account, fact: DeliveryReceipt) -> bool:
        """Apply a receipt; True when its message took it (it exists and was not final)."""

    def incoming(self, account: Account, fact: Incoming) -> None:
        """Keep a message a subscriber sent."""


@dataclass(frozen=True)
class ProviderContext:
    settings: Settings
    #: for the provider's own protocol state (SMPP id correlation, bind leases, OAuth tokens),
    #: never for message records
    redis: redis.Redis
    facts: FactSink | None = None


class Pacing(Protocol):
    """A send's pacing ticket (``workers.traffic.pacing.Ticket``), handed to ``send`` by the
    actor with its first slot booked. The provider's writer calls ``wire()`` right before the
    bytes leave (HTTP: pass ``trace`` as httpx's ``extensions={"trace": ...}``), or hands
    ``take().at`` and ``tolerance_s`` to a writer thread that calls ``missed()`` when it came
    too late. Every transmission of the message goes through it: each one after the first
    books a fresh slot."""

    tolerance_s: float

    def take(self, parts: int | None = None) -> Any: ...

    def missed(self) -> None: ...

    def wire(self, parts: int | None = None) -> Any: ...

    def trace(self, event: str, info: dict[str, Any]) -> None: ...


def wire_extensions(pace: Pacing | None) -> dict[str, Any]:
    """httpx request extensions that make ``pace`` the last check before the bytes leave."""
    return {"trace": pace.trace} if pace is not None else {}


class Provider(Protocol):
    account: Account
    #: when the worker's poll chain asks for the status of a submitted message
    poll_plan: CheckPlan

    def send(self, msg: Outgoing, pace: Pacing | None = None) -> Submitted:
        """Hand the message to the provider; every request or PDU that carries it waits for
        ``pace`` (the actor always gives one; ``None``, unpaced, is for direct calls in
        tests). Raises a ``core.errors.ProviderError``."""

    def lookup(self, msg: Outgoing) -> StatusReport | None:
        """What the provider knows of a message whose send outcome is unknown; ``None`` when it
        has no record of it (so sending it again cannot double it)."""

    def status(self, msg: Outgoing) -> StatusReport:
        """The current status of a submitted message."""

    def balance(self) -> Balance:
        """The account's balance."""

    def close(self) -> None:
        """Release connections."""
