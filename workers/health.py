"""The health endpoint of a worker pod: ``gonets worker --pool X --health-port N``.

Two paths, both JSON, 200 when healthy and 503 when not:

* ``GET /healthz`` (Kubernetes liveness): every check registered with ``liveness=True``
  passes.  A pod that fails it for a while is restarted.
* ``GET /readyz`` (readiness): every check passes and the worker is not draining after
  SIGTERM.

A check is any callable registered with :func:`register_check`; it returns ``None`` (or
``True``) when healthy and returns ``False``, returns a reason string, or raises when not.
The worker registers ``redis`` (a PING on a connection of its own, with a short timeout: the
pod cannot reach Redis) and ``dramatiq`` (the worker's consumer and worker threads are alive);
other parts add theirs, e.g. the SMPP session registers "session dead"::

    from workers import health
    health.register_check("smpp", lambda: None if session.bound else "not bound")

A check that hangs is cut off after ``CHECK_TIMEOUT_S`` and counts as failed, so a probe always
gets an answer before its own timeout.  The server is the standard library's threaded HTTP
server on a daemon thread: nothing to install, nothing that can block a worker thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("gonets.health")

#: a check returns None/True (healthy), or False / a reason string / raises (unhealthy)
Check = Callable[[], object]

#: longest a single check may take before it counts as failed
CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class _Registered:
    fn: Check
    liveness: bool


_lock = threading.Lock()
_checks: dict[str, _Registered] = {}
_draining = threading.Event()
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gonets-health")


def register_check(name: str, fn: Check, *, liveness: bool = True) -> None:
    """Add (or replace) the check ``name``.

    ``liveness=False`` makes it a readiness-only check: failing it takes the pod out of
    rotation without restarting it.
    """
    with _lock:
        _checks[name] = _Registered(fn, liveness)


def unregister_check(name: str) -> None:
    with _lock:
        _checks.pop(name, None)


def clear_checks() -> None:
    """Forget every check and the draining flag (tests; a fresh worker process)."""
    with _lock:
        _checks.clear()
    _draining.clear()


def set_draining() -> None:
    """SIGTERM received: readiness fails from now on, liveness does not (the pod is busy
    finishing in-flight work and must not be restarted for it)."""
    _draining.set()


def is_draining() -> bool:
    return _draining.is_set()


def _run_one(fn: Check) -> str | None:
    try:
        result = _pool.submit(fn).result(timeout=CHECK_TIMEOUT_S)
    except FutureTimeout:
        return f"no answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as exc:  # a failing check is a result, never a crash of the server
        return f"{type(exc).__name__}: {exc}"[:300]
    if result is None or result is True:
        return None
    if result is False:
        return "failed"
    return str(result)[:300]


def evaluate(*, readiness: bool) -> tuple[bool, dict[str, Any]]:
    """Run the checks one probe needs: ``(healthy, body)``."""
    with _lock:
        selected = {n: c for n, c in _checks.items() if readiness or c.liveness}
    results = {name: _run_one(c.fn) for name, c in sorted(selected.items())}
    body: dict[str, Any] = {"checks": {n: (r or "ok") for n, r in results.items()}}
    healthy = all(r is None for r in results.values())
    if readiness and _draining.is_set():
        body["draining"] = True
        healthy = False
    body["status"] = "ok" if healthy else "fail"
    return healthy, body


class _Handler(BaseHTTPRequestHandler):
    server_version = "gonets-health"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            ok, body = evaluate(readiness=False)
        elif path == "/readyz":
            ok, body = evaluate(readiness=True)
        else:
            self._send(404, {"error": "unknown path; use /healthz or /readyz"})
            return
        if not ok:
            log.warning("health %s: %s", path, body)
        self._send(200 if ok else 503, body)

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: quiet
        pass


class HealthServer:
    """The HTTP server on its own daemon thread."""

    def __init__(self, port: int, host: str = "0.0.0.0") -> None:
        self.httpd = ThreadingHTTPServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        kwargs={"poll_interval": 0.5},
                                        name="gonets-health-http", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health endpoint on port %s (/healthz, /readyz)", self.port)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def redis_check(url: str, timeout_s: float = 1.5) -> Check:
    """A PING on a connection of the check's own, with short timeouts, so a dead or
    unreachable Redis fails the check instead of hanging the probe."""
    from core.redis_conn import connect

    client = connect(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                     health_check_interval=0, retry_on_timeout=False)

    def check() -> object:
        return bool(client.ping()) or "no PONG"

    return check


def dramatiq_check(worker: Any) -> Check:
    """The dramatiq worker's consumer threads (one per queue) and worker threads are alive,
    and no consumer is failing (``workers/consumers.py``: a consumer that hit a Redis error
    says so until it reaches Redis again; one that never does keeps the pod unhealthy, and
    Kubernetes restarts it)."""

    def check() -> object:
        if _draining.is_set():  # threads end one by one while draining; that is expected
            return None
        consumers = list(getattr(worker, "consumers", {}).values())
        threads = list(getattr(worker, "workers", []))
        if not consumers or not threads:
            return "worker not running"
        dead = [t.name for t in threads if not t.is_alive()]
        problems = worker.problems() if hasattr(worker, "problems") else {
            t.queue_name: "thread dead" for t in consumers if not t.is_alive()}
        why = [f"consumer {q}: {p}" for q, p in sorted(problems.items())]
        if dead:
            why.append(f"dead threads: {', '.join(dead)}")
        return "; ".join(why) if why else None

    return check
