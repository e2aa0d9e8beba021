"""Cluster-wide pacing per account: a GCRA reservation in Redis, and the shared slow-down.

Every send reserves the next slot of its account (one slot per SMS part) in one Lua script
timed by Redis ``TIME``, sleeps until the slot, and forfeits a slot it woke up too late for
(a late send could land next to the following one and break the cap in some 1-second window).

Slots are spaced ``(1 + jitter) / rate`` apart, ``jitter`` being ``Limits.pacing_jitter_ms``:
``rate`` slots then span at least ``1 s + jitter``, so even a send that reaches the provider up
to ``jitter`` later than another keeps every sliding 1-second window at the cap or under.

Urgent before bulk: a bulk send may only reserve a slot at most ``BULK_HORIZON_S`` ahead (it
waits and asks again otherwise); an urgent send takes the next slot however far ahead it is.
So bulk never books the future, and an urgent message's slot comes right after the few bulk
slots already booked.

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

import redis

from core.settings import Account

#: how far ahead a bulk send may book a slot
BULK_HORIZON_S = 0.1
#: a slot is used if woken up at most max(jitter / 2, this) after its start, else forfeited
MIN_LATE_S = 0.005
#: each cut keeps this share of the rate; never below SLOW_MIN_FACTOR of the configured rate
SLOW_CUT = 0.7
SLOW_MIN_FACTOR = 0.05
SLOW_COOLDOWN_S = 1.0
SLOW_HOLD_S = 10.0
SLOW_RECOVER_PER_S = 0.01


def _lua(name: str) -> str:
    return resources.files("workers.traffic").joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Slot:
    """A reserved slot: ``at`` is a ``time.time()`` instant (Redis clock mapped to this host's);
    ``factor`` the share of the configured rate in force (below 1 after a slow-down)."""

    at: float
    factor: float


class Pacer:
    def __init__(self, client: redis.Redis, namespace: str, *,
                 hold_s: float = SLOW_HOLD_S, recover_per_s: float = SLOW_RECOVER_PER_S,
                 cooldown_s: float = SLOW_COOLDOWN_S) -> None:
        self.r = client
        self.ns = namespace
        self.cooldown_us = int(cooldown_s * 1e6)
        self.hold_us = int(hold_s * 1e6)
        self.recover_ppm = int(recover_per_s * 1e6)
        self._script = client.register_script(_lua("pacing.lua"))
        #: Redis clock minus this host's clock (s), from the quickest round trip seen lately:
        #: slots are instants on the Redis clock, shared by every pod
        self._offset = 0.0
        self._offset_rtt = float("inf")
        self._offset_since = 0.0

    def keys(self, account: str) -> list[str]:
        return [f"{self.ns}:pace:{account}", f"{self.ns}:pace:{account}:slow"]

    def _call(self, account: str, *args: str | int) -> tuple[int, int, float]:
        return self._timed_call(account, *args)[:3]

    def _timed_call(self, account: str, *args: str | int) -> tuple[int, int, float, float]:
        """The script's answer, plus the Redis ``now`` of the call on this host's clock."""
        sent = time.time()
        res = self._script(keys=self.keys(account),
                           args=[args[0], self.hold_us, self.recover_ppm, *args[1:]])
        got = time.time()
        ok, wait_us, factor = int(res[0]), int(res[1]), int(res[2]) / 1e6
        if len(res) < 4:
            return ok, wait_us, factor, got
        redis_now = int(res[3]) / 1e6
        rtt = got - sent
        if rtt <= self._offset_rtt or got - self._offset_since > 30:
            self._offset = redis_now - (sent + got) / 2
            self._offset_rtt = rtt
            self._offset_since = got
        return ok, wait_us, factor, redis_now - self._offset

    @staticmethod
    def interval_s(account: Account) -> float:
        """Seconds per part at the full rate, jitter allowance included."""
        lim = account.limits
        return (1.0 + lim.pacing_jitter_ms / 1000.0) / lim.rate_per_s

    def try_reserve(self, account: Account, parts: int, *,
                    urgent: bool) -> tuple[bool, float, float]:
        """One reservation attempt: (granted, seconds to wait, factor)."""
        ok, at, factor = self._reserve(account, parts, urgent=urgent)
        return ok, at - time.time(), factor

    def _reserve(self, account: Account, parts: int, *, urgent: bool) -> tuple[bool, float, float]:
        """(granted, the ``time.time()`` instant to send or to ask again, factor)."""
        horizon = -1 if urgent else int(BULK_HORIZON_S * 1e6)
        ok, wait_us, factor, now = self._timed_call(
            account.name, "reserve", int(self.interval_s(account) * 1e6), max(parts, 1), horizon)
        return bool(ok), now + wait_us / 1e6, factor

    def acquire(self, account: Account, parts: int, *, urgent: bool, deadline: float,
                late_s: float | None = None,
                booked: Callable[[float], None] | None = None) -> Slot | None:
        """Reserve a slot and sleep until it. Returns the slot once it has come, or ``None``
        when none could be had before ``deadline`` (a ``time.time()`` instant).

        A slot woken up for more than ``late_s`` after its start is forfeited (left unused)
        and the next one reserved.  ``booked(seconds until the slot)`` is called once a slot
        is booked, before the sleep; if it raises, the slot is left unused.
        """
        if late_s is None:
            late_s = max(account.limits.pacing_jitter_ms / 2000.0, MIN_LATE_S)
        while True:
            ok, at, factor = self._reserve(account, parts, urgent=urgent)
            now = time.time()
            if not ok:
                # refused (bulk, the next slot is beyond the horizon): ask again when it is
                # within reach; the jitter keeps the waiting threads from asking all at once
                retry = at + random.uniform(0, BULK_HORIZON_S / 2)
                if retry > deadline:
                    return None
                time.sleep(max(retry - now, 0.001))
                continue
            if at > deadline:
                return None  # booked but too far: the slot goes unused, nothing is sent
            if booked is not None:
                booked(at - now)
                booked = None  # once: a later slot is only later
                now = time.time()
            if at > now:
                time.sleep(at - now)
            late = time.time() - at
            if late <= late_s:
                return Slot(at=at, factor=factor)
            # woke up too late: forfeit it and book again

    def slow_down(self, account: str) -> tuple[bool, float]:
        """The provider said "too fast": cut the account's rate for every pod. Returns whether
        this call cut it (not within the cooldown of an earlier cut) and the factor in force."""
        cut, _, factor = self._call(account, "slow", int(SLOW_CUT * 1e6),
                                    int(SLOW_MIN_FACTOR * 1e6), self.cooldown_us)
        return bool(cut), factor

    def factor(self, account: str) -> float:
        """The share of the configured rate in force now (1.0 unless slowed down)."""
        return self._call(account, "peek")[2]
