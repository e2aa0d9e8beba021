"""Bind leases: at most ``n`` SMPP binds per login across every process of the cluster.

SMSC takes one bind per login (``MCONn``: n), and a bind beyond that kicks an older one, so
scaling out a pool must not simply add binds.  Each bind holds one of ``n`` slots in Redis:

    <ns>:smpp:lease:<login>:<slot>   string  holder token, with a TTL of ``ttl_s``

A session takes a free slot (``SET NX PX``) before it binds and renews it every ``ttl_s / 3``
with a compare-and-extend; a holder that dies stops renewing and its slot frees itself after
``ttl_s``, so a standby process binds within about ``ttl_s`` seconds.  A session that cannot
renew (Redis unreachable, slot taken over) unbinds at once, so two binds never overlap for
longer than one renew interval even in a network partition.
"""

from __future__ import annotations

import os
import socket
import uuid

import redis

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class BindLease:
    def __init__(self, r: redis.Redis, *, namespace: str, login: str, slots: int,
                 ttl_s: float = 10.0) -> None:
        if not 1 <= slots <= 9:
            raise ValueError("slots must be 1..9 (MCON1..MCON9)")
        self.r = r
        self.keys = [f"{namespace}:smpp:lease:{login}:{i}" for i in range(1, slots + 1)]
        self.ttl_ms = int(ttl_s * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.slot: str | None = None
        self._renew = r.register_script(_RENEW)
        self._release = r.register_script(_RELEASE)

    @property
    def renew_every_s(self) -> float:
        return self.ttl_ms / 3000.0

    @property
    def held(self) -> bool:
        return self.slot is not None

    def acquire(self) -> bool:
        """Hold a slot (keeping the one held). True when this process may bind."""
        if self.slot is not None:
            return self.renew()
        for key in self.keys:
            if self.r.set(key, self.token, nx=True, px=self.ttl_ms):
                self.slot = key
                return True
        return False

    def renew(self) -> bool:
        if self.slot is None:
            return False
        if int(self._renew(keys=[self.slot], args=[self.token, self.ttl_ms])):
            return True
        self.slot = None
        return False

    def release(self) -> None:
        if self.slot is not None:
            self._release(keys=[self.slot], args=[self.token])
            self.slot = None

    def holders(self) -> dict[str, str | None]:
        return {k: self.r.get(k) for k in self.keys}
