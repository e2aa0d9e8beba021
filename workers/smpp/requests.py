"""What callers of the SMPP session hand it and get back: its configuration, requests and
answers, the errors a request fails with, and the session's counters (``session.py``)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from workers.smpp.link import LinkError

CLOSE_ACK_S = 5.0
LINK_ERRORS = (OSError, LinkError, socket.timeout)


class SessionError(Exception):
    """Base of what a request can fail with."""


class NotBound(SessionError):
    """Nothing was written: no bind (standing by without a lease, closing, or no link in
    time). Safe to send again elsewhere."""


class LinkLost(SessionError):
    """The request was written but the link died before its answer: the server may or may
    not have acted on it."""

    def __init__(self, detail: str, sent_at: float) -> None:
        super().__init__(detail)
        self.sent_at = sent_at


class SlotMissed(SessionError):
    """Nothing was written: the session thread came more than ``late_s`` after the request's
    pacing slot. The caller gives the slot up and books another."""

    def __init__(self, late_s: float) -> None:
        super().__init__(f"{late_s * 1000:.1f} ms past its pacing slot; not written")
        self.late_s = late_s


@dataclass(frozen=True)
class Resp:
    """The answer to a request: the response PDU's status and body fields."""

    command: str
    status: int
    fields: dict[str, Any]
    sent_at: float
    #: which server answered ("host:port")
    server: str = ""


class Lease(Protocol):
    def acquire(self) -> bool: ...

    def renew(self) -> bool: ...

    def release(self) -> object: ...

    @property
    def renew_every_s(self) -> float: ...


@dataclass(frozen=True)
class SessionConfig:
    account: str
    hosts: tuple[tuple[str, int], ...]
    system_id: Callable[[], str]
    password: Callable[[], str]
    system_type: str = ""
    bind_mode: str = "transceiver"
    tls: ssl.SSLContext | None = None
    max_pending: int = 300
    enquire_link_s: float = 60.0
    response_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    addr_ton: int = 0
    addr_npi: int = 0
    #: a session not bound this long (while it should be) counts as dead for health checks
    dead_after_s: float = 120.0


# The receive side: called on the dispatcher thread with the body and command_id of a
# deliver_sm or data_sm; returns the command_status of its answer (0 = taken; anything else
# asks the server to offer it again).
DeliverHandler = Callable[[bytes, int], int]


@dataclass
class Pending:
    command: str
    params: dict[str, Any]
    future: Future[Resp]
    sent_at: float = 0.0
    #: the pacing slot (``time.time()``; 0: unpaced) and how late past it it may be written
    not_before: float = 0.0
    late_s: float | None = None


@dataclass
class Stats:
    binds: int = 0
    link_losses: int = 0
    submits: int = 0
    responses: int = 0
    delivers: int = 0
    malformed: int = 0
    last_server: str = ""
    kicked: int = 0
    #: requests failed with SlotMissed (their slot had gone by)
    forfeits: int = 0
    #: receipts answered while the session closed
    acked_closing: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@dataclass
class Upkeep:
    """The serving loop's bookkeeping for one link."""

    last_tx: float
    last_rx: float
    next_renew: float
    link_check_seq: int | None = None
    link_check_at: float = 0.0

