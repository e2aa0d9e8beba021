"""dramatiq wiring shared by producers and workers.

Settings that keep work from being lost:
  * JSON encoding only (dramatiq's JSONEncoder; never pickle);
  * a worker's heartbeat counts as lost after ``heartbeat_timeout_s`` (default 10 s, dramatiq's
    default is 60 s), and workers run queue maintenance every ``maintenance_interval_s`` from a
    thread of their own (dramatiq runs it on a 0.1 % chance per command, which takes minutes
    on a quiet queue), so the messages of a SIGKILLed worker are back on their queue within
    about ``heartbeat_timeout_s + maintenance_interval_s`` seconds;
  * retries use dramatiq's Retries middleware; what is retried is decided by the error tree;
  * a Redis outage loses no job (issue 20): a job that fails because Redis does not answer is
    not handed to Retries (it could not enqueue the retry while Redis is down, and the job
    would then be acked: gone) but put back on its queue un-acked once Redis answers
    (``RedisRetries`` marks it, ``GonetsRedisBroker``'s consumer requeues instead of acking).
    The consumer threads that survive outages are ``workers/consumers.py``;
  * consumers wait for a doorbell (``core/doorbell.py``) instead of polling Redis, and the
    heartbeat is one ZADD per process per interval: an idle pool writes nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
import orjson
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.encoder import JSONEncoder
from dramatiq.errors import BrokerConnectionError, ConnectionClosed
from dramatiq.message import Message
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    MiddlewareError,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from core.doorbell import Doorbell, QuietBroker, QuietConsumer, channel
from core.ids import uuid4_str
from core.keys import Keys
from core.redis_conn import connect
from core.settings import Settings
from core.store import lua_text

_lock = threading.Lock()
_broker: RedisBroker | None = None
log = logging.getLogger("gonets.broker")

#: what Redis raises while it is down, restarting (LOADING), failing over (READONLY) or cut off
REDIS_UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError, redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError, BrokerConnectionError)


def redis_unavailable(exc: BaseException | None) -> bool:
    """``exc``, or what it was raised from (``raise ... from``), says Redis could not be
    reached."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, REDIS_UNAVAILABLE):
            return True
        exc = exc.__cause__
        seen += 1
    return False


def mark_for_requeue(message: Any) -> None:
    """Have the consumer put ``message`` back on its queue instead of acking it."""
    message.gonets_requeue = True  # an attribute of the MessageProxy: never encoded


class RedisRetries(Retries):
    """dramatiq's Retries, except for failures that come from Redis itself.

    Retries records a retry by enqueueing the job again; while Redis is down that raises
    inside the middleware (dramatiq logs "Unexpected failure in after_process_message") and
    the worker then acks the original when Redis is back: the job is gone and its record
    stranded.  A job whose failure is Redis's (or whose retry cannot be enqueued) is instead
    left un-acked and put back on its queue as soon as Redis answers; it does not count as
    a retry.  Every Gonets job is idempotent by record id, so running it again is safe.
    """

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        if exception is None:
            return
        # a Retry is the job's own decision (its delay is kept); anything else caused by
        # Redis goes back on the queue
        if not isinstance(exception, dramatiq.Retry) and redis_unavailable(exception):
            log.warning("job %s (%s): Redis unavailable (%s); it goes back on its queue once "
                        "Redis answers", message.message_id, message.actor_name,
                        type(exception).__name__)
            mark_for_requeue(message)
            return
        try:
            super().after_process_message(broker, message, result=result, exception=exception)  # type: ignore[no-untyped-call]
        except Exception as exc:  # the retry could not be enqueued: keep the original instead
            log.warning("job %s (%s): its retry could not be enqueued (%s); the job goes back "
                        "on its queue instead", message.message_id, message.actor_name,
                        type(exc).__name__)
            mark_for_requeue(message)


#: a consumer that fetched since it last looked at its ack set looks again after this long (s):
#: jobs a fetch moved there whose answer was lost go back on the queue
#: (``lua/requeue_unheld.lua``); a consumer that has not fetched since never looks
ACKS_CHECK_S = 10.0


def _rid(message: Any) -> str:
    """A job's id in Redis (dramatiq's ``redis_message_id``; "" before it was enqueued)."""
    options: dict[str, Any] = message.options
    return str(options.get("redis_message_id") or "")


