"""dramatiq's worker with consumer threads that survive Redis outages (issue 20).

dramatiq 2.2's ``ConsumerThread`` (``dramatiq/worker.py``) loses work when Redis goes away:

* after a connection error it replaces its delay queue with an empty one: the delayed jobs
  it held (status polls, retries waiting for their time) stay in this worker's ack set in
  Redis, and nothing requeues them while the worker keeps heartbeating;
* the jobs it had fetched but not yet handed on (its consumer's prefetch cache) are dropped
  the same way;
* ``close()`` re-raises redis-py's ``ConnectionError`` (only dramatiq's
  ``BrokerConnectionError`` is caught), which ends the thread for good: that queue is never
  consumed again, and nothing said so.

``ConsumerThread`` below keeps every job it held (the "orphans") and puts them back on their
queue (``core/lua/requeue_jobs.lua``) as soon as Redis answers again, never dies of an error,
and says while it is failing (``problem()``, read by ``/healthz``: ``workers/health.py``), so
a worker whose consumers cannot recover is restarted by Kubernetes.  ``Worker`` is dramatiq's
worker with these threads.  Nothing of dramatiq is patched; two of its module-level delays
are shortened (see ``RESTART_DELAY_S``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq.worker as dw
from dramatiq import Message
from dramatiq.common import current_millis, iter_queue, q_name
from dramatiq.errors import ConnectionClosed

from core.broker import REDIS_UNAVAILABLE

log = logging.getLogger("gonets.worker")

#: how long a consumer thread waits before it reconnects after an error, and a worker thread
#: before it tries again to ack a job (dramatiq's defaults: 3 s and 5 s, read from these module
#: globals at each use): work resumes within a second or two of Redis answering again
RESTART_DELAY_S = 1
dw.CONSUMER_RESTART_DELAY_SECS = float(RESTART_DELAY_S)
dw.POST_PROCESS_MESSAGE_RETRY_DELAY_SECS = RESTART_DELAY_S


class ConsumerThread(dw.ConsumerThread):
    """A dramatiq consumer thread that keeps the jobs it holds through a Redis outage."""

    def __init__(self, **kw: Any) -> None:
        self._orphans: list[Any] = []  # jobs held, to put back on the queue once Redis answers
        self._orphans_lock = threading.Lock()
        #: monotonic time of the first error of the current outage; None while healthy
        self.failing_since: float | None = None
        self.last_error = ""
        super().__init__(**kw)

    # dramatiq assigns a fresh PriorityQueue to ``delay_queue`` after a connection error
    # (dropping what the old one held); the setter keeps those jobs as orphans instead
    @property
    def delay_queue(self) -> Any:
        return self.__dict__["_delay_queue"]

    @delay_queue.setter
    def delay_queue(self, queue: Any) -> None:
        old = self.__dict__.get("_delay_queue")
        if old is not None and old is not queue:
            self._keep([item.message for item in iter_queue(old)])
        self.__dict__["_delay_queue"] = queue

    def _keep(self, messages: list[Any]) -> None:
        if messages:
            with self._orphans_lock:
                self._orphans.extend(messages)

    def problem(self) -> str | None:
        """Why this consumer is not working now (``None``: it is)."""
        if not self.is_alive():
            return "thread dead"
        since = self.failing_since
        if since is None:
            return None
        return f"failing for {time.monotonic() - since:.0f} s: {self.last_error}"[:200]

    def _failed(self) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()

    def _recovered(self) -> None:
        """Redis answered this consumer: put back what it held, and say it works again."""
        with self._orphans_lock:
            orphans, self._orphans = self._orphans, []
        if orphans:
            try:
                back, restored = self._put_back(orphans)
            except Exception:
                self._keep(orphans)
                raise
            log.warning("queue %s: %d held job(s) put back on the queue after a Redis error "
                        "(%d written again: Redis had lost them)", self.queue_name, back,
                        restored)
        if self.failing_since is not None:
            log.warning("queue %s: consumer works again after %.1f s", self.queue_name,
                        time.monotonic() - self.failing_since)
            self.failing_since = None
            self.last_error = ""

    def _put_back(self, messages: list[Any]) -> tuple[int, int]:
        consumer = self.consumer
        if consumer is None:
            raise ConnectionClosed(RuntimeError("no consumer yet"))
        put_back = getattr(consumer, "put_back", None)
        if put_back is None:  # not core.broker's consumer (a stub broker): dramatiq's requeue
            consumer.requeue(messages)
            return len(messages), 0
        result: tuple[int, int] = put_back(messages)
        return result

    def handle_delayed_messages(self) -> None:
        """dramatiq's, except that a job whose move to its queue fails stays held (dramatiq's
        loses it), and a consumer that gets here has reached Redis: it has recovered."""
        self._recovered()
        for item in iter_queue(self.delay_queue):
            eta = item.priority
            message = item.message
            if eta > current_millis():
                self.delay_queue.put(item)
                self.delay_queue.task_done()
                break
            new_message = message.copy(queue_name=q_name(message.queue_name))
            del new_message.options["eta"]
            try:
                self.broker.enqueue(new_message)
            except REDIS_UNAVAILABLE as exc:
                self.delay_queue.put(item)  # still ours: tried again once Redis answers
                self.delay_queue.task_done()
                raise ConnectionClosed(exc) from exc
            self.post_process_message(message)
            self.delay_queue.task_done()

    def requeue_messages(self, messages: Any) -> None:
        self._put_back(list(messages))

    def close(self) -> None:
        """dramatiq closes a consumer after every error (and at shutdown). Keep what it held
        (delayed jobs, fetched ones not handed on yet), try to put them back, and never let
        an error end the thread."""
        if self.running:  # closed while running: an error brought us here
            self._failed()
        consumer = self.consumer
        held: list[Any] = [item.message for item in iter_queue(self.delay_queue)]
        cache = getattr(consumer, "message_cache", None)
        if cache:
            held += [Message.decode(data) for data in cache if data is not None]
            cache.clear()
        self._keep(held)
        try:
            with self._orphans_lock:
                orphans, self._orphans = self._orphans, []
            if orphans:
                try:
                    self._put_back(orphans)
                except Exception:
                    self._keep(orphans)
                    raise
            if consumer is not None:
                consumer.close()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("queue %s: could not put held jobs back yet (%s); will try again",
                        self.queue_name, self.last_error)

    def run(self) -> None:
        # dramatiq's loop catches and logs every error; this only records the last one so
        # /healthz can say what it is
        handler = _ErrorRecorder(self)
        self.logger.addHandler(handler)
        try:
            super().run()
        finally:
            self.logger.removeHandler(handler)


class _ErrorRecorder(logging.Handler):
    """Keeps the last error dramatiq's consumer loop logs (critical: "Consumer encountered
    a connection error ..." / "... an unexpected error")."""

    def __init__(self, thread: ConsumerThread) -> None:
        super().__init__(logging.CRITICAL)
        self.thread = thread

    def emit(self, record: logging.LogRecord) -> None:
        self.thread._failed()
        exc = record.exc_info[1] if record.exc_info else None
        self.thread.last_error = (f"{type(exc).__name__}: {exc}" if exc is not None
                                  else record.getMessage())


class Worker(dw.Worker):
    """dramatiq's Worker with the consumer threads above."""

    def _add_consumer(self, queue_name: str, *, delay: bool = False) -> None:
        # dramatiq's Worker._add_consumer, with this module's ConsumerThread
        if queue_name in self.consumers:
            return
        if self.consumer_whitelist and q_name(queue_name) not in self.consumer_whitelist:
            return
        consumer = self.consumers[queue_name] = ConsumerThread(
            broker=self.broker,
            queue_name=queue_name,
            prefetch=self.delay_prefetch if delay else self.queue_prefetch,
            work_queue=self.work_queue,
            worker_timeout=self.worker_timeout,
        )
        consumer.start()

    def problems(self) -> dict[str, str]:
        """Consumer threads that are dead or failing, by queue."""
        out = {}
        for name, t in list(self.consumers.items()):
            problem = t.problem() if isinstance(t, ConsumerThread) else (
                None if t.is_alive() else "thread dead")
            if problem:
                out[name] = problem
        return out
