"""dramatiq wiring shared by producers and workers.

Settings that keep work from being lost:
  * JSON encoding only (dramatiq's JSONEncoder; never pickle);
  * a worker's heartbeat counts as lost after ``heartbeat_timeout_s`` (default 10 s, dramatiq's
    default is 60 s), and workers run queue maintenance every ``maintenance_interval_s`` from a
    thread of their own (dramatiq runs it on a 0.1 % chance per command, which takes minutes
    on a quiet queue), so the messages of a SIGKILLed worker are back on their queue within
    about ``heartbeat_timeout_s + maintenance_interval_s`` seconds;
  * retries use dramatiq's Retries middleware; what is retried is decided by the error tree.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.encoder import JSONEncoder
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from core.keys import Keys
from core.redis_conn import connect
from core.settings import Settings

_lock = threading.Lock()
_broker: RedisBroker | None = None


class Liveness(Middleware):
    """Heartbeat and queue maintenance on a timer, in every worker process.

    dramatiq only heartbeats when a consumer talks to Redis and only brings back a dead
    worker's unacked messages on a random maintenance pass; with this thread a dead worker's
    messages are requeued within seconds and a busy worker is never mistaken for a dead one.
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        self._stop.clear()
        queues = sorted(worker.consumer_whitelist or broker.get_declared_queues())
        self._thread = threading.Thread(target=self._run, args=(broker, queues),
                                        name="gonets-liveness", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self._stop.set()

    def _run(self, broker: RedisBroker, queues: list[str]) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                maintain(broker, queues)
            except Exception:  # Redis blip: the next tick tries again
                broker.logger.warning("liveness tick failed", exc_info=True)


def maintain(broker: RedisBroker, queues: Iterable[str]) -> None:
    """Heartbeat, and requeue unacked messages of workers whose heartbeat is older than the
    timeout, on each of ``queues`` and their delay queues (dramatiq's own dispatch script)."""
    from dramatiq.common import current_millis, dq_name

    dispatch = broker.scripts["dispatch"]
    for q in queues:
        for name in (q, dq_name(q)) if not q.endswith(".DQ") else (q,):
            dispatch(keys=[broker.namespace],
                     args=["qsize", current_millis(), name, broker.broker_id,
                           broker.heartbeat_timeout, broker.dead_message_ttl, 1,
                           broker._max_unpack_size()])


def build_broker(settings: Settings, *, worker: bool = False) -> RedisBroker:
    middleware: list[Middleware] = [
        AgeLimit(),
        TimeLimit(time_limit=10 * 60 * 1000),
        ShutdownNotifications(),
        Callbacks(),
        CurrentMessage(),
        Retries(max_retries=1000, min_backoff=1000, max_backoff=10 * 60 * 1000),
    ]
    from core.observability import JobMetrics, JobTags, KeepTrace

    middleware.append(KeepTrace())
    if worker:
        middleware.append(Liveness(settings.maintenance_interval_s))
        middleware += [JobTags(), JobMetrics()]
    broker = RedisBroker(
        # no retry of a timed-out command: a fetch that ran but whose answer was lost would
        # leave its messages in this worker's ack set until the worker dies
        client=connect(settings.redis_url, decode_responses=False, retry_on_timeout=False),
        namespace=Keys(settings.namespace).broker_namespace(),
        middleware=middleware,
        heartbeat_timeout=int(settings.heartbeat_timeout_s * 1000),
    )
    return broker


def get_broker(settings: Settings, *, worker: bool = False) -> RedisBroker:
    """The process-wide broker, also installed as dramatiq's global broker."""
    global _broker
    with _lock:
        if _broker is None:
            _broker = build_broker(settings, worker=worker)
            dramatiq.set_broker(_broker)
            dramatiq.set_encoder(JSONEncoder())
        return _broker


def reset_broker() -> None:
    """Forget the process-wide broker (tests that switch Redis servers)."""
    global _broker
    with _lock:
        if _broker is not None:
            _broker.close()
        _broker = None


def enqueue(broker: dramatiq.Broker, queue_name: str, actor_name: str, *args: Any,
            delay_ms: int | None = None, **options: Any) -> dramatiq.Message[Any]:
    """Enqueue by queue and actor name (producers do not import the actors)."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue_name, actor_name=actor_name, args=tuple(args), kwargs={}, options=options)
    return broker.enqueue(message, delay=delay_ms)


@dataclass(frozen=True)
class Job:
    """A message as ``RedisBroker.enqueue`` would write it, not written yet: its queue's keys,
    its redis message id and its encoding (written by ``core/lua/submit.lua`` together with
    the record, then ``enqueued`` tells the middleware)."""

    message: dramatiq.Message[Any]
    queue_key: str
    messages_key: str
    redis_id: str
    data: bytes


def prepare(broker: RedisBroker, queue_name: str, actor_name: str, *args: Any) -> Job:
    """What ``enqueue`` writes (no delay): the same message copy, the same middleware before
    it, the same encoding; dramatiq's dispatch.lua then HSETs ``data`` under ``redis_id`` in
    ``<ns>:<queue>.msgs`` and RPUSHes ``redis_id`` onto ``<ns>:<queue>``."""
    # enqueue copies the message with this one option added to none: the same message
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue_name, actor_name=actor_name, args=tuple(args), kwargs={},
        options={"redis_message_id": str(uuid.uuid4())})
    broker.emit_before("enqueue", message, None)
    full = f"{broker.namespace}:{queue_name}"
    return Job(message, full, full + ".msgs", message.options["redis_message_id"],
               message.encode())


def enqueued(broker: RedisBroker, job: Job) -> None:
    """The middleware's after-enqueue of a prepared job once it is written."""
    broker.emit_after("enqueue", job.message, None)
