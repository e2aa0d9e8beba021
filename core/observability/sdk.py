"""Where tracing reaches into sentry-sdk's internals to cost less per job (pinned:
``sentry-sdk==2.75.0`` in pyproject.toml; ``tests/test_sentry_sdk_internals.py`` fails if any
of them moves or behaves otherwise).

* ``sentry_sdk.client.serialize``: sentry-sdk passes every event through its serializer
  (``sentry_sdk.serializer.serialize``) before ``before_send_transaction``: a walk of every node
  that trims "databags", turns datetimes and odd objects into strings and notes what it trimmed
  under ``_meta``.  Per node it keeps a path, a memo and a meta stack, and a job's transaction
  (a few dozen nodes) cost it about half a millisecond: most of what tracing added to a job's
  own thread.  ``serialize`` here takes a transaction made only of plain values (``dict``
  with ``str`` keys, ``list``/``tuple``, ``str``, ``int``, ``bool``, finite ``float``,
  ``None``, ``datetime``) and with nothing the serializer would trim (no ``extra``,
  breadcrumbs or request body, no string length limit, no repr processors) and gives what
  sentry-sdk's would (the same dict, datetimes as its ``format_timestamp`` writes them: a
  tenth of a job's nodes, and the most costly ones) in one plain copy;
  anything else goes to sentry-sdk's serializer unchanged.
* ``DramatiqMessageExtractor.extract_into_event``: sentry-sdk's dramatiq integration attaches
  the message to each event as the ``dramatiq`` context, measuring its JSON first (with
  ``max_request_body_size="never"`` only to note that it left it out).  On a transaction it is
  left off: the job's actor, queue and message id are its name, tags and trace data.  Errors
  keep it.
* ``uuid`` in ``sentry_sdk.tracing``, ``sentry_sdk.tracing_utils`` and ``sentry_sdk.client``:
  sentry-sdk makes each trace, span and event id with ``uuid.uuid4()``, which reads
  ``os.urandom``: a ``getrandom`` system call that lets go of the GIL while it runs.  A job
  makes about nine ids; with eight job threads and the sending thread waiting for the GIL,
  each let-go hands it to another thread and the id's thread waits for its turn back (a
  profile of jobs traced beside the sending thread: a fifth of their wall time in
  ``urandom``, 45 µs a call against 0.5 µs alone).  ``_ids`` makes the same version-4
  UUIDs from ``random.getrandbits`` (Python's Mersenne Twister, seeded from ``os.urandom``
  and reseeded in every forked child), as OpenTelemetry's ``RandomIdGenerator`` makes its
  trace and span ids: ids must be unique, not secret.
"""

from __future__ import annotations

import random
import types
import uuid
from datetime import UTC, datetime
from typing import Any

#: deeper than any event sentry-sdk builds: a cycle (which its serializer marks) falls back
_MAX_DEPTH = 40


class _NotPlain(Exception):
    """A value the plain copy does not handle: sentry-sdk's serializer takes the event."""


def _copy(v: Any, depth: int, fmt: Any) -> Any:
    t = type(v)
    if t is str or t is int or t is bool or v is None:
        return v
    if t is dict:
        if depth > _MAX_DEPTH:
            raise _NotPlain
        out = {}
        for k, x in v.items():
            if type(k) is not str:
                raise _NotPlain
            out[k] = _copy(x, depth + 1, fmt)
        return out
    if t is list or t is tuple:
        if depth > _MAX_DEPTH:
            raise _NotPlain
        return [_copy(x, depth + 1, fmt) for x in v]
    if t is float:
        if v - v != 0.0:  # inf or nan: the serializer writes its repr
            raise _NotPlain
        return v
    if t is datetime:
        if v.tzinfo is UTC and v.year >= 1000:  # sentry-sdk's spans: UTC
            return (f"{v.year}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:"
                    f"{v.second:02d}.{v.microsecond:06d}Z")
        try:
            return fmt(v)
        except Exception:  # out of range once in UTC: the serializer writes null there
            raise _NotPlain from None
    if isinstance(v, (int, float)):  # an IntEnum: as it is (a float one if finite)
        if isinstance(v, float) and v - v != 0.0:
            raise _NotPlain
        return v
    if isinstance(v, str) and not hasattr(t, "__sentry_repr__"):
        return v  # a str enum (sentry-sdk's TransactionSource): as it is, JSON writes it
    raise _NotPlain


def plain_transaction(event: dict[str, Any], options: dict[str, Any]) -> bool:
    """Whether sentry-sdk's serializer would only copy ``event`` (given its keyword options):
    a transaction with none of the parts it trims."""
    from sentry_sdk.serializer import global_repr_processors

    if event.get("type") != "transaction" or global_repr_processors:
        return False
    if options.get("max_value_length") is not None or options.get("custom_repr") is not None \
            or options.get("is_vars"):
        return False
    if event.get("extra"):
        return False
    crumbs = event.get("breadcrumbs")
    if crumbs is not None and (type(crumbs) is not dict or crumbs.get("values")):
        return False
    request = event.get("request")
    return request is None or (type(request) is dict and "data" not in request)


def serialize(event: Any, **options: Any) -> Any:
    """sentry-sdk's ``serialize`` (same signature and result), a plain copy where that is all
    it would do."""
    from sentry_sdk import serializer
    from sentry_sdk.utils import format_timestamp

    if type(event) is dict and plain_transaction(event, options):
        try:
            return _copy(event, 0, format_timestamp)
        except _NotPlain:
            pass
    return serializer.serialize(event, **options)


def _uuid4() -> uuid.UUID:
    """A version-4 UUID as ``uuid.uuid4()`` makes it, from ``random`` instead of
    ``os.urandom`` (no system call, the GIL kept)."""
    return uuid.UUID(int=random.getrandbits(128), version=4)


#: what sentry-sdk's modules call ``uuid`` (they use only ``uuid.uuid4()`` from it)
_ids = types.SimpleNamespace(uuid4=_uuid4)
#: sentry-sdk's modules whose ids ``_ids`` makes
ID_MODULES = ("sentry_sdk.tracing", "sentry_sdk.tracing_utils", "sentry_sdk.client")


def install() -> None:
    """The replacements (idempotent; tracing's ``init_sentry`` calls it)."""
    import importlib

    import sentry_sdk.client
    from sentry_sdk.integrations.dramatiq import DramatiqMessageExtractor

    sentry_sdk.client.serialize = serialize  # type: ignore[attr-defined]
    for name in ID_MODULES:
        importlib.import_module(name).uuid = _ids  # type: ignore[attr-defined]
    orig = DramatiqMessageExtractor.extract_into_event
    if getattr(orig, "_gonets", False):
        return

    def extract_into_event(self: Any, event: Any) -> None:
        if event.get("type") == "transaction":
            return
        orig(self, event)

    extract_into_event._gonets = True  # type: ignore[attr-defined]
    DramatiqMessageExtractor.extract_into_event = extract_into_event  # type: ignore[method-assign]
