"""The optional sending window of an account: hours, in its time zone, when bulk and
promotional messages may go (``Limits.send_window = "09:00-21:00"``, may wrap midnight)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

_SPEC = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?-(\d{2}):(\d{2})(?::(\d{2}))?$")
DAY_S = 24 * 3600


def _secs(h: str, m: str, s: str | None) -> int:
    hh, mm, ss = int(h), int(m), int(s or 0)
    if hh > 24 or mm > 59 or ss > 59 or (hh == 24 and (mm or ss)):
        raise ValueError("not a time of day")
    return hh * 3600 + mm * 60 + ss


@dataclass(frozen=True)
class SendWindow:
    start_s: int  # seconds after local midnight
    end_s: int
    zone: ZoneInfo

    @classmethod
    def parse(cls, spec: str, zone: str) -> SendWindow:
        """Raises ValueError on anything but ``HH:MM[:SS]-HH:MM[:SS]`` with real times."""
        m = _SPEC.match(spec)
        if not m:
            raise ValueError(f"sending window {spec!r} is not HH:MM[:SS]-HH:MM[:SS]")
        start, end = _secs(*m.group(1, 2, 3)), _secs(*m.group(4, 5, 6))
        if start == end:
            raise ValueError(f"sending window {spec!r} is empty")
        return cls(start % DAY_S, end % DAY_S if end != DAY_S else DAY_S, ZoneInfo(zone))

    def wait_s(self, now: datetime) -> float:
        """Seconds until messages may go (0.0 inside the window). ``now`` must be aware."""
        local = now.astimezone(self.zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        t = (local - midnight).total_seconds()
        if self.start_s < self.end_s:
            inside = self.start_s <= t < self.end_s
        else:  # wraps midnight
            inside = t >= self.start_s or t < self.end_s
        if inside:
            return 0.0
        opens = midnight.replace(tzinfo=None) + timedelta(seconds=self.start_s)
        if t >= self.start_s:
            opens += timedelta(days=1)
        # wall-clock arithmetic, then back to an instant (DST moves are honoured)
        opens_at = opens.replace(tzinfo=self.zone)
        return max((opens_at - now).total_seconds(), 0.0)
