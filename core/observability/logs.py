"""Structured logs: one JSON object per line (``ts``, ``level``, ``logger``, ``msg``, and
``account``, ``msg_id``, ``alert``, ``job`` when known; phone numbers masked, secrets in URLs
dropped), plain text in a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from core.observability.scrub import _scrub_str, _state, scrub

_STD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; phone numbers masked; record extras kept (scrubbed)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC)
                          .isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _scrub_str(record.getMessage()),
        }
        if _state["role"]:
            out["role"] = _state["role"]
        _job_context(out)
        for k, v in record.__dict__.items():
            if k in _STD or k.startswith("_"):
                continue
            out["alert" if k == "gonets_alert" else k] = scrub(v, k)
        if record.exc_info:
            out["exc"] = _scrub_str(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


def _job_context(out: dict[str, Any]) -> None:
    """Inside an actor: the job, its account (from the queue name) and message id."""
    try:
        from dramatiq.middleware import CurrentMessage

        m = CurrentMessage.get_current_message()
    except Exception:
        return
    if m is not None:
        _message_context(m, out)


#: actors whose first argument is a message id
MESSAGE_ACTORS = frozenset({"send_sms", "send_sms_urgent", "poll_status"})


def _message_context(m: Any, out: dict[str, Any]) -> None:
    out["job"] = m.actor_name
    q = m.queue_name.split(".")
    if q[0] in ("sms", "payments") and len(q) >= 3:
        out["account"] = q[1]
    if m.actor_name in MESSAGE_ACTORS and m.args:
        out["msg_id"] = str(m.args[0])


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return _scrub_str(super().format(record))


def setup_logging(fmt: str = "auto", level: str = "INFO") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_gonets", False):
            root.removeHandler(h)
    handler._gonets = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # one line per HTTP request or per job fire drowns what matters
    for noisy in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

