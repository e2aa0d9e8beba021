"""Redis replies as the ``str`` they are.

redis-py types every reply as ``bytes | str`` whatever the client's ``decode_responses``. Our
clients decode (``core.store.redis_client``), so replies are ``str``; these helpers narrow a reply
where it enters our code, and decode UTF-8 should a raw (non-decoding) client ever be passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from redis.typing import EncodableT, FieldT

#: what ``hset(mapping=...)`` takes (its key type is invariant: annotate a dict with this)
HashFields = dict[FieldT, EncodableT]


def text(value: object) -> str:
    """One string reply. redis-py's reply unions also hold the shapes of other call forms
    (``lpop`` with a count, ``zrange`` with scores): those are a caller's mistake here and raise
    ``TypeError``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    raise TypeError(f"expected a string reply, got {type(value).__name__}")


def maybe_text(value: object) -> str | None:
    """A string reply or ``None`` (a missing key or field)."""
    return None if value is None else text(value)


def text_dict(value: Mapping[bytes | str, bytes | str] | None) -> dict[str, str]:
    """An ``hgetall``/stream-entry reply; ``None`` (a missing stream entry) reads as empty."""
    if not value:
        return {}
    return {text(k): text(v) for k, v in value.items()}


def text_list(values: Iterable[object]) -> list[str]:
    """A list reply of strings (``zrange`` without scores, ``lrange``, ``smembers`` ...)."""
    return [text(v) for v in values]


def scored(values: Iterable[object]) -> list[tuple[str, float]]:
    """A ``zrange(..., withscores=True)`` reply: ``(member, score)`` pairs."""
    out: list[tuple[str, float]] = []
    for v in values:
        if not (isinstance(v, (tuple, list)) and len(v) == 2 and isinstance(v[1], (int, float))):
            raise TypeError(f"expected a (member, score) pair, got {v!r}")
        out.append((text(v[0]), float(v[1])))
    return out


def stream_entries(entries: Iterable[Sequence[object]] | None) -> list[tuple[str, dict[str, str]]]:
    """An ``xrange``/``xreadgroup``/``xautoclaim`` list of ``(id, fields)`` entries; the fields
    of an entry deleted meanwhile come back ``None`` and read as empty."""
    out: list[tuple[str, dict[str, str]]] = []
    for entry in entries or ():
        eid, fields = entry[0], entry[1]
        out.append((text(eid), text_dict(fields if isinstance(fields, Mapping) else None)))
    return out
