"""Performance tracing: every job a transaction, every API request one that continues into
the jobs it enqueues (sentry-sdk's dramatiq integration carries the trace in the message's
``_sentry_headers`` option), with spans where the time goes.

* ``GONETS_SENTRY_TRACES_SAMPLE_RATE`` (default 0: off).  Above 0, ``traces_sampler`` samples
  API requests at that rate (health checks and ``/metrics`` never) and *records* every job;
  ``JobTags`` decides when the job ends: a failed job (an error, a failed or rejected
  message, a failed payment) is always kept, the others follow the trace's decision (the
  API request's, or the rate for a job that starts a trace).
* Each job transaction is named by its actor and tagged ``account``, ``provider``, ``lane``,
  ``queue``, ``outcome`` (the message's status after the job, ``deferred``, ``throttled``,
  ``retry`` or ``error``) and ``cause``/``error_code`` when there is one; its queue wait
  (enqueued or due, to started) is the ``queue_wait`` measurement.
* Spans: the provider's HTTP calls (sentry-sdk's httpx integration), Redis commands (its Redis
  integration) and Lua scripts by file name (``db.redis.script``, below), the pacing wait
  (``pacing.wait``) and the SMPP ``submit_sm`` → ``submit_sm_resp`` round trip
  (``smpp.submit``), each opened with ``span()`` where it happens.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dramatiq.middleware import Middleware

from core.observability.logs import MESSAGE_ACTORS, _message_context
from core.observability.scrub import _state

#: the op sentry-sdk's dramatiq integration gives a job's transaction
JOB_OP = "queue.task.dramatiq"
#: the op of a scheduled run (status sweep, payment sweep, balance check)
SWEEP_OP = "schedule.run"
#: outcomes that keep a job's transaction whatever the sample rate
FAILED_OUTCOMES = frozenset({"error", "failed", "rejected", "unknown"})
#: requests never traced: probes and scrapes
_UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: the transaction status of a job whose message or payment failed (Sentry's
#: ``failure_rate()`` counts every status but ok, cancelled and unknown)
_STATUS = {"failed": "internal_error", "rejected": "invalid_argument"}
PAYMENT_ACTORS = frozenset({"pay_mts_money", "check_mts_money", "lookup_payment"})


def traces_sampler(ctx: dict[str, Any]) -> float:
    rate: float = _state["traces_rate"]
    tx = ctx.get("transaction_context") or {}
    if tx.get("op") == JOB_OP:
        return 1.0  # recorded; JobTags keeps it or drops it once the outcome is known
    if tx.get("op") == SWEEP_OP:
        return 1.0  # a few an hour: every one is kept for the sweep-duration chart
    scope = ctx.get("asgi_scope") or {}
    if scope.get("path") in _UNTRACED_PATHS:
        return 0.0
    parent = ctx.get("parent_sampled")
    if parent is not None:
        return 1.0 if parent else 0.0
    return rate


#: span data of a job's transaction that ``prepare_transaction`` turns into the event's
#: measurements (ms), which Sentry's dashboards and alerts query as ``measurements.NAME``:
#: sentry-sdk 2.28+ deprecates ``set_measurement()`` for ``set_data()``, and the event's
#: ``measurements`` field is where Discover still reads them
MEASURED = {"messaging.message.receive.latency": "queue_wait",
            "gonets.pacing_wait_ms": "pacing_wait"}
#: ``span(measure=NAME)`` adds its duration to the transaction's data under this key
_MEASURE_KEYS = {v: k for k, v in MEASURED.items()}
#: per worker thread: the running transaction and the sums of its measured spans
_sums = threading.local()


def span(op: str, name: str, *, measure: str | None = None, **data: Any) -> _Span:
    """A child span of the running transaction (nothing when tracing is off or no
    transaction runs). ``name`` and ``data`` must carry no phone, text or secret.
    ``measure`` also adds the span's duration to the transaction's measurement of that name
    (ms, summed over its spans), so dashboards can chart it beside the transaction's own
    figures."""
    return _Span(op, name, measure, data)


class _Span:
    """``span()``'s context manager (a class: a job opens several, a generator costs more)."""

    __slots__ = ("data", "measure", "name", "op", "span", "t0", "tx")

    def __init__(self, op: str, name: str, measure: str | None, data: dict[str, Any]) -> None:
        self.op, self.name, self.measure, self.data = op, name, measure, data
        self.span: Any = None

    def __enter__(self) -> Any:
        if not _state["traces_rate"] or not _state["sentry"]:
            return None
        import sentry_sdk

        scope = sentry_sdk.get_current_scope()
        tx = scope.transaction
        if tx is None or not tx.sampled:
            return None
        self.tx, self.t0 = tx, time.monotonic()
        # a child of the running span (Span.start_child; Scope.start_span would fork the
        # scope around the same call)
        s = self.span = (scope.span or tx).start_child(op=self.op, name=self.name)
        s.__enter__()
        for k, v in self.data.items():
            s.set_data(k, v)
        return s

    def __exit__(self, *exc: Any) -> None:
        if self.span is None:
            return
        self.span.__exit__(*exc)
        if self.measure:
            _add_measurement(self.tx, self.measure, (time.monotonic() - self.t0) * 1000)


