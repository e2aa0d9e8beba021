"""Bind leases: at most ``n`` SMPP binds per login across every process of the cluster.

SMSC takes one bind per login (``MCONn``: n), and a bind beyond that kicks an older one, so
scaling out a pool must not simply add binds.  Each bind holds one of ``n`` slots in Redis:

    <ns>:smpp:lease:<login>:<slot>   string  holder token, with a TTL of ``ttl_s``

A session takes a free slot before it binds and renews it every ``ttl_s / 3`` with a
compare-and-extend (``core.locks.Lease``, the same lease as the scheduler's leader lock); a
holder that dies stops renewing and its slot frees itself after ``ttl_s``, so a standby
process binds within about ``ttl_s`` seconds.  A session that cannot renew (Redis
unreachable, slot taken over) unbinds at once, so two binds never overlap for longer than one
renew interval even in a network partition.
"""

from __future__ import annotations

import redis

from core.keys import Keys
from core.locks import Lease


def bind_lease(r: redis.Redis, *, namespace: str, login: str, slots: int,
               ttl_s: float = 10.0) -> Lease:
    """The ``slots`` bind leases of ``login`` (its MCON), as one ``core.locks.Lease``."""
    if not 1 <= slots <= 9:
        raise ValueError("slots must be 1..9 (MCON1..MCON9)")
    keys = Keys(namespace)
    return Lease(r, [keys.smpp_lease(login, i) for i in range(1, slots + 1)], ttl_s)

