"""The broker's middleware signals call only the hooks that do something (core/broker.py
``GonetsRedisBroker.emit_before``/``emit_after``), with dramatiq's own semantics: the same
hooks in the same order, a failing hook logged and the rest still called, a
``MiddlewareError`` (``SkipMessage``) from a before-hook raised, middleware added later
called too.  Checked against dramatiq's ``Broker.emit_*`` on the same broker."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import pytest
from dramatiq.middleware import Middleware, SkipMessage

from core.broker import build_broker
from core.settings import Settings


class Recorder(Middleware):
    def __init__(self, name: str, calls: list[str], *, fail: str = "") -> None:
        self.name, self.calls, self.fail = name, calls, fail

    def _hit(self, hook: str) -> None:
        self.calls.append(f"{self.name}.{hook}")
        if hook == self.fail:
            raise RuntimeError(f"{self.name} fails in {hook}")

    def before_process_message(self, broker: Any, message: Any) -> None:
        self._hit("before_process_message")

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        self._hit("after_process_message")

    def after_ack(self, broker: Any, message: Any) -> None:
        self._hit("after_ack")


class Skipper(Middleware):
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def before_process_message(self, broker: Any, message: Any) -> None:
        self.calls.append("skipper.before_process_message")
        raise SkipMessage()


def _run(broker: Any, emit_before: Any, emit_after: Any, calls: list[str]) -> list[str]:
    calls.clear()
    message = dramatiq.Message(queue_name="q", actor_name="a", args=(), kwargs={}, options={})
    for signal in ("process_message", "ack", "enqueue"):
        try:
            emit_before(broker, signal, message)
        except SkipMessage:
            calls.append(f"raised SkipMessage in before_{signal}")
        emit_after(broker, signal, message)
    return list(calls)


def test_signals_call_the_same_hooks_as_dramatiq(settings: Settings,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    broker = build_broker(settings)
    calls: list[str] = []
    try:
        broker.add_middleware(Recorder("a", calls, fail="after_process_message"))
        broker.add_middleware(Recorder("b", calls))
        ours = type(broker)
        mine = _run(broker, ours.emit_before, ours.emit_after, calls)
        theirs = _run(broker, dramatiq.Broker.emit_before, dramatiq.Broker.emit_after, calls)
        assert mine == theirs
        # a hook that fails is logged and the next one still runs (after-hooks: reversed)
        assert mine[:4] == ["a.before_process_message", "b.before_process_message",
                            "b.after_process_message", "a.after_process_message"]
        assert any("Unexpected failure in after_process_message" in r.getMessage()
                   and r.levelno == logging.CRITICAL for r in caplog.records)
        # middleware added later is called, and a MiddlewareError of a before-hook is raised
        broker.add_middleware(Skipper(calls))
        mine = _run(broker, ours.emit_before, ours.emit_after, calls)
        assert mine == _run(broker, dramatiq.Broker.emit_before, dramatiq.Broker.emit_after,
                            calls)
        assert "skipper.before_process_message" in mine
        assert "raised SkipMessage in before_process_message" in mine
    finally:
        broker.close()
