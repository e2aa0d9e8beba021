"""What each account sent, per day and per kind, so transactional and promotional SMS are
billed and reported apart (MTS Belarus charges them separately).

Counted by the worker when a message is accepted by the provider (``submitted``); read by
``gonets usage``.  Key layout (``ns`` is ``Settings.namespace``, the day is UTC):

    ns:usage:<account>:<YYYY-MM-DD>   hash  "<kind>:messages" -> n, "<kind>:parts" -> n
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

from core.replies import text_dict
from core.store import Store

#: how long a day's counters are kept
KEEP_S = 400 * 24 * 3600


#: the UTC day last named by ``_day``: its first second, the next day's, its name (a send asks
#: for it every time; formatting a date is most of what counting a send cost in Python)
_last_day: tuple[float, float, str] = (0.0, 0.0, "")


def _day(at_s: float | None = None) -> str:
    """The UTC date of ``at_s`` (default: now), ``YYYY-MM-DD``."""
    global _last_day
    t = time.time() if at_s is None else at_s
    start, end, name = _last_day
    if start <= t < end:
        return name
    name = datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d")
    start = t - t % 86400  # a UTC day is 86,400 s of Unix time (no leap seconds in it)
    _last_day = (start, start + 86400, name)
    return name


def today_key(store: Store, account: str) -> str:
    """The hash that counts today's messages of ``account`` (``Store.mark_submitted`` counts a
    send there in the script of its ``submitted`` transition, as ``count`` does)."""
    return store.keys.usage(account, _day())


def count(store: Store, account: str, kind: str, parts: int) -> None:
    """One accepted message of ``kind`` with ``parts`` SMS parts (one pipelined round trip)."""
    key = today_key(store, account)
    pipe = store.r.pipeline(transaction=False)
    pipe.hincrby(key, f"{kind}:messages", 1)
    pipe.hincrby(key, f"{kind}:parts", max(1, parts))
    pipe.expire(key, KEEP_S)
    pipe.execute()


def report(store: Store, account: str, days: int = 1,
           today: date | None = None) -> dict[str, dict[str, dict[str, int]]]:
    """``{day: {kind: {"messages": n, "parts": n}}}`` for the last ``days`` days (UTC)."""
    end = today or datetime.now(UTC).date()
    out: dict[str, dict[str, dict[str, int]]] = {}
    for i in range(days - 1, -1, -1):
        day = (end - timedelta(days=i)).isoformat()
        per_kind: dict[str, dict[str, int]] = {}
        usage = text_dict(store.r.hgetall(store.keys.usage(account, day)))
        for field, value in usage.items():
            kind, _, what = field.partition(":")
            per_kind.setdefault(kind, {"messages": 0, "parts": 0})[what] = int(value)
        out[day] = per_kind
    return out
