"""Operations visibility for every role: Sentry, structured logs, Prometheus metrics.

``setup(role)`` runs first thing in every ``gonets`` process, before any broker exists
(sentry-sdk's dramatiq integration patches ``Broker.__init__``):

* **Sentry** from ``GONETS_SENTRY_DSN``: dramatiq and logging integrations, release and
  environment, ``role``/``account``/``provider`` tags.  Events are unexpected exceptions and
  account alerts; an alert (a log record carrying ``gonets_alert``, written once per incident
  by the workers) is grouped per account and alert by its fingerprint.  Retries after
  throttling, requeues and deferrals log at INFO/WARNING and never become events.
* **Privacy**: ``before_send`` and ``before_breadcrumb`` mask anything that looks like a
  phone number and drop message texts, credentials and tokens (by key), everywhere in the
  event, dramatiq message arguments included.  Stack locals and request bodies are not sent.
* **Crons**: ``cron_checkin(job, schedule)`` wraps each scheduled run in ``in_progress`` and
  ``ok``/``error`` check-ins, so a missed sweep pages someone.
* **Logs**: one JSON object per line (``ts``, ``level``, ``logger``, ``msg``, and ``account``,
  ``msg_id``, ``alert`` when known; phone numbers masked), plain text in a terminal.
* **Metrics**: ``serve_metrics(port)`` serves ``/metrics`` (prometheus_client): workers
  export their jobs (``JobMetrics``), the scheduler its sweeps and the cluster-wide figures it
  reads from Redis at scrape time (``StoreCollector``: messages per account, status and error
  code; queue depth and oldest waiting job; balances, alerts, pauses, rate limits).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any, Iterator

from dramatiq.middleware import Middleware

from core.privacy import scrub_text

log = logging.getLogger("gonets.observability")

FILTERED = "[Filtered]"
#: keys whose values never leave the process (texts, secrets, tokens); compared lower-case
SECRET_KEYS = frozenset({
    "text", "texts", "message_text", "mes", "body", "sms", "psw", "password", "passwd", "pass",
    "secret", "client_secret", "token", "access_token", "refresh_token", "id_token",
    "authorization", "api_key", "apikey", "credentials", "cookie", "set-cookie", "login",
    "card", "pan", "cvv", "cvc",
})
#: keys holding phone numbers: masked, not dropped (operator prefix helps debugging)
PHONE_KEYS = frozenset({"phone", "phones", "to", "msisdn", "destination_addr", "number"})
#: keys never scrubbed for phone-like digits (ids, times: long digit runs that are not phones)
KEEP_KEYS = frozenset({
    "event_id", "trace_id", "span_id", "parent_span_id", "timestamp", "start_timestamp",
    "release", "check_in_id", "dramatiq_message_id", "message_id", "redis_message_id",
    "msg_id", "sdk", "fire_ms", "eta", "message_timestamp", "thread_id", "lineno",
})
#: ``key=value`` pairs in free text (URLs in error messages): SMSC puts login, password,
#: phones and the text (``mes``) in the query string
_SECRETISH = re.compile(r"(?i)\b(login|psw|password|passwd|pass|secret|client_secret|token|"
                        r"access_token|apikey|api_key|mes|text|msg)=([^&\s'\"]+)")

_state: dict[str, Any] = {"providers": {}, "role": None, "sentry": False}


# --- scrubbing --------------------------------------------------------------------------

def _scrub_str(s: str) -> str:
    return _SECRETISH.sub(lambda m: f"{m.group(1)}={FILTERED}", scrub_text(s))


def scrub(value: Any, key: str | None = None) -> Any:
    """A copy of ``value`` without phone numbers (masked), texts or secrets (dropped)."""
    k = key.lower() if isinstance(key, str) else None
    if k in SECRET_KEYS:
        return FILTERED if value not in (None, "", [], {}) else value
    if k in KEEP_KEYS:
        return value
    if isinstance(value, str):
        if k in PHONE_KEYS:
            from core.privacy import mask_phone

            return mask_phone(value) if value.lstrip("+").isdigit() else _scrub_str(value)
        return _scrub_str(value)
    if isinstance(value, dict):
        return {kk: scrub(vv, kk) for kk, vv in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v, key if k in PHONE_KEYS else None) for v in value)
    return value


def _scrub_dramatiq_args(event: dict[str, Any]) -> None:
    """dramatiq's integration attaches the message (args, kwargs, options): payloads carry
    ids, but a positional argument has no key to judge it by, so strings in ``args`` keep
    only what cannot be a text: ids and names without spaces."""
    ctx = event.get("contexts", {}).get("dramatiq")
    if not isinstance(ctx, dict):
        return
    data = ctx.get("data")
    if isinstance(data, dict) and isinstance(data.get("args"), (list, tuple)):
        data["args"] = [_arg(a) for a in data["args"]]


def _arg(a: Any) -> Any:
    if isinstance(a, str):
        idlike = re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", a) is not None
        return a if idlike and scrub_text(a) == a else FILTERED
    if isinstance(a, (list, tuple)):
        return [_arg(x) for x in a]
    if isinstance(a, dict):
        return scrub(a)
    return a


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    event = scrub(event)
    _scrub_dramatiq_args(event)
    extra = event.get("extra") or {}
    alert = extra.get("gonets_alert")
    tags = event.setdefault("tags", {})
    if isinstance(tags, list):  # sentry-sdk may carry tags as pairs
        tags = event["tags"] = dict(tags)
    account = extra.get("account") or tags.get("account")
    if account:
        tags["account"] = account
        provider = _state["providers"].get(account)
        if provider:
            tags["provider"] = provider
    if alert:
        # one issue per account and alert kind, however the text varies
        tags["alert"] = alert
        event["fingerprint"] = ["gonets-account-alert", str(account), str(alert)]
        event["level"] = "error"
    return event


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    return scrub(crumb)


# --- Sentry -----------------------------------------------------------------------------

def init_sentry(dsn: str | None, *, role: str, environment: str = "development",
                release: str | None = None, account: str | None = None,
                providers: dict[str, str] | None = None, **options: Any) -> bool:
    """Initialise sentry-sdk (before any broker is built). False when no DSN is set."""
    _state["providers"] = dict(providers or {})
    _state["role"] = role
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.dramatiq import DramatiqIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger

    sentry_sdk.init(
        dsn=dsn,
        release=release or _release(),
        environment=environment,
        integrations=[DramatiqIntegration(),
                      LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
        include_local_variables=False,
        # request bodies and dramatiq message payloads are not attached at all (the job,
        # its account and message id are tags instead)
        max_request_body_size="never",
        before_send=before_send,
        before_breadcrumb=before_breadcrumb,
        **options,
    )
    # dramatiq logs an actor's unhandled exception and its integration captures it too:
    # keep the integration's event (it has the message context), not a second one
    ignore_logger("dramatiq.worker.WorkerThread")
    sentry_sdk.set_tag("role", role)
    if account:
        sentry_sdk.set_tag("account", account)
        if account in _state["providers"]:
            sentry_sdk.set_tag("provider", _state["providers"][account])
    _state["sentry"] = True
    return True


def _release() -> str:
    try:
        from importlib.metadata import version

        return f"gonets@{version('gonets')}"
    except Exception:
        return "gonets@unknown"


def sentry_active() -> bool:
    if not _state["sentry"]:
        return False
    import sentry_sdk

    return sentry_sdk.get_client().is_active()


def flush(timeout_s: float = 5.0) -> None:
    if sentry_active():
        import sentry_sdk

        sentry_sdk.flush(timeout=timeout_s)


@contextlib.contextmanager
def cron_checkin(job: str, schedule: dict[str, Any], *, margin_min: int = 5,
                 max_runtime_min: int = 30) -> Iterator[None]:
    """Sentry Crons check-ins around one scheduled run (``in_progress``, ``ok``/``error``)."""
    if not sentry_active():
        yield
        return
    from sentry_sdk.crons import capture_checkin
    from sentry_sdk.crons.consts import MonitorStatus

    slug = f"gonets-{job}".replace("_", "-")
    config = {"schedule": schedule, "checkin_margin": margin_min,
              "max_runtime": max_runtime_min, "timezone": "UTC"}
    t0 = time.monotonic()
    cid = capture_checkin(monitor_slug=slug, status=MonitorStatus.IN_PROGRESS,
                          monitor_config=config)
    try:
        yield
    except Exception:
        capture_checkin(monitor_slug=slug, check_in_id=cid, status=MonitorStatus.ERROR,
                        duration=time.monotonic() - t0, monitor_config=config)
        raise
    capture_checkin(monitor_slug=slug, check_in_id=cid, status=MonitorStatus.OK,
                    duration=time.monotonic() - t0, monitor_config=config)


# --- logs -------------------------------------------------------------------------------

_STD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; phone numbers masked; record extras kept (scrubbed)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc)
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


def _message_context(m: Any, out: dict[str, Any]) -> None:
    out["job"] = m.actor_name
    q = m.queue_name.split(".")
    if q[0] == "sms" and len(q) >= 3:
        out["account"] = q[1]
    if m.actor_name in ("send_sms", "poll_status") and m.args:
        out["msg_id"] = str(m.args[0])


class JobTags(Middleware):
    """Tags every Sentry event raised while a job runs with its job name, account and message
    id (sentry-sdk's own middleware, first in the list, has opened the job's scope)."""

    def before_process_message(self, broker: Any, message: Any) -> None:
        if not sentry_active():
            return
        import sentry_sdk

        tags: dict[str, Any] = {}
        _message_context(message, tags)
        for k, v in tags.items():
            sentry_sdk.set_tag(k, v)


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


# --- metrics ----------------------------------------------------------------------------

_metrics: dict[str, Any] = {}
_metrics_lock = threading.Lock()


def _metric(kind: str, name: str, doc: str, labels: tuple[str, ...] = (), **kw: Any) -> Any:
    with _metrics_lock:
        m = _metrics.get(name)
        if m is None:
            import prometheus_client as pc

            m = _metrics[name] = getattr(pc, kind)(name, doc, labels, **kw)
        return m


def sweep_done(job: str, checked: int, duration_s: float) -> None:
    _metric("Counter", "gonets_sweep_checked", "messages a sweep looked at",
            ("job",)).labels(job).inc(checked)
    _metric("Histogram", "gonets_sweep_duration_seconds", "how long a sweep took",
            ("job",), buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 120, 300)).labels(job).observe(
        duration_s)


def set_gauge(name: str, value: float) -> None:
    _metric("Gauge", f"gonets_{name}", name.replace("_", " ")).set(value)


class JobMetrics(Middleware):
    """What dramatiq's Prometheus middleware counts, for a worker run without dramatiq's CLI:
    jobs by queue, actor and outcome (ok, retry, error), and how long they took."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def before_process_message(self, broker: Any, message: Any) -> None:
        self._started[message.message_id] = time.monotonic()

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        t0 = self._started.pop(message.message_id, None)
        cause = ""
        if exception is None:
            outcome = "ok"
        else:
            import dramatiq

            outcome = "retry" if isinstance(exception, dramatiq.Retry) else "error"
            # why it is retried: SlowDown (throttled), RetryLater, OutcomeUnknown, AccountProblem
            inner = exception.__cause__ if outcome == "retry" else exception
            cause = type(inner).__name__ if inner is not None else ""
        labels = (message.queue_name, message.actor_name)
        _metric("Counter", "gonets_jobs", "jobs processed by outcome and cause",
                ("queue", "actor", "outcome", "cause")).labels(*labels, outcome, cause).inc()
        if t0 is not None:
            _metric("Histogram", "gonets_job_duration_seconds", "time spent in a job",
                    ("queue", "actor")).labels(*labels).observe(time.monotonic() - t0)

    after_skip_message = after_process_message


