"""Each producer's message index: the messages a producer sent, oldest first.

    ns:producer:<name>:sms   zset   message id -> accepted (ms); trimmed past retention

A *producer* is who owns messages (an HTTP API token's producer): ``GET /v1/sms`` lists its
index, and only its own.  Written wherever a message is accepted for a producer: the HTTP
API's SMS routes, the Bitrix24 handler and ``gonets send --producer``: ``Producer.send_sms``
lists a new message of a producer in the script that accepts it (``entry`` below).  The one
module that names this key (``core/keys.py``).
"""

from __future__ import annotations

import random

from core.replies import scored, text_dict
from core.store import Store, now_ms

#: a single add trims the expired entries now and then (a batch always does)
TRIM_SHARE = 0.01


class ProducerIndex:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.r = store.r  # this module is the one that keeps the index key

    def key(self, producer: str) -> str:
        return self.store.keys.producer_sms(producer)

    def add(self, producer: str, ids: list[str]) -> None:
        """List ``ids`` in ``producer``'s index (an id listed already keeps its place)."""
        if not ids:
            return
        key = self.key(producer)
        now = now_ms()
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(key, dict.fromkeys(ids, now), nx=True)
        if len(ids) > 1 or random.random() < TRIM_SHARE:
            pipe.zremrangebyscore(key, "-inf", now - self.store.retention_s * 1000)
        pipe.execute()

    def entry(self, producer: str) -> tuple[str, int, int | None]:
        """Where a new message of ``producer`` goes, for ``core/lua/submit.lua`` (which lists
        it in the same step that accepts it): (key, score now, trim entries older than this
        score, now and then, else None)."""
        now = now_ms()
        trim = now - self.store.retention_s * 1000 if random.random() < TRIM_SHARE else None
        return self.key(producer), now, trim

    def size(self, producer: str) -> int:
        return int(self.r.zcard(self.key(producer)))

    def count_before(self, producer: str, at_ms: float, *, inclusive: bool = True) -> int:
        """How many entries were accepted before ``at_ms`` (at or before, when inclusive)."""
        bound: float | str = at_ms if inclusive else f"({at_ms}"
        return int(self.r.zcount(self.key(producer), "-inf", bound))

    def position(self, producer: str, msg_id: str) -> int | None:
        rank = self.r.zrank(self.key(producer), msg_id)
        return rank if isinstance(rank, int) else None

    def page(self, producer: str, start: int, n: int) -> list[tuple[str, float]]:
        """Up to ``n`` entries from position ``start``: (id, accepted ms)."""
        return scored(self.r.zrange(self.key(producer), start, start + n - 1, withscores=True))

    def records(self, ids: list[str]) -> list[dict[str, str]]:
        """The records of ``ids`` in one round trip ({} for one expired after retention)."""
        pipe = self.r.pipeline(transaction=False)
        for msg_id in ids:
            pipe.hgetall(self.store.msg_key(msg_id))
        return [text_dict(raw) for raw in pipe.execute()]
