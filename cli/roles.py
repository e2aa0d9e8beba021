"""The long-running roles: ``gonets worker``, ``scheduler``, ``run``, ``api``, ``callbacks``.

Each serves until it is told to stop (SIGTERM or Ctrl-C), and reads its settings from the
environment that ``gonets run`` or Kubernetes gives it (never the CLI's run file)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from cli.args import debugging

Handler = Callable[[argparse.Namespace], int]


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Handler]:  # type: ignore[type-arg]
    p = sub.add_parser("worker", help="run the worker pool of one account")
    p.add_argument("--pool", required=True, metavar="ACCOUNT", help="account name")
    p.add_argument("--threads", type=int, default=8, help="jobs in flight at once (default 8)")
    p.add_argument("--processes", type=int, default=1,
                   help="worker processes, each with --threads (default 1)")
    p.add_argument("--health-port", type=int, metavar="PORT",
                   help="serve /healthz (liveness) and /readyz (readiness) on this port")

    p = sub.add_parser("scheduler", help="run the scheduler: status sweeps, pending payments, "
                                         "balance checks (one leader at a time)")
    p.add_argument("--health-port", type=int, metavar="PORT",
                   help="serve /healthz and /readyz on this port")

    p = sub.add_parser("run", help="run everything locally: Redis, sandboxes, workers, API")
    p.add_argument("--threads", type=int, default=8, help="threads of each worker (default 8)")

    p = sub.add_parser("api", help="serve the HTTP API (uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")

    p = sub.add_parser("callbacks", help="deliver status callbacks (webhooks out)")
    p.add_argument("--threads", type=int, default=16, help="deliveries at once (default 16)")
    p.add_argument("--health-port", type=int, metavar="PORT",
                   help="serve /healthz and /readyz on this port")
    return {"worker": cmd_worker, "scheduler": cmd_scheduler, "run": cmd_run, "api": cmd_api,
            "callbacks": cmd_callbacks}


def cmd_worker(a: argparse.Namespace) -> int:
    import logging

    from workers.pool import run_pool

    if not debugging(a) and logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # a retry is the expected wait of a paused account or a throttled provider; one line
        # per message per retry drowns the terminal (the outcome is logged by our actors)
        # (dramatiq names the logger after the middleware's class: ours is RedisRetries)
        for name in ("Retries", "RedisRetries"):
            logging.getLogger(f"dramatiq.middleware.retries.{name}").setLevel(logging.WARNING)
    if a.processes == 1:
        from core.observability import serve_metrics
        from core.settings import get_settings

        try:
            serve_metrics(get_settings().metrics_port)
        except OSError as exc:  # several workers on one host share the setting
            print(f"gonets worker: no /metrics: {exc}", file=sys.stderr)
    return run_pool(a.pool, threads=a.threads, processes=a.processes, health_port=a.health_port)


def cmd_scheduler(a: argparse.Namespace) -> int:
    from core.settings import get_settings
    from scheduler.service import run

    _serve_health(a.health_port, get_settings().redis_url)
    return run()


def cmd_run(a: argparse.Namespace) -> int:
    from cli.run import run

    return run(threads=a.threads)


def cmd_api(a: argparse.Namespace) -> int:
    from producers.http.serve import serve

    return serve(a.host, a.port, workers=a.workers)


def cmd_callbacks(a: argparse.Namespace) -> int:
    from core.settings import get_settings
    from producers.http.callbacks import run_dispatcher

    settings = get_settings()
    _serve_health(a.health_port, settings.redis_url)
    return run_dispatcher(settings, threads=a.threads)


def _serve_health(port: int | None, redis_url: str) -> None:
    """``--health-port`` of a role without an HTTP server of its own: /healthz and /readyz
    (workers.health) fail while the process cannot reach Redis."""
    if port is None:
        return
    from workers import health

    health.register_check("redis", health.redis_check(redis_url))
    health.HealthServer(port).start()