class StoreCollector:
    """Cluster-wide figures read from Redis at scrape time (served by the scheduler):
    status changes per account, status and error code; queue depth and the age of the oldest
    waiting job per queue; the sweep index; balances, alerts, pauses and rate limits."""

    def __init__(self, settings: Any) -> None:
        from core.store import redis_client

        self.settings = settings
        self.r = redis_client(settings.redis_url)
        self.ns = settings.namespace
        self.qns = f"{settings.namespace}-q"

    def describe(self) -> list[Any]:
        return []  # collected lazily: no Redis call at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from core.contracts import pool_queues

        r = self.r
        msgs = CounterMetricFamily("gonets_messages", "status changes of messages",
                                   labels=["account", "status", "code"])
        for field, n in r.hgetall(f"{self.ns}:stats").items():
            acct, status, code = (field.split("|") + ["", ""])[:3]
            msgs.add_metric([acct, status, code], float(n))
        yield msgs

        depth = GaugeMetricFamily("gonets_queue_depth", "jobs waiting", labels=["queue"])
        delayed = GaugeMetricFamily("gonets_queue_delayed", "jobs waiting for their time "
                                    "(retries, deferred)", labels=["queue"])
        oldest = GaugeMetricFamily("gonets_queue_oldest_age_seconds",
                                   "age of the oldest waiting job", labels=["queue"])
        limit = GaugeMetricFamily("gonets_account_rate_limit_per_s", "configured rate limit",
                                  labels=["account"])
        balance = GaugeMetricFamily("gonets_account_balance", "last balance read",
                                    labels=["account"])
        paused = GaugeMetricFamily("gonets_account_paused", "1 while the pool is paused",
                                   labels=["account"])
        alert = GaugeMetricFamily("gonets_account_alert", "1 while an alert is open",
                                  labels=["account", "alert"])
        now = time.time()
        for a in self.settings.accounts:
            if a.provider == "bepaid":
                continue
            limit.add_metric([a.name], a.limits.rate_per_s)
            b = r.get(f"{self.ns}:balance:{a.name}")
            if b is not None:
                balance.add_metric([a.name], float(b))
            paused.add_metric([a.name], 1.0 if r.exists(f"{self.ns}:pause:{a.name}") else 0.0)
            for key in r.scan_iter(f"{self.ns}:alert:{a.name}:*"):
                alert.add_metric([a.name, key.rsplit(":", 1)[1]], 1.0)
            for q in pool_queues(a.name):
                depth.add_metric([q], float(r.llen(f"{self.qns}:{q}")))
                delayed.add_metric([q], float(r.hlen(f"{self.qns}:{q}.DQ.msgs")))
                head = r.lindex(f"{self.qns}:{q}", 0)
                age = 0.0
                if head is not None:
                    raw = r.hget(f"{self.qns}:{q}.msgs", head)
                    if raw:
                        try:
                            age = max(now - json.loads(raw)["message_timestamp"] / 1000, 0.0)
                        except (ValueError, KeyError, TypeError):
                            pass
                oldest.add_metric([q], age)
        yield from (depth, delayed, oldest, limit, balance, paused, alert)

        idx = f"{self.ns}:nonfinal"
        yield GaugeMetricFamily("gonets_nonfinal_messages", "messages not final yet",
                                value=float(r.zcard(idx)))
        first = r.zrange(idx, 0, 0, withscores=True)
        due_age = max(now - first[0][1] / 1000, 0.0) if first else 0.0
        yield GaugeMetricFamily("gonets_status_check_overdue_seconds",
                                "how late the most overdue status check is", value=due_age)


def register_store_collector(settings: Any) -> StoreCollector:
    import prometheus_client as pc

    c = StoreCollector(settings)
    pc.REGISTRY.register(c)  # type: ignore[arg-type]
    return c


def serve_metrics(port: int) -> Any:
    """Serve ``/metrics`` on ``port`` (0: off). Returns the HTTP server (``shutdown()``)."""
    if not port:
        return None
    import prometheus_client as pc

    server, _ = pc.start_http_server(port)
    log.info("metrics on :%s/metrics", port)
    return server


# --- one call for every role ------------------------------------------------------------

def setup(role: str, *, account: str | None = None) -> None:
    """Logs and Sentry for a ``gonets`` process; tolerant of a broken configuration (the
    command itself reports it)."""
    from core.errors import ConfigError
    from core.settings import get_settings

    try:
        s = get_settings()
    except ConfigError:
        setup_logging()
        return
    setup_logging(s.log_format, s.log_level)
    init_sentry(s.sentry_dsn, role=role, environment=s.environment, release=s.release,
                account=account, providers={a.name: a.provider for a in s.accounts})
