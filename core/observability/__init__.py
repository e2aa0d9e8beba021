"""Operations visibility for every role: Sentry, structured logs, Prometheus metrics.

``setup(role)`` runs first thing in every ``gonets`` process, before any broker exists
(sentry-sdk's dramatiq integration patches ``Broker.__init__``).  One module per concern:

* ``scrub``: what may leave the process (phones masked; texts, credentials, tokens dropped).
* ``sentry``: errors, account alerts (one issue per account incident), Crons check-ins,
  release health (one session per process, from ``GONETS_RELEASE``/``GONETS_ENVIRONMENT``).
* ``tracing``: ``GONETS_SENTRY_TRACES_SAMPLE_RATE``; job and API transactions in one trace,
  their tags, spans and queue wait; failed jobs always kept.
* ``logs``: one JSON object per line, plain text in a terminal.
* ``metrics``: ``/metrics`` for Prometheus: jobs, sweeps, cluster-wide figures from Redis.
"""

from __future__ import annotations

from core.observability.logs import JsonFormatter, TextFormatter, setup_logging
from core.observability.metrics import (
    JobMetrics,
    StoreCollector,
    register_store_collector,
    serve_metrics,
    set_gauge,
    sweep_done,
)
from core.observability.scrub import (
    FILTERED,
    KEEP_KEYS,
    PHONE_KEYS,
    SECRET_KEYS,
    _state,
    before_breadcrumb,
    before_send,
    before_send_transaction,
    scrub,
)
from core.observability.sentry import (
    cron_checkin,
    end_session,
    flush,
    init_sentry,
    sentry_active,
    start_session,
)
from core.observability.tracing import JobTags, KeepTrace, span

__all__ = [
    "FILTERED",
    "KEEP_KEYS",
    "PHONE_KEYS",
    "SECRET_KEYS",
    "JobMetrics",
    "JobTags",
    "JsonFormatter",
    "KeepTrace",
    "StoreCollector",
    "TextFormatter",
    "_state",
    "before_breadcrumb",
    "before_send",
    "before_send_transaction",
    "cron_checkin",
    "end_session",
    "flush",
    "init_sentry",
    "register_store_collector",
    "scrub",
    "sentry_active",
    "serve_metrics",
    "set_gauge",
    "setup",
    "setup_logging",
    "span",
    "start_session",
    "sweep_done",
]


def setup(role: str, *, account: str | None = None) -> None:
    """Logs and Sentry for a ``gonets`` process; tolerant of a broken configuration (the
    command itself reports it).  Long-running roles get a release-health session."""
    from core.errors import ConfigError
    from core.settings import get_settings

    try:
        s = get_settings()
    except ConfigError:
        setup_logging()
        return
    setup_logging(s.log_format, s.log_level)
    init_sentry(s.sentry_dsn, role=role, environment=s.environment, release=s.release,
                account=account, providers={a.name: a.provider for a in s.accounts},
                traces_sample_rate=s.sentry_traces_sample_rate,
                session=role in ROLES)


#: the long-running roles: each run is a release-health session
ROLES = frozenset({"worker", "scheduler", "api", "callbacks", "run"})
