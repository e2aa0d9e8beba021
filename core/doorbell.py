"""A doorbell for dramatiq's Redis consumers: an idle worker pool costs Redis nothing but its
heartbeat, and still takes a new job at once.

dramatiq's RedisBroker consumers poll: every consumer (a queue and its delay queue, three
queues per pool) runs the dispatch script's ``fetch`` at least once per worker timeout, and
every fetch writes the worker's heartbeat.  Six idle pools made ~500 script calls and ~1,000
writes a second.  Here:

* whoever enqueues PUBLISHes the queue's name on ``<ns>-q:wake`` (``core/lua/submit.lua`` in
  the same script as the job; ``Doorbell.after_enqueue`` after any other enqueue; the liveness
  thread after it requeued a dead worker's messages, a consumer after it gave messages back);
* every worker process listens on that channel in one thread and rings the queue's bell;
* a ``QuietConsumer`` fetches when its bell rang, while it has recently found work (dramatiq's
  own backoff), or every ``IDLE_POLL_S`` as a safety net (a missed PUBLISH: a reconnect, a
  message requeued by dramatiq's own random maintenance; ``Settings.idle_poll_s``), and
  that idle poll first asks LLEN (a read), so an idle consumer writes nothing;
* a busy consumer (its prefetch all taken) waits for its jobs' acks, not a growing sleep, and
  fetches again once a quarter of its prefetch is free (``refill``): with dramatiq's prefetch
  (two jobs a thread) every thread still has a job waiting, and a queue worked through at the
  provider's pace costs one fetch per several jobs, not an LLEN and a fetch per job.

Pub/sub is at-most-once: a bell lost costs at most ``IDLE_POLL_S`` of latency, never a job (the
job is on its list whether or not anyone heard the bell).  The heartbeat is the liveness
thread's one ZADD per process per interval (``core/broker.py``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message
from dramatiq.middleware import Middleware

#: an idle consumer looks at its queue (LLEN) this often even if no bell rang (the default of
#: ``Settings.idle_poll_s``)
IDLE_POLL_S = 10.0
#: after finding work, keep polling on dramatiq's backoff (5 ms doubling) this many times
RECENT_MISSES = 8
#: a delay queue's consumer holding delayed jobs returns at least this often (ms), so its
#: thread enqueues each when it is due (the worker timeout, 1 s, would make them that late)
DELAYED_TICK_MS = 50


def channel(broker: RedisBroker) -> str:
    """The doorbell channel of a broker's namespace (``<ns>-q:wake``; a channel, not a key)."""
    return f"{broker.namespace}:wake"


def rings(broker: Any, delay: int | None) -> bool:
    """Whether a job enqueued with ``delay`` (ms) rings its queue's doorbell: a job due after
    the next idle look (a status poll in minutes) needs no ring: that look fetches it before
    it is due, and a busy worker saves a round trip per send."""
    return isinstance(broker, QuietBroker) and \
        (delay is None or delay < broker.idle_poll_s * 1000)


class QuietBroker(RedisBroker):
    """dramatiq's RedisBroker whose consumers wait for the doorbell instead of polling."""

    def __init__(self, *, idle_poll_s: float = IDLE_POLL_S, **kw: Any) -> None:
        super().__init__(**kw)  # type: ignore[no-untyped-call]
        self.idle_poll_s = idle_poll_s
        self.bells: dict[str, threading.Event] = {}
        self._bells_lock = threading.Lock()

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return QuietConsumer

    def bell(self, queue_name: str) -> threading.Event:
        with self._bells_lock:
            return self.bells.setdefault(queue_name, threading.Event())

    def ring(self, queue_name: str | None = None) -> None:
        """Ring one queue's bell (None: every bell)."""
        with self._bells_lock:
            bells = list(self.bells.values()) if queue_name is None else \
                [b for q, b in self.bells.items() if q == queue_name]
        for b in bells:
            b.set()

    def announce(self, *queue_names: str) -> None:
        """Tell every worker process that these queues have work (PUBLISH, one round trip)."""
        ch = channel(self)
        if len(queue_names) == 1:
            self.client.publish(ch, queue_names[0])
            return
        pipe = self.client.pipeline(transaction=False)
        for q in queue_names:
            pipe.publish(ch, q)
        pipe.execute()


