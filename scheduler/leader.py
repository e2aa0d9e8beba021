"""The leader lock and the dedupe keys: one scheduler fires, and no fire runs twice.

Key layout (``ns`` is ``Settings.namespace``):

    ns:scheduler:leader             string  holder's instance id; expires unless renewed
    ns:scheduler:fired:<job>:<ms>   string  dedupe key of one fire (job and fire time, ms)
    ns:scheduler:last:<job>         string  fire time (ms) of the job's latest run
    ns:scheduler:runs               stream  one entry per run (job, fire_ms, by, checked...)

Kubernetes may run two replicas during a rollout.  Each renews the lock every third of its
ttl; only the holder fires.  A holder that dies (or pauses past the ttl) loses it and the
other replica takes over.  Every fire first takes the dedupe key named by job and fire time
(arq's ``run_cron`` idea), so even a holder that lost the lock without noticing cannot run
a fire the new holder has run.
"""

from __future__ import annotations

import os
import socket
import uuid
from importlib import resources

import redis

#: dedupe keys outlive any schedule's catch-up horizon
FIRED_TTL_S = 8 * 24 * 3600


def _lua(name: str) -> str:
    return resources.files("scheduler").joinpath("lua", name).read_text(encoding="utf-8")


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaderLock:
    def __init__(self, r: redis.Redis, namespace: str, ttl_s: float,
                 me: str | None = None) -> None:
        self.r = r
        self.ns = namespace
        self.ttl_ms = max(int(ttl_s * 1000), 1)
        self.me = me or instance_id()
        self.key = f"{namespace}:scheduler:leader"
        self._hold = r.register_script(_lua("leader.lua"))
        self._release = r.register_script(_lua("release.lua"))

    def hold(self) -> bool:
        """Take the lock if it is free, renew it if it is ours. True while we hold it."""
        return bool(self._hold(keys=[self.key], args=[self.me, self.ttl_ms]))

    def holder(self) -> str | None:
        v = self.r.get(self.key)
        return v.decode() if isinstance(v, bytes) else v

    def release(self) -> bool:
        return bool(self._release(keys=[self.key], args=[self.me]))

    # --- dedupe and catch-up bookkeeping
    def claim_fire(self, job: str, fire_ms: int) -> bool:
        """Take the dedupe key of one fire; False if any instance took it already."""
        ok = bool(self.r.set(f"{self.ns}:scheduler:fired:{job}:{fire_ms}", self.me, nx=True,
                             ex=FIRED_TTL_S))
        if ok:
            self.r.set(f"{self.ns}:scheduler:last:{job}", fire_ms)
        return ok

    def last_fire_ms(self, job: str) -> int | None:
        v = self.r.get(f"{self.ns}:scheduler:last:{job}")
        return int(v) if v is not None else None

    def set_last_fire_ms(self, job: str, fire_ms: int) -> None:
        self.r.set(f"{self.ns}:scheduler:last:{job}", fire_ms, nx=True)
