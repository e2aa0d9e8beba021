"""Random (version 4) UUIDs as text, for ids made once per message.

``uuid.uuid4().hex`` builds a ``UUID`` object (an int, its checks) just to print it, and asks
the kernel for 16 bytes each time: a message takes three (its id, its dramatiq message id and
redis message id), and on a loaded host those system calls were a sixth of ``send_many``'s
time. These take the same ``os.urandom`` bytes 4 KiB at a time, each thread its own (no lock
per id; a child process after ``fork`` starts afresh: it never reuses its parent's bytes) and
set the same version and variant bits, so the text is what ``uuid.uuid4()`` prints
(``tests/test_ids.py``).
"""

from __future__ import annotations

import os
import threading

_POOL_BYTES = 4096

#: each thread's random hex digits: (the digits, how many it used); a thread draws its own, so
#: no lock is taken per id
_local = threading.local()


def _forget() -> None:
    """In a forked child: the parent's unread bytes are the parent's own ids to come."""
    global _local
    _local = threading.local()


os.register_at_fork(after_in_child=_forget)

#: the variant digit (the top bits of byte 8 set to 10, RFC 4122) for each random hex digit
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


def _hex32() -> str:
    """32 random hex digits (16 bytes of ``os.urandom``)."""
    local = _local
    pool: str = getattr(local, "pool", "")
    at: int = getattr(local, "at", 0)
    if at >= len(pool):
        pool, at = os.urandom(_POOL_BYTES).hex(), 0
        local.pool = pool
    local.at = at + 32
    return pool[at:at + 32]


def uuid4_hex() -> str:
    """``uuid.uuid4().hex``: 32 lowercase hex digits (version 4, the RFC 4122 variant)."""
    h = _hex32()
    return f"{h[:12]}4{h[13:16]}{_VARIANT[h[16]]}{h[17:]}"


def uuid4_str() -> str:
    """``str(uuid.uuid4())``: 8-4-4-4-12 hex digits."""
    h = _hex32()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
