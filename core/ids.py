"""Random (version 4) UUIDs as text, for ids made once per message.

``uuid.uuid4().hex`` builds a ``UUID`` object (an int, its checks) just to print it, and asks
the kernel for 16 bytes each time: a message takes three (its id, its dramatiq message id and
redis message id), and on a loaded host those system calls were a sixth of ``send_many``'s
time. These take the same ``os.urandom`` bytes 4 KiB at a time (a child process after
``fork`` starts afresh: it never reuses its parent's bytes) and set the same version and
variant bits, so the text is what ``uuid.uuid4()`` prints (``tests/test_ids.py``).
"""

from __future__ import annotations

import os
import threading

_POOL_BYTES = 4096

_lock = threading.Lock()
_pool = b""
_at = 0


def _forget() -> None:
    """In a forked child: the parent's unread bytes are the parent's own ids to come."""
    global _pool, _at, _lock
    _pool, _at, _lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_forget)


def _random16() -> bytearray:
    global _pool, _at
    with _lock:
        if _at >= len(_pool):
            _pool, _at = os.urandom(_POOL_BYTES), 0
        b = bytearray(_pool[_at:_at + 16])
        _at += 16
    return b


def uuid4_hex() -> str:
    """``uuid.uuid4().hex``: 32 lowercase hex digits."""
    b = _random16()
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return b.hex()


def uuid4_str() -> str:
    """``str(uuid.uuid4())``: 8-4-4-4-12 hex digits."""
    h = uuid4_hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
