"""Timing rules, written once: the back-off between checks and a record's validity.

* **Back-off between checks** (``CheckPlan``): a record with no final status yet is asked about
  again after as long as it has lived so far, within ``[first_s, max_s]``.  A first check
  ``first_s`` after the send, then waits that double as it ages, then one every ``max_s``.  The
  worker's poll chain (each provider's ``first_poll_s``/``max_poll_interval_s``), the pending
  payment lookups (bePaid's ``pending_lookup_after_s``/``max_lookup_interval_s``) and the
  scheduler's sweep (``scheduler/lua/sweep.lua``, which is handed ``first_s`` and ``max_s`` of
  its plan) all use this one formula.
* **Give-up age**: a submitted message with no final status after ``Settings.status_give_up_s``
  is closed as ``unknown`` (by its poll or by the sweep, whichever sees it first).
* **Validity**: a message with ``expires_ms`` is never sent after it; a message that waits
  (a traffic hold, an account pause) comes back no later than then, to be marked ``expired``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

#: a waiting message comes back this long after its validity ends (so it is past it then)
EXPIRY_MARGIN_MS = 20


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class CheckPlan:
    """When to ask again about a record that has no final status yet."""

    #: the first check, this long after the send (or after the record became pending)
    first_s: float = 60.0
    #: checks never come further apart than this
    max_s: float = 3600.0

    def next_delay_s(self, age_s: float) -> float:
        """Seconds until the next check of a record ``age_s`` old: as long as it has lived,
        within ``[first_s, max_s]``."""
        return min(max(age_s, self.first_s), self.max_s)


def age_s(rec: Mapping[str, str], now: int | None = None, *,
          since: str = "submitted_ms") -> float:
    """Seconds since the record's ``since`` field (a message: submitted; a payment:
    ``pending_ms``), or since it was created if that field is not set."""
    start = int(rec.get(since) or rec.get("created_ms") or 0)
    return max(((now_ms() if now is None else now) - start) / 1000.0, 0.0)


def expires_ms(rec: Mapping[str, str]) -> int:
    """When the message's validity ends (ms), 0 if it has none."""
    return int(rec.get("expires_ms") or 0)


def expired(rec: Mapping[str, str], now: int | None = None) -> bool:
    """True once the message's validity has ended: it must not be sent any more."""
    end = expires_ms(rec)
    return bool(end) and (now_ms() if now is None else now) >= end


def within_validity_ms(rec: Mapping[str, str], delay_ms: int) -> int:
    """``delay_ms``, shortened so a waiting message comes back just after its validity ends
    (to be marked expired then) if that is sooner; at least 1 ms."""
    end = expires_ms(rec)
    if end:
        delay_ms = min(delay_ms, end - now_ms() + EXPIRY_MARGIN_MS)
    return max(int(delay_ms), 1)
