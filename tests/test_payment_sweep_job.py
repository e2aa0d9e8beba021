"""The pending-payments sweep, run by a real dramatiq worker on Redis, returns nothing for
dramatiq to discard: no "Results middleware" warning every five minutes."""

from __future__ import annotations

import logging
import threading
from typing import Any

from dramatiq import Middleware, Worker

from core.broker import build_broker, enqueue
from core.payments import PAYMENTS_SWEEP_QUEUE, SWEEP_PENDING_PAYMENTS


class Done(Middleware):
    """dramatiq's own hook: which actors finished, and how."""

    def __init__(self) -> None:
        self.finished: list[tuple[str, Any, BaseException | None]] = []
        self.event = threading.Event()

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        self.finished.append((message.actor_name, result, exception))
        self.event.set()


def test_the_sweep_job_leaves_no_result_warning(settings, store, monkeypatch, caplog):
    from workers import payments, runtime

    monkeypatch.setattr(runtime, "_runtime", runtime.Runtime(settings, store))
    broker = build_broker(settings)
    done = Done()
    broker.add_middleware(done)
    payments.register(broker)
    broker.declare_queue(PAYMENTS_SWEEP_QUEUE)
    worker = Worker(broker, queues={PAYMENTS_SWEEP_QUEUE}, worker_threads=1,
                    worker_timeout=100)
    with caplog.at_level(logging.INFO):
        worker.start()
        try:
            enqueue(broker, PAYMENTS_SWEEP_QUEUE, SWEEP_PENDING_PAYMENTS)
            assert done.event.wait(30)
        finally:
            worker.stop()
            broker.close()
    assert done.finished == [(SWEEP_PENDING_PAYMENTS, None, None)]
    assert not [r for r in caplog.records if "Results middleware" in r.getMessage()]
