"""The leader lock and the dedupe keys: one scheduler fires, and no fire runs twice.

Key layout (``ns`` is ``Settings.namespace``):

    ns:scheduler:leader             string  holder's instance id; expires unless renewed
    ns:scheduler:fired:<job>:<ms>   string  dedupe key of one fire (job and fire time, ms)
    ns:scheduler:last:<job>         string  fire time (ms) of the job's latest run
    ns:scheduler:runs               stream  one entry per run (job, fire_ms, by, checked...)

The lock is a ``core.locks.Lease`` of one slot (``core/lua/lease.lua``: take it if free, renew
it if ours).  Kubernetes may run two replicas during a rollout.  Each renews the lock every
third of its ttl; only the holder fires.  A holder that dies (or pauses past the ttl) loses
it and the other replica takes over.  Every fire first takes the dedupe key named by job and
fire time (arq's ``run_cron`` idea), so even a holder that lost the lock without noticing
cannot run a fire the new holder has run.
"""

from __future__ import annotations

import redis

from core.keys import Keys
from core.locks import Lease, new_token

#: dedupe keys outlive any schedule's catch-up horizon
FIRED_TTL_S = 8 * 24 * 3600


def instance_id() -> str:
    return new_token()


class LeaderLock:
    """The leader lock: a one-slot ``core.locks.Lease``, plus the fires' dedupe keys."""

    def __init__(self, r: redis.Redis, namespace: str, ttl_s: float,
                 me: str | None = None) -> None:
        self.r = r
        self.keys = Keys(namespace)
        self.lease = Lease(r, [self.keys.leader()], ttl_s, token=me or instance_id())
        self.me = self.lease.token
        self.key = self.keys.leader()

    def hold(self) -> bool:
        """Take the lock if it is free, renew it if it is ours. True while we hold it."""
        return self.lease.acquire()

    def holder(self) -> str | None:
        return self.lease.locks.holder(self.key)

    def release(self) -> bool:
        """Give the lock up, only if we hold it."""
        return self.lease.locks.release(self.key, self.me)

    # --- dedupe and catch-up bookkeeping
    def claim_fire(self, job: str, fire_ms: int) -> bool:
        """Take the dedupe key of one fire; False if any instance took it already."""
        # a claim nobody releases: it only has to outlive the catch-up horizon
        ok = self.lease.locks.take(self.keys.fired(job, fire_ms), self.me, FIRED_TTL_S)
        if ok:
            self.r.set(self.keys.last_fire(job), fire_ms)  # the fires' bookkeeping: its own key
        return ok

    def last_fire_ms(self, job: str) -> int | None:
        v = self.r.get(self.keys.last_fire(job))  # the bookkeeping, as above
        return int(v) if v is not None else None

    def set_last_fire_ms(self, job: str, fire_ms: int) -> None:
        self.r.set(self.keys.last_fire(job), fire_ms, nx=True)  # the bookkeeping, as above

    def record_run(self, job: str, fire_ms: int, started_ms: int, ended_ms: int, result: str,
                   *, maxlen: int) -> None:
        """One entry of the runs stream (capped at about ``maxlen``)."""
        self.r.xadd(self.keys.runs(), {"job": job, "fire_ms": fire_ms, "by": self.me,
                                       "started_ms": started_ms, "ended_ms": ended_ms,
                                       "result": result}, maxlen=maxlen, approximate=True)