def _add_measurement(tx: Any, name: str, ms: float) -> None:
    """Add ``ms`` to the transaction's measurement ``name``: several spans of one kind add up
    (the booking, then the slot).  A label: it never fails the job."""
    try:
        sums = _sums.__dict__
        if sums.get("tx") is not tx:
            sums.clear()
            sums["tx"] = tx
        total = sums[name] = sums.get(name, 0.0) + ms
        tx.set_data(_MEASURE_KEYS.get(name, f"gonets.{name}_ms"), round(total, 3))
    except Exception:  # sentry-sdk's API moved: no measurement, no harm
        pass


def prepare_transaction(event: Any, hint: Any) -> Any:
    """A global event processor, run on each transaction before sentry-sdk serializes it
    (whose cost grows with every node): measured data into ``measurements``; child spans
    lose ``thread.id``/``thread.name`` (a job's spans all run on its thread, which its trace
    context names) and the protocol's defaults (``same_process_as_parent``, ``origin``
    ``manual``); ``sys.argv``, the integrations and packages stay on errors (the ``role`` tag
    names the process), the message id is the trace's ``messaging.message.id``."""
    if event.get("type") != "transaction":
        return event
    trace = (event.get("contexts") or {}).get("trace") or {}
    data = trace.get("data") or {}
    measurements = event.get("measurements")
    if not isinstance(measurements, dict):
        measurements = event["measurements"] = {}
    for key, mname in MEASURED.items():
        if key in data:
            measurements[mname] = {"value": data[key], "unit": "millisecond"}
    thread = data.get("thread.id")
    for s in event.get("spans") or ():
        d = s.get("data")
        if d and d.get("thread.id") == thread:
            d.pop("thread.id", None)
            d.pop("thread.name", None)
            if not d:
                del s["data"]
        # the protocol's defaults, said once per span
        if s.get("same_process_as_parent") is True:
            del s["same_process_as_parent"]
        if s.get("origin") == "manual":
            del s["origin"]
    extra = event.get("extra")
    if extra:
        extra.pop("sys.argv", None)
        extra.pop("dramatiq_message_id", None)  # the trace's messaging.message.id
        if not extra:
            del event["extra"]
    if "sdk" not in event:  # name and version; errors carry the integrations and packages
        from sentry_sdk.client import SDK_INFO

        event["sdk"] = {"name": SDK_INFO["name"], "version": SDK_INFO["version"]}
    return event


def _queue_wait_ms(message: Any, now_ms: int) -> int:
    """Enqueued (or due, for a delayed or retried job) to started."""
    ready = max(int(message.message_timestamp or 0), int(message.options.get("eta") or 0))
    return max(now_ms - ready, 0)