class QuietConsumer(_RedisConsumer):
    """dramatiq's Redis consumer, fetching only when there may be something to fetch."""

    def __init__(self, broker: QuietBroker, queue_name: str, prefetch: int,
                 timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        self.bell = broker.bell(queue_name)
        self.queue_key = f"{broker.namespace}:{queue_name}"
        self.next_look = 0.0  # an idle look at once: what was queued before we listened
        self.misses = RECENT_MISSES  # idle until a fetch finds work (a look is a read)
        self.holds_delayed = queue_name.endswith(".DQ")
        self.more = False  # the last fetch got all it asked for (there may be more)
        #: fetch again once this many of the prefetch are free (1: dramatiq's own rule)
        self.refill = max(1, prefetch // 4)
        #: set by every ack and nack: a busy consumer waits on it for room to fetch
        self.freed = threading.Event()
        self.fetches = 0  # fetches made (each moves jobs into this worker's ack set)

    def _fetch(self) -> list[bytes]:
        rang = self.bell.is_set()
        self.bell.clear()  # before the fetch: a ring during it is not lost
        now = time.monotonic()
        if not rang and self.misses:  # (misses 0: the last fetch found work, fetch again)
            if self.misses >= RECENT_MISSES and now < self.next_look:
                return []
            self.next_look = now + self.broker.idle_poll_s
            if not self.broker.client.llen(self.queue_key):
                return []  # a read: an idle queue costs no write
        wanted = self.prefetch - self.outstanding_message_count
        self.fetches += 1
        fetched: list[bytes] = self.broker.do_fetch(self.queue_name, wanted)
        self.more = len(fetched) >= wanted  # as many as asked: the queue may hold more
        return fetched

    def __next__(self) -> Any:
        from dramatiq.broker import MessageProxy

        try:
            while True:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:
                        continue
                    # found work: look again soon (dramatiq's backoff), except a delay
                    # queue that took all there was: a job due before the next idle look
                    # rings (``rings``), the rest (a poll in minutes) that look fetches
                    self.misses = RECENT_MISSES if self.holds_delayed and not self.more \
                        else 0
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                self.freed.clear()  # before counting: an ack from now on wakes the wait
                if self.prefetch - self.outstanding_message_count >= self.refill:
                    self.message_cache = self._fetch()
                    if self.message_cache:
                        continue
                elif not self.holds_delayed or not self.outstanding_message_count:
                    # busy: every thread has work; wait for acks, not a sleep that grows
                    # (a bell cannot be answered now: it stays rung); None now and then
                    # lets the consumer thread see it is stopping
                    self.freed.wait(self.timeout / 1000)
                    return None
                # nothing: wait for the bell (dramatiq's backoff, up to the worker timeout;
                # the consumer thread needs None back now and then to handle delayed jobs)
                self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
                if self.holds_delayed and self.outstanding_message_count:
                    # its thread hands a delayed job on when this returns: keep its eta
                    backoff_ms = min(backoff_ms, DELAYED_TICK_MS)
                if self.prefetch - self.outstanding_message_count >= self.refill:
                    self.bell.wait(backoff_ms / 1000)
                else:  # full, holding delayed jobs: hand them on at their eta
                    self.freed.wait(backoff_ms / 1000)
                return None
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None

    def ack(self, message: Any) -> None:
        try:
            super().ack(message)  # type: ignore[no-untyped-call]
        finally:
            self.freed.set()

    def nack(self, message: Any) -> None:
        try:
            super().nack(message)  # type: ignore[no-untyped-call]
        finally:
            self.freed.set()

    def requeue(self, messages: Any) -> None:
        """Give prefetched messages back (shutdown) and ring for the other processes."""
        super().requeue(messages)  # type: ignore[no-untyped-call]
        if messages:
            try:
                self.broker.announce(self.queue_name)
            except redis.RedisError:
                pass  # their idle poll finds them


class Doorbell(Middleware):
    """Rings after every enqueue; in a worker process, listens for rings."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_enqueue(self, broker: Any, message: Any, delay: int | None) -> None:
        if rings(broker, delay):
            try:
                broker.announce(message.queue_name)
            except redis.RedisError:
                pass  # the job is queued: the consumers' idle poll finds it

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        if not isinstance(broker, QuietBroker):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._listen, args=(broker,),
                                        name="gonets-doorbell", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self._stop.set()

    def _listen(self, broker: QuietBroker) -> None:
        while not self._stop.is_set():
            ps = broker.client.pubsub(ignore_subscribe_messages=True)
            try:
                ps.subscribe(channel(broker))
                broker.ring()  # whatever came while we were not listening
                while not self._stop.is_set():
                    msg = ps.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        data = msg["data"]
                        broker.ring(data.decode() if isinstance(data, bytes) else str(data))
            except (redis.RedisError, OSError):
                broker.ring()  # meanwhile the consumers poll (idle poll, after a ring)
                self._stop.wait(1.0)
            finally:
                try:
                    ps.close()
                except (redis.RedisError, OSError):
                    pass