class _Consumer(QuietConsumer):
    """dramatiq's Redis consumer; a job marked by ``mark_for_requeue`` is put back on its queue
    (``lua/requeue_jobs.lua``) instead of being acked, and every requeue goes through that
    script, which also writes back a job whose body a Redis restart lost.

    It keeps the ids of the jobs its process holds from the queue (``held``: handed to a
    thread, not yet acked, nacked or put back; shared by the consumers a queue has had in this
    process: after an error dramatiq starts a new one while the old one's jobs still run), so
    that a fetch whose answer was lost cannot strand its jobs in this worker's ack set:
    ``requeue_unheld`` puts back whatever is there and not held, before the first fetch of a
    consumer (the first after an error too) and then every ``ACKS_CHECK_S`` while it fetches."""

    def __init__(self, broker: GonetsRedisBroker, queue_name: str, prefetch: int,
                 timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.held = broker.held_jobs(queue_name)
        ns = broker.namespace
        #: the queue's keys in dramatiq's layout, as both requeue scripts take them: this
        #: worker's ack set, the queue, the job bodies
        self.job_keys = [f"{ns}:__acks__.{broker.broker_id}.{queue_name}", f"{ns}:{queue_name}",
                         f"{ns}:{queue_name}.msgs"]
        self.fetches_checked = -1  # its first fetch looks first
        self.next_acks_check = 0.0

    def __next__(self) -> Any:
        message = super().__next__()
        if message is not None:
            rid = _rid(message)
            if rid:
                self.held.add(rid)
        return message

    def _fetch(self) -> list[bytes]:
        if self.fetches != self.fetches_checked and time.monotonic() >= self.next_acks_check:
            self.requeue_unheld()
        return super()._fetch()

    def requeue_unheld(self) -> int:
        """Put back on the queue the jobs in this worker's ack set that it does not hold (a
        fetch moved them there, and its answer was lost). Returns how many went back."""
        fetches = self.fetches
        held = self.held.copy()  # one C call: atomic against the threads' acks
        for data in self.message_cache:  # fetched, not handed on yet (empty before a fetch)
            if data is not None:
                held.add(_rid(Message.decode(data)))
        b = self.broker
        back, gone = b.unheld_script(keys=self.job_keys, args=list(held))
        self.fetches_checked = fetches
        self.next_acks_check = time.monotonic() + ACKS_CHECK_S
        if back or gone:
            log.warning("queue %s: %d fetched job(s) no thread held (the fetch's answer was "
                        "lost) put back on the queue; %d without a body dropped",
                        self.queue_name, back, gone)
        if back:
            self.bell.set()  # this consumer fetches them at once; the others hear the bell
            with contextlib.suppress(redis.exceptions.RedisError):
                b.announce(self.queue_name)
        return int(back)

    def ack(self, message: Any) -> None:
        if getattr(message, "gonets_requeue", False):
            self.put_back([message])
            self.queued_message_ids.discard(message.message_id)
            self.freed.set()
            return
        if getattr(message, "gonets_acked", False):  # a script of the job acked it already
            self.queued_message_ids.discard(message.message_id)
            self.held.discard(_rid(message))
            self.freed.set()
            return
        super().ack(message)
        self.held.discard(_rid(message))  # (after Redis took the ack: see requeue_unheld)

    def nack(self, message: Any) -> None:
        super().nack(message)
        self.held.discard(_rid(message))

    def requeue(self, messages: Iterable[Any]) -> None:
        self.put_back(list(messages))

    def put_back(self, messages: Sequence[Any]) -> tuple[int, int]:
        """Put ``messages`` (held by this worker, not acked) back on this consumer's queue.
        Raises ``ConnectionClosed`` (a ``BrokerConnectionError``, which dramatiq's worker
        retries) while Redis does not answer."""
        if not messages:
            return (0, 0)
        b = self.broker
        inners = [getattr(m, "_message", m) for m in messages]
        args: list[Any] = []
        for inner in inners:
            args += [inner.options["redis_message_id"], inner.encode()]
        try:
            back, restored = b.requeue_script(keys=self.job_keys, args=args)
        except redis.exceptions.RedisError as exc:
            raise ConnectionClosed(exc) from exc
        for inner in inners:
            self.held.discard(_rid(inner))
        if restored:
            log.warning("queue %s: %d job(s) Redis had lost were written back from this "
                        "worker's copy", self.queue_name, restored)
        if back:  # the pool's other processes may take them now (core/doorbell.py)
            with contextlib.suppress(redis.exceptions.RedisError):
                b.announce(self.queue_name)
        return int(back), int(restored)


@dataclass(frozen=True)
class JobAck:
    """How a script acks a job as dispatch.lua's "ack" does: SREM ``redis_id`` from this
    worker's ack set of the job's queue, and if it was there, HDEL its body."""

    acks_key: str
    messages_key: str
    redis_id: str
    message: Any

    def done(self) -> None:
        """The script acked it: the consumer does not ack it again (``_Consumer.ack``)."""
        self.message.gonets_acked = True  # an attribute of the MessageProxy: never encoded


def running_job_ack(broker: Any, actor_names: Iterable[str], first_arg: str) -> JobAck | None:
    """The ack of the job this worker thread is running (dramatiq's ``CurrentMessage``), when
    it is a job of one of ``actor_names`` for ``first_arg`` on a ``GonetsRedisBroker`` (a job's
    last write can ack it in the same round trip: ``Store.mark_submitted``); else None."""
    message = CurrentMessage.get_current_message()
    if message is None or not isinstance(broker, GonetsRedisBroker) or \
            message.actor_name not in actor_names or not message.args or \
            message.args[0] != first_arg or "redis_message_id" not in message.options:
        return None
    # the ack set of the consumer that fetched it: worker threads hand a job back to the
    # consumer of its queue (dramatiq's WorkerThread.process_message)
    queue = f"{broker.namespace}:{message.queue_name}"
    return JobAck(f"{broker.namespace}:__acks__.{broker.broker_id}.{message.queue_name}",
                  queue + ".msgs", message.options["redis_message_id"], message)


class GonetsRedisBroker(QuietBroker):
    """dramatiq's RedisBroker with the consumer above (jobs are requeued, never dropped,
    when Redis fails under them)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.requeue_script = self.client.register_script(lua_text("requeue_jobs.lua"))
        self.unheld_script = self.client.register_script(lua_text("requeue_unheld.lua"))
        self._held: dict[str, set[str]] = {}

    def held_jobs(self, queue_name: str) -> set[str]:
        """The redis ids of the jobs this process holds from ``queue_name`` (``_Consumer``)."""
        return self._held.setdefault(queue_name, set())

    @property
    def consumer_class(self) -> type[_Consumer]:
        return _Consumer

    # dramatiq's emit_before and emit_after, calling only the hooks that do something: a
    # job passes ~10 signals through ~12 middleware, most of them Middleware's empty methods
    # (a worker thread's Python time is what other threads wait on for the GIL)
    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        name = "before_" + signal
        for hook in _hooks(self, name):
            try:
                hook(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", name,
                                     getattr(hook, "__self__", hook), exc_info=True)

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        name = "after_" + signal
        for hook in reversed(_hooks(self, name)):
            try:
                hook(self, *args, **kwargs)
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", name,
                                     getattr(hook, "__self__", hook), exc_info=True)


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
        while True:  # the first tick at boot: its full maintenance pass is done at once
            try:
                maintain(broker, queues)
            except Exception:  # Redis blip: the next tick tries again
                broker.logger.warning("liveness tick failed", exc_info=True)
            if self._stop.wait(self.interval_s):
                return


#: dramatiq's maintenance also drops dead letters past their ttl: run it at least this often
FULL_MAINTENANCE_S = 600.0
_last_full: dict[str, float] = {}


def maintain(broker: RedisBroker, queues: Iterable[str]) -> None:
    """Heartbeat (one ZADD), then, only when some worker's heartbeat is older than the
    timeout (or every ``FULL_MAINTENANCE_S``), requeue its unacked messages on each of
    ``queues`` (at their head: ``lua/requeue_dead.lua``) and their delay queues (dramatiq's
    own dispatch script) and ring their doorbell (``core/doorbell.py``).  An idle healthy
    pool writes its heartbeat, nothing else."""

    now = current_millis()
    beats = f"{broker.namespace}:__heartbeats__"
    pipe = broker.client.pipeline(transaction=False)
    pipe.zadd(beats, {broker.broker_id: now})
    pipe.zrangebyscore(beats, 0, now - broker.heartbeat_timeout, start=0, num=1)
    _, dead = pipe.execute()
    last = _last_full.get(broker.broker_id, 0.0)
    if not dead and time.monotonic() - last < FULL_MAINTENANCE_S:
        return
    _last_full[broker.broker_id] = time.monotonic()
    dispatch = broker.scripts["dispatch"]
    names = [name for q in queues
             for name in ((q, dq_name(q)) if not q.endswith(".DQ") else (q,))]
    if dead:  # their started jobs first, ahead of the backlog (lua/requeue_dead.lua)
        _requeue_dead(broker, now - broker.heartbeat_timeout,
                      [q for q in queues if not q.endswith(".DQ")])
    for name in names:
        dispatch(keys=[broker.namespace],
                 args=["qsize", current_millis(), name, broker.broker_id,
                       broker.heartbeat_timeout, broker.dead_message_ttl, 1,
                       broker._max_unpack_size()])
    if dead and isinstance(broker, QuietBroker):
        broker.announce(*names)  # what was requeued is fetched now, not at the idle poll


_REQUEUE_DEAD = lua_text("requeue_dead.lua")


def _requeue_dead(broker: RedisBroker, dead_before_ms: int, queues: list[str]) -> int:
    """Put dead workers' unacked jobs of ``queues`` back at the head of their queues."""
    script = broker.client.register_script(_REQUEUE_DEAD)  # EVALSHA, loaded once per server
    return int(script(args=[broker.namespace, dead_before_ms, *queues]))


def build_broker(settings: Settings, *, worker: bool = False) -> RedisBroker:
    middleware: list[Middleware] = [
        AgeLimit(),
        TimeLimit(time_limit=10 * 60 * 1000),
        ShutdownNotifications(),
        Callbacks(),
        CurrentMessage(),
        RedisRetries(max_retries=1000, min_backoff=1000, max_backoff=10 * 60 * 1000),
    ]
    from core.observability import JobMetrics, JobTags, KeepTrace

    middleware += [KeepTrace(), Doorbell()]
    if worker:
        middleware.append(Liveness(settings.maintenance_interval_s))
        middleware += [JobTags(), JobMetrics()]
    broker = GonetsRedisBroker(
        # no retry of a timed-out command: a fetch that ran but whose answer was lost would
        # leave its messages in this worker's ack set until the worker dies
        client=connect(settings.redis_url, decode_responses=False, retry_on_timeout=False),
        namespace=Keys(settings.namespace).broker_namespace(),
        middleware=middleware,
        heartbeat_timeout=int(settings.heartbeat_timeout_s * 1000),
        idle_poll_s=settings.idle_poll_s,
    )
    if worker:
        from core.observability.tracing import install

        install(broker)  # a retried job stays in its trace
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


#: slots, not frozen: one per message on the send path (as ``producers.sms.Draft``)
@dataclass(slots=True)
class Job:
    """A message as ``RedisBroker.enqueue`` would write it, not written yet: its queue's keys,
    its redis message id and its encoding (written by ``core/lua/submit.lua`` together with
    the record, then ``enqueued`` tells the middleware)."""

    message: dramatiq.Message[Any]
    queue_key: str
    messages_key: str
    redis_id: str
    data: bytes
    #: the channel that wakes the queue's consumers (core/doorbell.py)
    doorbell: str


_hooks_lock = threading.Lock()


def _hooks(broker: dramatiq.Broker, signal: str) -> list[Any]:
    """The ``signal`` methods (``before_enqueue``) of ``broker``'s middleware that do
    something, in the order ``emit_before`` calls them (``emit_after``'s is reversed): those
    ``Middleware`` itself leaves empty are skipped.  Found again whenever the middleware list
    changed (sentry-sdk adds its own).  Kept on the broker: signal -> (the middleware list
    they were found in, the hooks)."""
    mw = broker.middleware
    known: dict[str, tuple[list[Any], list[Any]]] | None = getattr(broker, "_gonets_hooks", None)
    found = known.get(signal) if known is not None else None
    if found is not None and found[0] == mw:
        return found[1]
    empty = getattr(Middleware, signal, None)
    hooks = [fn for fn in (getattr(m, signal, None) for m in mw)
             if fn is not None and getattr(fn, "__func__", None) is not empty]
    with _hooks_lock:
        known = {**(getattr(broker, "_gonets_hooks", None) or {}), signal: (list(mw), hooks)}
        broker._gonets_hooks = known  # type: ignore[attr-defined]
    return hooks


def prepare(broker: RedisBroker, queue_name: str, actor_name: str, *args: Any) -> Job:
    """What ``enqueue`` writes (no delay): the same message copy, the same middleware before
    it, the same encoding; dramatiq's dispatch.lua then HSETs ``data`` under ``redis_id`` in
    ``<ns>:<queue>.msgs`` and RPUSHes ``redis_id`` onto ``<ns>:<queue>``."""
    # enqueue copies the message with this one option added to none: the same message
    redis_id = uuid4_str()
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue_name, actor_name=actor_name, args=args, kwargs={},
        options={"redis_message_id": redis_id}, message_id=uuid4_str())
    # broker.emit_before("enqueue", message, None), without the calls that do nothing
    for hook in _hooks(broker, "before_enqueue"):
        try:
            hook(broker, message, None)
        except MiddlewareError:
            raise
        except Exception:
            broker.logger.critical("Unexpected failure in before_enqueue of %r.",
                                   getattr(hook, "__self__", hook), exc_info=True)
    full = f"{broker.namespace}:{queue_name}"
    return Job(message, full, full + ".msgs", redis_id, _encode(message), channel(broker))


