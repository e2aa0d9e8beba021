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
from core.store import lua_text
from workers import traffic
from workers.traffic.pacing import Slot


class Unpaced:
    """A pacing ticket that lets every transmission go at once (``workers.providers.base.
    Pacing``): the window limiter alone decides when a send starts, as in a dramatiq app."""

    tolerance_s = float("inf")

    def take(self, parts: int | None = None) -> Slot:
        return Slot(time.time(), 1.0)

    def missed(self) -> None:
        pass

    def wire(self, parts: int | None = None) -> Slot:
        return self.take(parts)

    def trace(self, event: str, info: dict[str, Any]) -> None:
        pass


def window_pacing() -> None:
    settings = get_settings()
    backend = RedisBackend(url=settings.redis_url)
    limiters: dict[str, WindowRateLimiter] = {}
    begin: dict[int, Any] = {}  # attempt.lua, registered once per Redis client

    def pace(self: traffic.Traffic, account: Any, rec: dict[str, str], *, urgent: bool,
             expires_ms: int, count: Any = None, attempt: Any = None) -> Any:
        # the flood rule is left out (the pacing runs send to distinct numbers); the attempt
        # begins once the window lets the send go, as Gonets begins it with its booking
        lim = limiters.get(account.name)
        if lim is None:
            lim = limiters[account.name] = WindowRateLimiter(
                backend, f"bench-window-{account.name}", limit=int(account.limits.rate_per_s),
                window=1)
        while True:
            with lim.acquire(raise_on_failure=False) as acquired:
                if acquired:
                    if attempt is not None:
                        script = begin.get(id(self.pacer.r))
                        if script is None:
                            script = begin[id(self.pacer.r)] = self.pacer.r.register_script(
                                lua_text("attempt.lua"))
                        attempt.done(script(keys=attempt.keys, args=attempt.args))
                    return Unpaced()  # unpaced at the wire
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