class KeepTrace(Middleware):
    """A delayed job (a status poll due in 30 s, a deferred send) is enqueued twice: by its
    producer onto the delay queue, then by a worker onto its queue when it is due, where
    sentry-sdk's middleware (first in the list) would stamp the worker's idle trace over the
    producer's.  The first stamp is kept aside and put back on every later enqueue."""

    KEY = "_gonets_trace"

    def before_enqueue(self, broker: Any, message: Any, delay: int) -> None:
        headers = message.options.get("_sentry_headers")
        if headers is None:
            return
        kept = message.options.get(self.KEY)
        if kept is None:
            message.options[self.KEY] = dict(headers)
        else:
            message.options["_sentry_headers"] = dict(kept)


class RetryTrace(Middleware):
    """sentry-sdk's dramatiq middleware starts a new trace for a retried job (it ignores the
    message's trace headers once dramatiq's ``retries`` option is set).  Placed before it
    (``install``), this hides the retry count for that moment, and ``JobTags``, after it, puts
    the count back before any other middleware reads it: a retry stays in the trace of
    whatever queued the job (``KeepTrace`` keeps that first stamp), beside its first try."""

    KEY = "_gonets_retries"

    def before_process_message(self, broker: Any, message: Any) -> None:
        if "retries" in message.options and message.options.get("_sentry_headers"):
            message.options[self.KEY] = message.options.pop("retries")


def _restore_retries(message: Any) -> None:
    if RetryTrace.KEY in message.options:
        message.options["retries"] = message.options.pop(RetryTrace.KEY)


def install(broker: Any) -> None:
    """A worker's broker: ``RetryTrace`` just before sentry-sdk's middleware, when Sentry is
    on (``JobTags`` must be on the broker too: it restores the retry count)."""
    from sentry_sdk.integrations.dramatiq import SentryMiddleware

    if any(isinstance(m, SentryMiddleware) for m in broker.middleware) and \
            any(isinstance(m, JobTags) for m in broker.middleware):
        broker.add_middleware(RetryTrace(), before=SentryMiddleware)


class JobTags(Middleware):
    """Tags every Sentry event and transaction of a job with its job name, account, provider,
    lane, queue and message id; measures its queue wait; when it ends, tags its outcome and
    applies the sampling rule (sentry-sdk's own middleware, first in the list, has opened the
    job's scope and transaction and closes them after this one)."""

    def before_process_message(self, broker: Any, message: Any) -> None:
        _restore_retries(message)
        _moved.last = None
        if not _state["sentry"]:
            return
        import sentry_sdk

        tags: dict[str, Any] = {}
        _message_context(message, tags)
        q = message.queue_name.split(".")
        tags["queue"] = message.queue_name
        if len(q) >= 3:
            tags["lane"] = q[2]
        provider = _state["providers"].get(tags.get("account"))
        if provider:
            tags["provider"] = provider
        for k, v in tags.items():
            sentry_sdk.set_tag(k, v)
        tx = sentry_sdk.get_current_scope().transaction
        if tx is not None and tx.sampled:
            wait = _queue_wait_ms(message, int(time.time() * 1000))
            tx.set_data("messaging.message.receive.latency", wait)  # and measurements.queue_wait
            tx.set_data("messaging.message.id", message.message_id)
            tx.set_data("messaging.message.retry.count", message.options.get("retries", 0))

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        _restore_retries(message)  # skipped before this middleware's before_process_message
        if not _state["sentry"] or not _state["traces_rate"]:
            return
        import sentry_sdk

        tx = sentry_sdk.get_current_scope().transaction
        if tx is None or not tx.sampled:
            return
        outcome, extra = job_outcome(message, exception)
        sentry_sdk.set_tag("outcome", outcome)
        for k, v in extra.items():
            sentry_sdk.set_tag(k, v)
        if outcome in _STATUS:
            # the job ran, but its message or payment failed: counted by failure_rate()
            tx.set_status(_STATUS[outcome])
        if outcome in FAILED_OUTCOMES:
            return  # always kept
        parent = tx.parent_sampled
        keep = parent if parent is not None else random.random() < _state["traces_rate"]
        if not keep:
            tx.sampled = False  # finished by sentry-sdk's middleware, sent nowhere

    after_skip_message = after_process_message


