"""A test hook that stalls a writer on purpose, the way a loaded host does.

``GONETS_TEST_STALL="<probability>:<milliseconds>"`` (e.g. ``"0.2:60"``) makes each writer
sleep that long, that often, right before its last pacing check: the SMPP session thread
before it writes a paced submit, an HTTP request before its headers are written.  The pacing
tests and ``make bench`` set it in worker processes to prove the cap holds while sends are
delayed; unset (always, in production) it does nothing.
"""

from __future__ import annotations

import os
import random
import time


def _parse(value: str) -> tuple[float, float]:
    try:
        p, ms = value.split(":", 1)
        return min(max(float(p), 0.0), 1.0), max(float(ms), 0.0) / 1000.0
    except ValueError:
        return 0.0, 0.0


_P, _S = _parse(os.environ.get("GONETS_TEST_STALL", ""))


def stall() -> None:
    """Sleep as the hook says (nothing when it is unset)."""
    if _P and random.random() < _P:
        time.sleep(_S)
