"""Stopping a role from a signal handler without deadlocking it.

A Python signal handler runs in the main thread between two bytecodes, possibly while that
thread is inside ``Event.wait()`` holding the event's internal lock (``threading.Lock`` is not
re-entrant). ``Event.set()`` called from the handler then waits for that lock for ever. The
handler hands the ``set()`` to a short-lived thread instead, which takes the lock as soon as
the main thread lets it go.
"""

from __future__ import annotations

import threading


def set_from_handler(*events: threading.Event) -> None:
    """Set ``events`` on behalf of a signal handler (never blocks the handler)."""

    def _set() -> None:
        for e in events:
            e.set()

    threading.Thread(target=_set, name="gonets-signal", daemon=True).start()
