"""Prometheus metrics: ``serve_metrics(port)`` serves ``/metrics`` (prometheus_client);
workers export their jobs (``JobMetrics``), the scheduler its sweeps and the cluster-wide
figures it reads from Redis at scrape time (``StoreCollector``: messages per account, status
and error code; queue depth and oldest waiting job; balances, alerts, pauses, rate limits)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from dramatiq.middleware import Middleware

from core.account_state import AccountState
from core.keys import Keys
from core.replies import scored, text_dict

log = logging.getLogger("gonets.observability")

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


def reconciled(account: str, action: str, n: int = 1) -> None:
    """Records the status sweep reconciled (``scheduler/sweeps.py``): ``requeued`` (their send
    job was gone: enqueued again), ``failed`` / ``unknown`` (their job was dead-lettered)."""
    _metric("Counter", "gonets_reconciled", "messages whose send job was gone, by what the "
            "sweep did", ("account", "action")).labels(account, action).inc(n)


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
        self.keys = Keys(settings.namespace)
        self.accounts = AccountState(self.r, settings.namespace)

    def describe(self) -> list[Any]:
        return []  # collected lazily: no Redis call at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from core.contracts import pool_queues

        r = self.r
        msgs = CounterMetricFamily("gonets_messages", "status changes of messages",
                                   labels=["account", "status", "code"])
        for field, n in text_dict(r.hgetall(self.keys.stats())).items():
            acct, status, code = ([*field.split("|"), "", ""])[:3]
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
        slots = CounterMetricFamily("gonets_pacing_slots", "pacing slots (in SMS parts) booked, "
                                    "and forfeited: given up by a writer that came too late "
                                    "(workers/traffic/pacing.py)", labels=["account", "outcome"])
        now = time.time()
        for a in self.settings.sms_accounts():
            limit.add_metric([a.name], a.limits.rate_per_s)
            b = self.accounts.balance(a.name)
            if b is not None:
                balance.add_metric([a.name], b)
            paused.add_metric([a.name], 1.0 if self.accounts.paused(a.name) else 0.0)
            for kind in self.accounts.open_alerts(a.name):
                alert.add_metric([a.name, kind], 1.0)
            counts = r.hgetall(self.keys.pace_counts(a.name))
            for outcome in ("booked", "forfeited"):
                slots.add_metric([a.name, outcome], float(counts.get(outcome) or 0))
            for q in pool_queues(a.name):
                depth.add_metric([q], float(r.llen(self.keys.queue(q))))
                delayed.add_metric([q], float(r.hlen(self.keys.delayed_messages(q))))
                head = r.lindex(self.keys.queue(q), 0)
                age = 0.0
                if head is not None:
                    raw = r.hget(self.keys.queue_messages(q), head)
                    if raw:
                        try:
                            age = max(now - json.loads(raw)["message_timestamp"] / 1000, 0.0)
                        except (ValueError, KeyError, TypeError):
                            pass
                oldest.add_metric([q], age)
        yield from (depth, delayed, oldest, limit, balance, paused, alert, slots)

        from core.routing import failovers

        moved = CounterMetricFamily("gonets_route_failovers", "messages moved to the next "
                                    "account of their route (core/routing.py), by the account "
                                    "they left and why", labels=["route", "account", "reason"])
        for route_name, from_acct, why, count in failovers(r, self.keys):
            moved.add_metric([route_name, from_acct, why], float(count))
        yield moved

        idx = self.keys.nonfinal()
        yield GaugeMetricFamily("gonets_nonfinal_messages", "messages not final yet",
                                value=float(r.zcard(idx)))
        first = scored(r.zrange(idx, 0, 0, withscores=True))
        due_age = max(now - first[0][1] / 1000, 0.0) if first else 0.0
        yield GaugeMetricFamily("gonets_status_check_overdue_seconds",
                                "how late the most overdue status check is", value=due_age)


def register_store_collector(settings: Any) -> StoreCollector:
    import prometheus_client as pc

    c = StoreCollector(settings)
    pc.REGISTRY.register(c)
    return c


def serve_metrics(port: int) -> Any:
    """Serve ``/metrics`` on ``port`` (0: off). Returns the HTTP server (``shutdown()``)."""
    if not port:
        return None
    import prometheus_client as pc

    server, _ = pc.start_http_server(port)
    log.info("metrics on :%s/metrics", port)
    return server