#: reads ``(status, error code)`` of the record a job worked on, by actor name and record
#: id, or None for an actor without one; a worker process installs it
#: (``workers.runtime.record_outcome``), since the shared package imports no role
RecordReader = Callable[[str, str], "tuple[object, object] | None"]
_record_reader: RecordReader | None = None


def set_record_reader(reader: RecordReader | None) -> None:
    global _record_reader
    _record_reader = reader


#: per worker thread: (record id, status, error code) where the running job's last status
#: transition left a record (``note_status``, called by the store); cleared as a job starts
_moved = threading.local()


def note_status(rec_id: str, status: str, code: str | None) -> None:
    """The store reports each transition it wrote: a job that moved its own record needs no
    read of it for its outcome tag (one Redis round trip less per job)."""
    _moved.last = (rec_id, status, code)


def job_outcome(message: Any, exception: BaseException | None) -> tuple[str, dict[str, str]]:
    """What the job came to, for the ``outcome`` tag, and ``cause``/``error_code``."""
    if exception is not None:
        import dramatiq

        if not isinstance(exception, dramatiq.Retry):
            return "error", {"cause": type(exception).__name__}
        cause = exception.__cause__
        if cause is None:  # a traffic rule or a paused account holds it
            return "deferred", {}
        name = type(cause).__name__
        return ("throttled" if name == "SlowDown" else "retry"), {"cause": name}
    if not message.args or _record_reader is None:
        return "ok", {}
    rec_id = str(message.args[0])
    last = getattr(_moved, "last", None)
    try:
        if last is not None and last[0] == rec_id and message.actor_name in MESSAGE_ACTORS:
            found: tuple[object, object] | None = last[1:]  # where this job left it
        else:
            found = _record_reader(message.actor_name, rec_id)
        if found is None:
            return "ok", {}
        status, code = found
    except Exception:  # the outcome is a label: never fail a job over it
        return "ok", {}
    extra = {"error_code": str(code)} if code else {}
    return (str(status) if status else "ok"), extra


# --- Redis scripts ----------------------------------------------------------------------

_script_names: dict[str, str] = {}


def _lua_names() -> dict[str, str]:
    """sha1 of every Lua script shipped in the packages -> its file name."""
    if not _script_names:
        root = Path(__file__).resolve().parents[2]
        for pkg in ("core", "workers", "producers", "scheduler"):
            for f in (root / pkg).rglob("*.lua"):
                sha = hashlib.sha1(f.read_text(encoding="utf-8").encode()).hexdigest()
                _script_names[sha] = f.name
    return _script_names


def script_name(script: Any) -> str:
    """A Lua script's file name (ours), ``dramatiq.lua`` for dramatiq's own dispatch script,
    else its first comment line; remembered on the script object."""
    name = getattr(script, "_gonets_name", None)
    if name is not None:
        return str(name)
    sha = getattr(script, "sha", "") or ""
    name = _lua_names().get(sha)
    if name is None:
        src = getattr(script, "script", b"")
        text = src.decode(errors="replace") if isinstance(src, bytes) else str(src)
        first = text.strip().splitlines()[0] if text.strip() else ""
        name = ("dramatiq.lua" if "Dramatiq" in first
                else first[:60] if first.startswith("--") else f"script {sha[:12]}")
    try:
        script._gonets_name = name
    except AttributeError:
        pass
    return name


def instrument_scripts() -> None:
    """Each Lua script call (redis-py ``Script``) as a ``db.redis.script`` span named by its
    file, around the EVALSHA span of sentry-sdk's Redis integration."""
    from redis.commands.core import Script

    orig = Script.__call__
    if getattr(orig, "_gonets", False):
        return

    def traced(self: Any, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        with span("db.redis.script", script_name(self)):
            return orig(self, keys, args, client)

    traced._gonets = True  # type: ignore[attr-defined]
    Script.__call__ = traced  # type: ignore[method-assign]
