"""Sentry for every role: errors and account alerts (events), Crons check-ins, performance
traces (see ``core.observability.tracing``) and release health (one session per process).

Events are unexpected exceptions and account alerts; an alert (a log record carrying
``gonets_alert``, written once per incident by the workers) is grouped per account and alert by
its fingerprint.  Retries after throttling, requeues and deferrals log at INFO/WARNING and
never become events.  Stack locals and request bodies are not sent; everything that is sent is
scrubbed first (``core.observability.scrub``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from core.observability.scrub import (
    _state,
    before_breadcrumb,
    before_send,
    before_send_transaction,
)

if TYPE_CHECKING:  # sentry_sdk itself is imported only where Sentry is in use
    from sentry_sdk.types import MonitorConfig


def init_sentry(dsn: str | None, *, role: str, environment: str = "development",
                release: str | None = None, account: str | None = None,
                providers: dict[str, str] | None = None, traces_sample_rate: float = 0.0,
                session: bool = False, **options: Any) -> bool:
    """Initialise sentry-sdk (before any broker is built). False when no DSN is set.

    ``traces_sample_rate`` 0 leaves tracing off; above 0 every job and API request is a
    transaction, sampled at that rate except that a failed job is always kept.  ``session``
    starts a release-health session for this process (``end_session`` closes it)."""
    _state["providers"] = dict(providers or {})
    _state["role"] = role
    _state["traces_rate"] = float(traces_sample_rate or 0.0)
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.dramatiq import DramatiqIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger

    from core.observability import tracing

    if _state["traces_rate"] > 0:
        options.setdefault("traces_sampler", tracing.traces_sampler)
        # a transaction per job: sentry-sdk's queue of 100 envelopes is about a second of a
        # busy worker, and a loaded host can hold the sending thread back longer (seen in
        # make bench: a few dozen of 5,000 lost); 500 envelopes are a few MB at most
        options.setdefault("transport_queue_size", 500)
    # the trace goes on through dramatiq messages, never in headers to the providers
    options.setdefault("trace_propagation_targets", [])
    from sentry_sdk.integrations.redis import RedisIntegration
    from sentry_sdk.integrations.stdlib import StdlibIntegration

    from core.observability.transport import KeepAliveTransport

    # sentry-sdk's Redis integration wraps every command of every thread (dramatiq's consumers
    # poll Redis all the time) and a send job runs a dozen: its spans cost more than the job's
    # own work.  The Lua scripts, where a job's Redis time goes, get spans of their own.
    # Its stdlib integration wraps http.client, which only sentry-sdk's own transport uses
    # here (the providers' calls go through httpx): a cost on every envelope for nothing.
    options.setdefault("disabled_integrations", [RedisIntegration(), StdlibIntegration()])
    options.setdefault("transport", KeepAliveTransport)
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
        before_send_transaction=before_send_transaction,
        before_breadcrumb=before_breadcrumb,
        **options,
    )
    if not options.get("debug"):
        # sentry-sdk sets its logger to DEBUG and filters the records out unless ``debug``:
        # a record made and dropped several times per transaction
        from sentry_sdk.utils import logger as sdk_logger

        sdk_logger.setLevel(logging.INFO)
    # dramatiq logs an actor's unhandled exception and its integration captures it too:
    # keep the integration's event (it has the message context), not a second one
    ignore_logger("dramatiq.worker.WorkerThread")
    sentry_sdk.set_tag("role", role)
    if account:
        sentry_sdk.set_tag("account", account)
        if account in _state["providers"]:
            sentry_sdk.set_tag("provider", _state["providers"][account])
    _state["sentry"] = True
    if _state["traces_rate"] > 0:
        from core.observability import sdk

        sdk.install()
        tracing.instrument_scripts()
        from sentry_sdk.scope import add_global_event_processor, global_event_processors

        if tracing.prepare_transaction not in global_event_processors:
            add_global_event_processor(tracing.prepare_transaction)
    if session:
        start_session()
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


# --- release health ---------------------------------------------------------------------

def start_session() -> None:
    """This process's run as one release-health session (``application`` mode): a role that
    crashes or exits abnormally marks its release unhealthy in Sentry's release view."""
    if not sentry_active():
        return
    import sentry_sdk

    sentry_sdk.get_isolation_scope().start_session(session_mode="application")
    if not _state.get("session_atexit"):
        # an unhandled exception marks the session crashed (sentry-sdk's excepthook event);
        # this closes it at exit, before sentry-sdk's own atexit flush
        atexit.register(end_session)
        _state["session_atexit"] = True
        _close_on_sigterm()
    _state["session"] = True


def _close_on_sigterm() -> None:
    """A role stopped by SIGTERM whose server re-raises it after its graceful shutdown
    (uvicorn does) dies of the signal, skipping atexit: close the session first, then die of
    it as before.  Roles that handle SIGTERM themselves replace this handler."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_term(signum: int, frame: Any) -> None:
        end_session()
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, on_term)


def end_session(status: str = "exited") -> None:
    """Close the process's session: ``exited`` (a clean stop), ``abnormal`` (a non-zero exit)
    or ``crashed`` (an unhandled exception); then send it."""
    if not _state.get("session") or not sentry_active():
        return
    import sentry_sdk

    scope = sentry_sdk.get_isolation_scope()
    session = scope._session
    if session is not None and status != "exited":
        session.update(status=status)  # type: ignore[arg-type]
    scope.end_session()
    _state["session"] = False
    flush(2.0)  # an unreachable Sentry delays a stop by 2 s at most


@contextlib.contextmanager
def cron_checkin(job: str, schedule: dict[str, Any], *, margin_min: int = 5,
                 max_runtime_min: int = 30) -> Iterator[None]:
    """Sentry Crons check-ins around one scheduled run (``in_progress``, ``ok``/``error``);
    with tracing on, the run is also a transaction named by the job (the jobs it enqueues
    continue its trace), for the sweep-duration chart."""
    if not sentry_active():
        yield
        return
    if _state["traces_rate"]:
        import sentry_sdk

        from core.observability.tracing import SWEEP_OP

        with sentry_sdk.start_transaction(name=job, op=SWEEP_OP, source="task"), \
                _checkins(job, schedule, margin_min, max_runtime_min):
            yield
        return
    with _checkins(job, schedule, margin_min, max_runtime_min):
        yield


@contextlib.contextmanager
def _checkins(job: str, schedule: dict[str, Any], margin_min: int,
              max_runtime_min: int) -> Iterator[None]:
    from sentry_sdk.crons import capture_checkin
    from sentry_sdk.crons.consts import MonitorStatus

    slug = f"gonets-{job}".replace("_", "-")
    # the job table's schedule is sentry's {"type", "value", "unit"} (scheduler/service.py)
    config = cast("MonitorConfig", {"schedule": schedule, "checkin_margin": margin_min,
                                    "max_runtime": max_runtime_min, "timezone": "UTC"})
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

