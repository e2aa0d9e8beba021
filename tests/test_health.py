"""The worker pod's health endpoint: what Kubernetes' probes see.

In-process: the check registry and the probe semantics.  Then a real ``gonets worker
--health-port`` process against a Redis server of the test's own, which the test stops and
starts again: the probes must fail while Redis is gone and recover when it is back.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.embedded_redis import RedisServer, free_port
from tests.support import shut_down
from workers import health

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server() -> Iterator[str]:
    health.clear_checks()
    srv = health.HealthServer(0, host="127.0.0.1").start()
    yield f"http://127.0.0.1:{srv.port}"
    shut_down(srv.httpd)  # at once, not after its 0.5 s poll
    srv.stop()
    health.clear_checks()


def test_healthy_when_every_check_passes(server: str) -> None:
    health.register_check("always", lambda: None)
    health.register_check("true", lambda: True)
    for path in ("/healthz", "/readyz"):
        r = httpx.get(server + path)
        assert r.status_code == 200
        assert r.json() == {"status": "ok", "checks": {"always": "ok", "true": "ok"}}


def test_a_failing_check_fails_both_probes_and_says_why(server: str) -> None:
    health.register_check("redis", lambda: None)
    health.register_check("smpp", lambda: "session dead: no bind since 12:00")
    for path in ("/healthz", "/readyz"):
        r = httpx.get(server + path)
        assert r.status_code == 503
        assert r.json()["checks"] == {"redis": "ok", "smpp": "session dead: no bind since 12:00"}
    health.unregister_check("smpp")
    assert httpx.get(server + "/healthz").status_code == 200


def test_raising_false_and_hanging_checks_are_failures_not_crashes(
        server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "CHECK_TIMEOUT_S", 0.3)
    release = threading.Event()

    def boom() -> None:
        raise ConnectionError("connection refused")

    health.register_check("raises", boom)
    health.register_check("false", lambda: False)
    health.register_check("hangs", lambda: release.wait(5))
    try:
        t0 = time.monotonic()
        r = httpx.get(server + "/healthz", timeout=5)
        assert time.monotonic() - t0 < 2  # the probe gets an answer before its own timeout
        assert r.status_code == 503
        checks = r.json()["checks"]
        assert checks["raises"] == "ConnectionError: connection refused"
        assert checks["false"] == "failed"
        assert checks["hangs"].startswith("no answer within")
    finally:
        release.set()
    # the server still answers afterwards
    health.clear_checks()
    assert httpx.get(server + "/readyz").status_code == 200


def test_readiness_only_check_and_draining_leave_liveness_alone(server: str) -> None:
    health.register_check("warming", lambda: "cache cold", liveness=False)
    assert httpx.get(server + "/healthz").status_code == 200
    assert httpx.get(server + "/readyz").status_code == 503
    health.unregister_check("warming")
    health.set_draining()
    ready = httpx.get(server + "/readyz")
    assert ready.status_code == 503 and ready.json()["draining"] is True
    assert httpx.get(server + "/healthz").status_code == 200  # never restarted mid-drain


def test_unknown_path_is_404(server: str) -> None:
    assert httpx.get(server + "/metrics").status_code == 404


def _wait_status(url: str, want: int, timeout_s: float = 15) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=5)
            if last.status_code == want:
                return last
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {want}; last: "
                         f"{last.status_code if last else None} {last.text if last else ''}")


ROLES = {
    "worker": (["worker", "--pool", "smsc", "--threads", "2"], {"dramatiq": "ok", "redis": "ok"}),
    "callbacks": (["callbacks", "--threads", "2"], {"redis": "ok"}),
    "scheduler": (["scheduler"], {"redis": "ok"}),
}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_role_probes_follow_its_redis_connection(gonets_env: dict[str, str], tmp_path: Path,
                                                 role: str) -> None:
    args, healthy = ROLES[role]
    redis_srv = RedisServer(tmp_path / "redis").start()
    port = free_port()
    env = dict(gonets_env, GONETS_REDIS_URL=redis_srv.url)
    log = tmp_path / f"{role}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args, "--health-port", str(port)],
            env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        ok = _wait_status(base + "/healthz", 200, 30)
        assert ok.json()["checks"] == healthy
        assert httpx.get(base + "/readyz").status_code == 200

        redis_srv.stop()  # the pod's Redis is gone
        dead = _wait_status(base + "/healthz", 503)
        assert dead.json()["checks"]["redis"] != "ok"
        assert httpx.get(base + "/readyz").status_code == 503

        redis_srv.start()  # same port: the process recovers without a restart
        _wait_status(base + "/readyz", 200)
        assert proc.poll() is None, log.read_text(errors="replace")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        redis_srv.stop()


def test_supervisor_probes_fail_when_a_worker_process_dies(gonets_env: dict[str, str],
                                                            tmp_path: Path) -> None:
    """``--processes 2``: the supervisor answers the probes for its children."""
    import psutil

    port = free_port()
    log = tmp_path / "supervisor.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "--pool", "smsc", "--processes", "2",
             "--threads", "1", "--health-port", str(port)],
            env=gonets_env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        ok = _wait_status(base + "/healthz", 200, 30)
        assert ok.json()["checks"] == {"children": "ok", "redis": "ok"}
        children = psutil.Process(proc.pid).children()
        assert len(children) == 2
        children[0].kill()
        dead = _wait_status(base + "/healthz", 503)
        assert dead.json()["checks"]["children"] == "a worker process has exited"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 1, "a killed worker process makes the pool exit non-zero"
    finally:
        for c in psutil.Process(proc.pid).children() if proc.poll() is None else []:
            c.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
