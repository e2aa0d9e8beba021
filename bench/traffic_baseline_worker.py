"""A Gonets worker with one traffic rule swapped for a baseline, for bench_traffic:

    python -m bench.traffic_baseline_worker window POOL THREADS
        pacing by dramatiq's WindowRateLimiter (Redis backend, ``rate_per_s`` per 1-s window)
        instead of the GCRA reservation; a thread that finds the window full polls again
        every 5 ms (the best a fixed-window limiter can do for throughput)
    python -m bench.traffic_baseline_worker noslow POOL THREADS
        a provider's "slow down" is an ordinary retry: the account's rate is not lowered
"""

from __future__ import annotations

import sys
import time
from typing import Any

from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

from core.settings import get_settings
from workers import traffic


def window_pacing() -> None:
    settings = get_settings()
    backend = RedisBackend(url=settings.redis_url)
    limiters: dict[str, WindowRateLimiter] = {}

    def pace(self: traffic.Traffic, account: Any, rec: dict[str, str], *, urgent: bool,
             expires_ms: int, booked: Any = None) -> None:
        lim = limiters.get(account.name)
        if lim is None:
            lim = limiters[account.name] = WindowRateLimiter(
                backend, f"bench-window-{account.name}", limit=int(account.limits.rate_per_s),
                window=1)
        while True:
            with lim.acquire(raise_on_failure=False) as acquired:
                if acquired:
                    if booked is not None:
                        booked(0.0)
                    return None  # no ticket: the send goes at once, unpaced at the wire
            time.sleep(0.005)

    traffic.Traffic.pace = pace  # type: ignore[method-assign]


def no_slow_down() -> None:
    traffic.Traffic.slowed = lambda self, account: 1.0  # type: ignore[method-assign]


def main() -> int:
    mode, pool, threads = sys.argv[1], sys.argv[2], sys.argv[3]
    {"window": window_pacing, "noslow": no_slow_down}[mode]()
    from cli.main import main as gonets

    return gonets(["worker", "--pool", pool, "--threads", threads])


if __name__ == "__main__":
    sys.exit(main())