#: the fields of a dramatiq message, in ``Message.asdict``'s order: those ``_asdict`` names
#: (dramatiq 1.15 to 2.x); any others, and ``Message.asdict`` builds the dict
_FIELDS = ("queue_name", "actor_name", "args", "kwargs", "options", "message_id",
           "message_timestamp")
_KNOWN_FIELDS = tuple(f.name for f in dataclasses.fields(dramatiq.Message)) == _FIELDS


def _asdict(m: dramatiq.Message[Any]) -> dict[str, Any]:
    """``m.asdict()`` (which asks ``dataclasses.fields`` each time)."""
    if not _KNOWN_FIELDS:
        return m.asdict()
    return {"queue_name": m.queue_name, "actor_name": m.actor_name, "args": m.args,
            "kwargs": m.kwargs, "options": m.options, "message_id": m.message_id,
            "message_timestamp": m.message_timestamp}


def prepare_delayed(broker: RedisBroker, queue_name: str, actor_name: str, *args: Any,
                    delay_ms: int) -> Job:
    """What ``enqueue(..., delay_ms=delay_ms)`` writes: as in ``RedisBroker.enqueue`` with a
    delay, the message goes on the queue's delay queue (``<queue>.DQ``) with its ``eta``,
    after the same middleware; a script then writes it as ``prepare`` says (a worker's poll
    job, with the send's record: ``Store.mark_submitted``), and ``enqueued`` follows."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue_name, actor_name=actor_name, args=tuple(args), kwargs={}, options={},
        message_id=uuid4_str())  # (dramatiq's default: the same text, a system call each)
    message = message.copy(queue_name=dq_name(queue_name),
                           options={"redis_message_id": uuid4_str(),
                                    "eta": current_millis() + delay_ms})
    broker.emit_before("enqueue", message, delay_ms)
    full = f"{broker.namespace}:{message.queue_name}"
    return Job(message, full, full + ".msgs", message.options["redis_message_id"],
               _encode(message), channel(broker))


def _encode(message: dramatiq.Message[Any]) -> bytes:
    """``message.encode()``: with dramatiq's ``JSONEncoder`` (``build_broker`` sets no other),
    the same JSON document by orjson (UTF-8 where ``json.dumps`` writes ``\\u`` escapes), which
    dramatiq's decoder reads back the same, in a twentieth of the time (a send's costliest
    step after its checks); any other encoder, or a value orjson does not take, is dramatiq's."""
    if type(dramatiq.get_encoder()) is JSONEncoder:
        try:
            return orjson.dumps(_asdict(message))
        except TypeError:
            pass
    return message.encode()


def after_enqueue_hooks(broker: dramatiq.Broker) -> list[Any]:
    """The after-enqueue hooks ``enqueued`` calls, in its order (empty: none to call)."""
    return [hook for hook in reversed(_hooks(broker, "after_enqueue"))
            if not isinstance(getattr(hook, "__self__", hook), Doorbell)]


def enqueued(broker: RedisBroker, job: Job, delay: int | None = None) -> None:
    """The middleware's after-enqueue of a prepared job once it is written (as ``emit_after``
    runs it), but for the doorbell's: the script that wrote the job rang it already (if it
    had to: ``core.doorbell.rings``). ``delay``: ``prepare_delayed``'s."""
    for hook in after_enqueue_hooks(broker):
        try:
            hook(broker, job.message, delay)
        except Exception:
            broker.logger.critical("Unexpected failure in after_enqueue of %r.",
                                   getattr(hook, "__self__", hook), exc_info=True)
