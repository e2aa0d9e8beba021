"""Owner-checked locks and leases in Redis: "delete (or extend) it only if I still hold it",
done one way, atomically, everywhere.

A lock or lease is a string key holding its holder's token (``new_token()``: host, pid and
random), written with ``SET NX PX``.  Only the holder may extend or delete it, and the check
and the change are one Lua step (``lua/renew.lua``, ``lua/release.lua``), so a holder whose key
expired and was taken by another never deletes the other's.  The scripts are ``.lua`` files
with a key-layout header, registered once per Redis client (``locks_for(client)``).

* ``Locks.take / renew / release``: a lock (callback deliverer, payment in flight) or a claim
  whose value is its owner (duplicate and idempotency keys: the message id is the token).
* ``Locks.wait_take``: take a lock, waiting for the holder up to a limit (OAuth refresh).
* ``Lease``: hold one of ``n`` slots and keep it by renewing (``lua/lease.lua``): the SMPP bind
  leases (``n`` = the login's MCON) and the scheduler's leader lock (``n`` = 1).  A holder
  that dies stops renewing and its slot frees itself after the ttl.

Which keys are locks: ``core/keys.py``.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
import weakref
from collections.abc import Sequence
from importlib import resources

import redis


def _lua(name: str) -> str:
    return resources.files("core").joinpath("lua", name).read_text(encoding="utf-8")


_RELEASE = _lua("release.lua")
_RENEW = _lua("renew.lua")
_LEASE = _lua("lease.lua")


def new_token() -> str:
    """A holder token no other process or call shares."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _ms(ttl_s: float) -> int:
    return max(int(ttl_s * 1000), 1)


class Locks:
    """The lock operations on one Redis client (scripts registered once: use ``locks_for``)."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self._release = r.register_script(_RELEASE)
        self._renew = r.register_script(_RENEW)
        self._lease = r.register_script(_LEASE)

    def take(self, key: str, token: str, ttl_s: float | None) -> bool:
        """Hold ``key`` if nobody does (``ttl_s`` None: until released)."""
        px = _ms(ttl_s) if ttl_s is not None else None
        return bool(self.r.set(key, token, nx=True, px=px))

    def wait_take(self, key: str, token: str, ttl_s: float, wait_s: float) -> bool:
        """``take``, waiting up to ``wait_s`` for the holder to let go (or its ttl to end)."""
        deadline = time.monotonic() + wait_s
        pause = 0.01
        while not self.take(key, token, ttl_s):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.2)
        return True

    def renew(self, key: str, token: str, ttl_s: float) -> bool:
        """Extend ``key`` by ``ttl_s`` if ``token`` still holds it."""
        return bool(self._renew(keys=[key], args=[token, _ms(ttl_s)]))

    def release(self, key: str, token: str) -> bool:
        """Delete ``key`` if ``token`` still holds it; False (nothing changed) otherwise."""
        return bool(self._release(keys=[key], args=[token]))

    def holder(self, key: str) -> str | None:
        v = self.r.get(key)
        return v.decode() if isinstance(v, bytes) else v

    def hold_slot(self, keys: Sequence[str], token: str, ttl_s: float) -> int:
        """Keep the slot ``token`` holds, or take a free one: its index, or -1 (all taken)."""
        return int(self._lease(keys=list(keys), args=[token, _ms(ttl_s)])) - 1


_by_client: weakref.WeakKeyDictionary[redis.Redis, Locks] = weakref.WeakKeyDictionary()


def locks_for(r: redis.Redis) -> Locks:
    """The ``Locks`` of client ``r`` (its scripts registered the first time)."""
    got = _by_client.get(r)
    if got is None:
        got = _by_client[r] = Locks(r)
    return got


class Lease:
    """One of ``len(keys)`` slots, held by this process while it renews every ``ttl_s / 3``."""

    def __init__(self, r: redis.Redis, keys: Sequence[str], ttl_s: float,
                 token: str | None = None) -> None:
        if not keys:
            raise ValueError("a lease needs at least one slot")
        self.r = r
        self.locks = locks_for(r)
        self.keys = list(keys)
        self.ttl_s = ttl_s
        self.ttl_ms = _ms(ttl_s)
        self.token = token or new_token()
        #: the slot held (its key), None while none is
        self.slot: str | None = None

    @property
    def renew_every_s(self) -> float:
        return self.ttl_ms / 3000.0

    @property
    def held(self) -> bool:
        return self.slot is not None

    def acquire(self) -> bool:
        """Keep the slot held (renewed) or take a free one. True while this process holds one."""
        i = self.locks.hold_slot(self.keys, self.token, self.ttl_s)
        self.slot = self.keys[i] if i >= 0 else None
        return self.slot is not None

    def renew(self) -> bool:
        """Extend the slot held; False (and no slot held) when it was lost meanwhile."""
        if self.slot is None:
            return False
        if self.locks.renew(self.slot, self.token, self.ttl_s):
            return True
        self.slot = None
        return False

    def release(self) -> bool:
        """Give the slot back (only if still ours)."""
        slot, self.slot = self.slot, None
        return slot is not None and self.locks.release(slot, self.token)

    def holders(self) -> dict[str, str | None]:
        return {k: self.locks.holder(k) for k in self.keys}
