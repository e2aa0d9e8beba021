"""JSON renderers shared by the route modules (errors render in ``problem.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(ms: int | str | None) -> str:
    """Milliseconds since the epoch as an ISO 8601 UTC time (``2026-11-22T10:00:00.000Z``)."""
    value = int(ms or 0)
    return datetime.fromtimestamp(value / 1000, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def event_out(ev: dict[str, Any]) -> dict[str, Any]:
    """One status event of a record's history (messages and payments alike)."""
    out: dict[str, Any] = {"status": ev["status"], "at": iso(ev.get("at_ms"))}
    for k in ("reason", "provider_status", "error_code", "account"):
        if ev.get(k):
            out[k] = str(ev[k])
    return out
