"""Cluster-wide pacing per account: a GCRA reservation in Redis, and the shared slow-down.

Every transmission reserves the next slot of its account (one slot per SMS part) in one Lua
script timed by Redis ``TIME``.  The booking is made early (in the actor, where the flood rule
counts the send at the slot's instant) but the **last check is made where the bytes leave**:
the ``Ticket`` of the send travels to the writer, which holds the bytes until the slot and, if
it is about to write them more than ``tolerance`` past the slot, gives the slot up (counted in
``<ns>:pace:forfeits``, exported as ``gonets_pacing_forfeited_slots``) and books the next one
instead of writing late next to the following send.  The writers are the SMPP session thread
(``workers.smpp.session``: the only writer of a bind, it never coalesces submits of different
slots into one write) and, for HTTP providers, httpx's "about to send the request headers"
trace event (after a pooled connection was obtained, so the wait for one counts against the
slot).  Every further transmission of the same message (a resend after a lost link, a retry on
a backup server, a request repeated after a refused token) takes a fresh slot from the ticket.

The guarantee.  Slots are spaced ``(1 + (tolerance + margin)) / rate`` apart, ``tolerance``
being ``Limits.pacing_jitter_ms`` (how late a write may be and still use its slot, checked)
and ``margin`` ``Limits.pacing_margin_ms`` (what the check cannot see: the moment between the
check and the write, and the network's jitter to the provider).  A send is never written before
its slot, so if each one reaches the provider less than ``tolerance + margin`` after its slot,
any ``rate + 1`` consecutive sends span more than one second: **no 1-second window at the
provider holds more than ``rate`` parts**.  Assumptions: the slots are instants on the Redis
clock mapped to each host's clock through the quickest round trip seen (an error of at most
half that round trip, well under a millisecond on a LAN; it counts against the margin), and
the delay after the check stays under the margin.  The price is throughput:
``rate / (1 + (tolerance + margin) / 1000 ms)``, e.g. 30/s with 15 + 15 ms gives 29.1/s, plus
the slots forfeited on a stalled host.

Urgent before bulk: a bulk send may only reserve a slot at most ``BULK_HORIZON_S`` ahead (it
waits and asks again otherwise); an urgent send takes the next slot however far ahead it is.
So bulk never books the future, and an urgent message's slot comes right after the few bulk
slots already booked.  A slot booked again after a forfeit is booked as urgent: the message has
waited its turn already.

Slow-down: when a provider says "too fast" (``core.errors.SlowDown``) the account's rate is cut
to ``SLOW_CUT`` of what it was, for every pod (the factor lives in Redis beside the TAT; cuts
within ``SLOW_COOLDOWN_S`` count as one, since the sends already in flight all hear the same
complaint). After ``SLOW_HOLD_S`` of quiet it climbs back by ``SLOW_RECOVER_PER_S`` of the full
rate per second up to 90 % of the rate the provider complained at, and ten times slower above
it: the rate settles just under the provider's real limit and probes it rarely.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis

from core.errors import RetryLater
from core.keys import Keys
from core.observability.tracing import span
from core.settings import Account
from core.stall import stall
from core.store import Attempt, composed_script, lua_text
from workers.traffic import flood
from workers.traffic.flood import FloodCount, FloodHeld

#: how far ahead a bulk send may book a slot
BULK_HORIZON_S = 0.1
#: each cut keeps this share of the rate; never below SLOW_MIN_FACTOR of the configured rate
SLOW_CUT = 0.7
SLOW_MIN_FACTOR = 0.05
SLOW_COOLDOWN_S = 1.0
SLOW_HOLD_S = 10.0
SLOW_RECOVER_PER_S = 0.01
#: the least tolerance, whatever ``pacing_jitter_ms`` says
MIN_TOLERANCE_S = 0.001
#: a ticket gives up after this many forfeits in a row (a host too stalled to keep any slot)
MAX_FORFEITS = 20
#: httpx (httpcore) trace events fired right before a request's first byte is written
WIRE_EVENTS = ("http11.send_request_headers.started", "http2.send_request_headers.started")


def _lua(name: str) -> str:
    return resources.files("workers.traffic").joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Slot:
    """A reserved slot: ``at`` is a ``time.time()`` instant (Redis clock mapped to this host's);
    ``factor`` the share of the configured rate in force (below 1 after a slow-down);
    ``flood_wait_s`` what the flood rule said of a send booked with a ``FloodCount`` (0.0: it
    was counted at the slot; else the seconds until its number's burst ends)."""

    at: float
    factor: float
    flood_wait_s: float = 0.0


class NoSlot(RetryLater):
    """No slot could be kept (the host stalls past every slot): nothing was sent."""


class Pacer:
    def __init__(self, client: redis.Redis, namespace: str, *,
                 hold_s: float = SLOW_HOLD_S, recover_per_s: float = SLOW_RECOVER_PER_S,
                 cooldown_s: float = SLOW_COOLDOWN_S) -> None:
        self.r = client
        self.ns = namespace
        self._keys = Keys(namespace)
        self.cooldown_us = int(cooldown_s * 1e6)
        self.hold_us = int(hold_s * 1e6)
        self.recover_ppm = int(recover_per_s * 1e6)
        self._script = client.register_script(_lua("pacing.lua"))
        #: a send's attempt, pacing.lua's "reserve" and flood.lua in one step (``ticket`` with
        #: a ``FloodCount``)
        self._admit = composed_script(client, "admit.lua", _lua("admit.lua"),
                                      attempt=lua_text("attempt.lua"), pace=_lua("pacing.lua"),
                                      flood=flood.script_text())
        #: Redis clock minus this host's clock (s), from the quickest round trip seen lately:
        #: slots are instants on the Redis clock, shared by every pod
        self._offset = 0.0
        self._offset_rtt = float("inf")
        self._offset_since = 0.0

    def keys(self, account: str) -> list[str]:
        return [self._keys.pace(account), self._keys.pace_slow(account),
                self.counts_key(account)]

    def counts_key(self, account: str) -> str:
        """Hash: ``booked`` parts whose slot was reserved, ``forfeited`` parts whose slot a
        late writer gave up (counters for the metrics; no TTL)."""
        return self._keys.pace_counts(account)

    def _call(self, account: str, *args: str | int) -> tuple[int, int, float]:
        ok, wait_us, factor, _ = self._timed_call(account, *args)
        return ok, wait_us, factor

    def _timed_call(self, account: str, *args: str | int) -> tuple[int, int, float, float]:
        """The script's answer, plus the Redis ``now`` of the call on this host's clock."""
        ok, wait_us, factor, now, _ = self._timed_answer(account, list(args))
        return ok, wait_us, factor, now

    def _timed_answer(self, account: str, args: list[str | int], count: FloodCount | None = None,
                      max_wait_s: float = 0.0, attempt: Attempt | None = None
                      ) -> tuple[int, int, float, float, float | None]:
        """``_timed_call``; with ``count``, the reservation runs with the flood rule's count
        (``admit.lua``: asked when the slot is granted within ``max_wait_s``), whose answer
        (seconds to wait, 0.0: counted) is the last element (None: not asked), and begins
        ``attempt`` first in the same step, if given and not begun yet."""
        sent = time.time()
        if count is None:
            res = self._script(keys=self.keys(account),
                               args=[args[0], self.hold_us, self.recover_ppm, *args[1:]])
        else:
            # a wait up to the deadline, less the quickest round trip: the slot's instant is
            # told from the script's own clock, a little after ``sent``
            rtt = self._offset_rtt if self._offset_rtt != float("inf") else 0.0
            max_wait_us = int(min(max_wait_s - rtt, 1e12) * 1e6)
            first = attempt if attempt is not None and not attempt.begun else None
            res = self._admit(keys=[*self.keys(account), count.key,
                                    *(first.keys if first else ())],
                              args=[args[0], self.hold_us, self.recover_ppm, *args[1:],
                                    max_wait_us, count.max_messages, count.gap_ms,
                                    *(first.args if first else ())])
            if first is not None:
                first.done(res[6])
        got = time.time()
        ok, wait_us, factor = int(res[0]), int(res[1]), int(res[2]) / 1e6
        counted = flood.wait_of(res[4], res[5]) if len(res) > 5 and res[4] != "" else None
        if len(res) < 4:
            return ok, wait_us, factor, got, counted
        redis_now = int(res[3]) / 1e6
        rtt = got - sent
        if rtt <= self._offset_rtt or got - self._offset_since > 30:
            self._offset = redis_now - (sent + got) / 2
            self._offset_rtt = rtt
            self._offset_since = got
        return ok, wait_us, factor, redis_now - self._offset, counted

    @staticmethod
    def interval_s(account: Account) -> float:
        """Seconds per part at the full rate: tolerance and margin included."""
        lim = account.limits
        return (1.0 + (lim.pacing_jitter_ms + lim.pacing_margin_ms) / 1000.0) / lim.rate_per_s

    @staticmethod
    def tolerance_s(account: Account) -> float:
        """How late a writer may be past a slot and still use it (at least ``MIN_TOLERANCE_S``:
        a write is never exactly on time)."""
        return max(account.limits.pacing_jitter_ms / 1000.0, MIN_TOLERANCE_S)

    def try_reserve(self, account: Account, parts: int, *,
                    urgent: bool) -> tuple[bool, float, float]:
        """One reservation attempt: (granted, seconds to wait, factor)."""
        ok, at, factor = self._reserve(account, parts, urgent=urgent)
        return ok, at - time.time(), factor

    def _reserve(self, account: Account, parts: int, *, urgent: bool) -> tuple[bool, float, float]:
        """(granted, the ``time.time()`` instant to send or to ask again, factor)."""
        ok, at, factor, _ = self._reserve_counted(account, parts, urgent=urgent)
        return ok, at, factor

    def _reserve_counted(self, account: Account, parts: int, *, urgent: bool,
                         count: FloodCount | None = None, deadline: float = float("inf"),
                         attempt: Attempt | None = None
                         ) -> tuple[bool, float, float, float | None]:
        """``_reserve``, with ``count``'s flood rule answer when the slot came before
        ``deadline`` (None: not asked), beginning ``attempt`` first (``_timed_answer``)."""
        horizon = -1 if urgent else int(BULK_HORIZON_S * 1e6)
        ok, wait_us, factor, now, counted = self._timed_answer(
            account.name, ["reserve", int(self.interval_s(account) * 1e6), max(parts, 1),
                           horizon], count, deadline - time.time(), attempt)
        return bool(ok), now + wait_us / 1e6, factor, counted

    def book(self, account: Account, parts: int, *, urgent: bool,
             deadline: float = float("inf"), count: FloodCount | None = None,
             attempt: Attempt | None = None) -> Slot | None:
        """Reserve the next slot (without waiting for it). Bulk waits until the next slot is
        within its horizon. ``None`` when none could be had before ``deadline``. With
        ``count`` the flood rule counts the send at its slot in the same step (its answer in
        ``Slot.flood_wait_s``); the script, which asks the rule only for a slot before the
        deadline, is then what says whether the slot came in time. ``attempt`` (with
        ``count``) is begun in the first booking's step, before it."""
        while True:
            ok, at, factor, counted = self._reserve_counted(account, parts, urgent=urgent,
                                                            count=count, deadline=deadline,
                                                            attempt=attempt)
            if ok and count is not None:
                return None if counted is None else Slot(at=at, factor=factor,
                                                         flood_wait_s=counted)
            if ok:
                return Slot(at=at, factor=factor) if at <= deadline else None
            # refused (bulk, the next slot is beyond the horizon): ask again when it is
            # within reach; the jitter keeps the waiting threads from asking all at once
            retry = at + random.uniform(0, BULK_HORIZON_S / 2)
            if retry > deadline:
                return None
            time.sleep(max(retry - time.time(), 0.001))

    def forfeited(self, account: str, parts: int = 1) -> None:
        """Count a slot given up by a writer that came too late (the metric per account)."""
        try:
            self.r.hincrby(self.counts_key(account), "forfeited", parts)
        except redis.RedisError:
            pass  # a metric: never the reason a send fails

    def counts(self, account: str) -> dict[str, int]:
        """{"booked": parts, "forfeited": parts} so far for ``account``."""
        raw = self.r.hgetall(self.counts_key(account))
        got = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        return {"booked": got.get("booked", 0), "forfeited": got.get("forfeited", 0)}

    def acquire(self, account: Account, parts: int, *, urgent: bool, deadline: float,
                booked: Callable[[float], None] | None = None) -> Slot | None:
        """Reserve a slot and sleep until it (a ticket's ``wire()``). Returns the slot once it
        has come, or ``None`` when none could be had before ``deadline``."""
        ticket = self.ticket(account, parts, urgent=urgent, deadline=deadline, booked=booked)
        if ticket is None:
            return None
        try:
            return ticket.wire()
        except NoSlot:
            return None

    def ticket(self, account: Account, parts: int, *, urgent: bool, deadline: float,
               booked: Callable[[float], None] | None = None,
               count: FloodCount | None = None, attempt: Attempt | None = None
               ) -> Ticket | None:
        """Book the send's first slot; ``booked(seconds until the slot)`` is called once it is
        booked (if it raises, the slot is left unused). ``None``: no slot before ``deadline``.
        ``count``: the flood rule counts the send at its slot in the booking's own step;
        ``FloodHeld`` when it holds it (the slot is left unused). ``attempt`` (with
        ``count``): the send's attempt begins in that step too, before the booking
        (``attempt.begun`` says whether it did)."""
        slot = self.book(account, parts, urgent=urgent, deadline=deadline, count=count,
                         attempt=attempt)
        if slot is None:
            return None
        if slot.flood_wait_s > 0:
            raise FloodHeld(slot.flood_wait_s)
        if booked is not None:
            booked(slot.at - time.time())
        return Ticket(self, account, parts, slot, deadline=deadline)

    def slow_down(self, account: str) -> tuple[bool, float]:
        """The provider said "too fast": cut the account's rate for every pod. Returns whether
        this call cut it (not within the cooldown of an earlier cut) and the factor in force."""
        cut, _, factor = self._call(account, "slow", int(SLOW_CUT * 1e6),
                                    int(SLOW_MIN_FACTOR * 1e6), self.cooldown_us)
        return bool(cut), factor

    def factor(self, account: str) -> float:
        """The share of the configured rate in force now (1.0 unless slowed down)."""
        return self._call(account, "peek")[2]


class Ticket:
    """One message's pacing, carried from the actor (which booked its first slot) to where its
    bytes leave.  ``take()`` hands out the booked slot, then a fresh one per further
    transmission; a writer that came too late calls ``missed()`` and takes again.

    Thread use: one send at a time (the actor's thread, and the writer it hands a slot to)."""

    def __init__(self, pacer: Pacer, account: Account, parts: int, slot: Slot, *,
                 deadline: float = float("inf")) -> None:
        self.pacer = pacer
        self.account = account
        self.parts = max(parts, 1)
        self.tolerance_s = Pacer.tolerance_s(account)
        self.deadline = deadline
        self._slot: Slot | None = slot
        #: slots given up by this send so far, and the slots it used (one per transmission)
        self.forfeits = 0
        self.used = 0
        self._taken = self.parts

    @property
    def first_at(self) -> float | None:
        return self._slot.at if self._slot is not None else None

    def take(self, parts: int | None = None) -> Slot:
        """The slot for the next transmission of ``parts`` parts (default: all): the booked
        one the first time, a new one (booked as urgent: it waited its turn) after that."""
        slot = self._slot
        self._slot = None
        self._taken = self.parts
        if slot is None:
            self._taken = parts or self.parts
            got = self.pacer.book(self.account, self._taken, urgent=True)
            assert got is not None  # no deadline: an urgent booking is always granted
            slot = got
        self.used += 1
        return slot

    def missed(self) -> None:
        """The writer gave the last slot up (too late); raises NoSlot after too many."""
        self.used -= 1
        self.forfeits += 1
        self.pacer.forfeited(self.account.name, self._taken)
        if self.forfeits >= MAX_FORFEITS:
            raise NoSlot(f"{self.forfeits} pacing slots in a row went by before the send "
                         "could be written (host stalled); nothing was sent", delay_s=1.0)

    def wire(self, parts: int | None = None) -> Slot:
        """Block until the next transmission may be written: sleep until its slot; if already
        more than the tolerance past it, give it up and take the next. Call it right before
        the first byte is written."""
        while True:
            slot = self.take(parts)
            now = time.time()
            if slot.at > now:
                # in the send's trace (HTTP providers wait here, inside the request's span)
                with span("pacing.slot", f"slot {self.account.name}", measure="pacing_wait"):
                    time.sleep(slot.at - now)
            stall()  # a test hook: nothing unless GONETS_TEST_STALL is set
            if time.time() - slot.at <= self.tolerance_s:
                return slot
            self.missed()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """An httpx ``extensions={"trace": ...}`` hook: ``wire()`` right before the request's
        headers are written (a pooled connection is in hand by then)."""
        if event in WIRE_EVENTS:
            self.wire()
