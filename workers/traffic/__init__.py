"""Traffic rules that hold across the whole cluster, apart from any provider.

One call before ``provider.send`` (``Traffic.admit``) applies them in this order:

1. the account's sending window (bulk and promotional only);
2. pacing per account, urgent before bulk (``pacing.py``): books the slot, then
3. the flood rule per subscriber (``flood.py``), counted at the instant of that slot (the gaps
   the provider sees are between sends, however long a message waited for its slot; a
   message it holds leaves its slot unused).

2 and 3 are one Redis round trip (``admit.lua``), which also begins the send's attempt (its
in-flight marker, ``core/lua/attempt.lua``) before the booking when the actor hands one over.

``admit`` returns the send's pacing ``Ticket``; the actor hands it to ``provider.send``, whose
writer waits for the slot where the bytes leave (and books a fresh slot for every further
transmission of the message).

A rule that holds a message raises ``Hold``; ``workers/outcomes.py`` turns it into status
``deferred`` and a requeue with a delay, never a drop.  A message whose validity ends while it waits
raises ``Expired`` (the actor marks it ``expired`` and sends nothing).  When a provider says
"too fast" (``core.errors.SlowDown``) the actor calls ``slowed``: the account's rate drops for
every pod and the message is requeued, not failed.

Duplicates are refused earlier, at the producer (``producers/duplicates.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

import redis

from core import timing
from core.contracts import Kind, Lane
from core.observability.tracing import span
from core.settings import Account
from core.store import Attempt, Store
from core.timing import expired
from workers.traffic.flood import FloodCount, FloodGuard, FloodHeld
from workers.traffic.pacing import NoSlot, Pacer, Ticket
from workers.traffic.window import SendWindow

__all__ = ["Expired", "Hold", "NoSlot", "Ticket", "Traffic", "get_traffic"]

log = logging.getLogger("gonets.traffic")

#: a worker thread waits for a pacing slot at most this long; then the message is deferred
MAX_WAIT_S = 20.0
#: a message held by the flood rule comes back this long after the burst is over
FLOOD_MARGIN_S = 1.0
#: a message that could not get a slot in time comes back after this
BEHIND_RATE_DELAY_S = 1.0
#: after a slow-down the message comes back after this (its provider may hint longer)
SLOWDOWN_DELAY_S = 1.0


class Hold(Exception):
    """A rule holds the message for ``delay_s``; it is deferred, not dropped."""

    def __init__(self, delay_s: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.reason = reason


class Expired(Exception):
    """The message's validity ended while it waited; it must not be sent."""


class Traffic:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.pacer = Pacer(client, namespace)
        self.flood = FloodGuard(client, namespace)
        self._windows: dict[tuple[str, str], SendWindow] = {}

    def window(self, account: Account) -> SendWindow | None:
        spec = account.limits.send_window
        if spec is None:
            return None
        key = (spec, account.limits.timezone)
        w = self._windows.get(key)
        if w is None:
            w = self._windows[key] = SendWindow.parse(spec, account.limits.timezone)
        return w

    def admit(self, account: Account, rec: dict[str, str],
              attempt: Attempt | None = None) -> Ticket:
        """Apply every rule to the message ``rec``; returns its pacing ticket, its first slot
        booked (the writer waits for it). Raises ``Hold`` or ``Expired``. ``attempt``
        (``Store.attempt``) begins in the step of the booking, before it; ``attempt.begun``
        says whether it did (a rule may hold the message before)."""
        urgent = rec.get("lane") == Lane.URGENT.value
        if expired(rec):
            raise Expired("validity ended before it could be sent")
        w = self.window(account)
        if w is not None and (not urgent or rec.get("kind") == Kind.PROMOTIONAL.value):
            wait = w.wait_s(datetime.now(UTC))
            if wait > 0:
                raise Hold(wait, "outside the account's sending window")
        # its own span: "waiting for the rate" apart from "the provider is slow" (the booking;
        # the last bit of the wait, until the slot itself, is the writer's)
        # the flood rule counts the send at its slot, in the booking's own step (one round trip)
        with span("pacing.wait", f"pace {account.name}", measure="pacing_wait"):
            return self.pace(account, rec, urgent=urgent, expires_ms=timing.expires_ms(rec),
                             count=self.flood.count(account, rec["phone"], rec.get("route")),
                             attempt=attempt)

    @staticmethod
    def _flood_hold(account: Account, wait_s: float) -> Hold:
        return Hold(wait_s + FLOOD_MARGIN_S,
                    f"flood rule: {account.limits.flood_max_messages} messages to this number "
                    f"with gaps under {account.limits.flood_gap_s:g} s")

    def pace(self, account: Account, rec: dict[str, str], *, urgent: bool, expires_ms: int,
             count: FloodCount | None = None, attempt: Attempt | None = None) -> Ticket:
        """Book the account's next pacing slot (every part counts) in a ticket; ``count``: the
        flood rule counts the send at its slot in the same step (a routed message counts
        across its route's accounts: ``FloodGuard.count``), and ``attempt`` begins there first
        (``Pacer.ticket``)."""
        deadline = time.time() + MAX_WAIT_S
        if expires_ms:
            deadline = min(deadline, expires_ms / 1000.0)
        try:
            ticket = self.pacer.ticket(account, int(rec.get("parts") or 1), urgent=urgent,
                                       deadline=deadline, count=count,
                                       attempt=attempt)
        except FloodHeld as held:
            raise self._flood_hold(account, held.wait_s) from None
        if ticket is not None:
            return ticket
        if expired(rec):
            raise Expired("validity ended while it waited behind the rate")
        raise Hold(BEHIND_RATE_DELAY_S, "waiting behind the account's rate")

    def slowed(self, account: Account) -> float:
        """The provider said "too fast": lower the account's rate for every pod."""
        cut, factor = self.pacer.slow_down(account.name)
        if cut:
            log.warning("account %s: provider asked to slow down; rate now %.1f/s",
                        account.name, account.limits.rate_per_s * factor,
                        extra={"account": account.name})
        return factor


_lock = threading.Lock()
_instances: dict[int, Traffic] = {}


def get_traffic(store: Store) -> Traffic:
    """The process's Traffic for this store's Redis."""
    with _lock:
        t = _instances.get(id(store))
        if t is None:
            # the traffic rules keep their own keys
            t = _instances[id(store)] = Traffic(store.r, store.ns)
        return t
