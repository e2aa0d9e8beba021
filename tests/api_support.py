"""Fixtures of the HTTP API tests: the app under uvicorn on a free port (in a thread), tokens,
a local callback receiver.  Imported by tests/test_api*.py."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import uvicorn

from core.settings import Settings, load_settings
from producers.http.app import create_app
from producers.http.auth import NewToken, Tokens

CALLBACK_SECRET = "smsc-hook-secret-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiServer:
    """uvicorn serving ``create_app(settings)`` in a thread, on a free port."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                             access_log=False, lifespan="on")
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


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
def tokens(store: Any) -> Tokens:
    return Tokens(store.r, store.ns)


@pytest.fixture
def token(tokens: Tokens) -> NewToken:
    return tokens.create("shop", "send,read")


@pytest.fixture
def client(api: ApiServer, token: NewToken) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=30,
                      headers={"Authorization": f"Bearer {token.token}"}) as c:
        yield c


class Receiver:
    """A local HTTP server that records callbacks; ``fail_first`` answers 500 that many times."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.failures_left = fail_first
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with outer.lock:
                    if outer.failures_left > 0:
                        outer.failures_left -= 1
                        code = 500
                    else:
                        code = 200
                        outer.received.append({"body": body, "json": json.loads(body),
                                               "headers": dict(self.headers)})
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def statuses(self, msg_id: str) -> list[str]:
        with self.lock:
            return [r["json"]["status"] for r in self.received if r["json"]["id"] == msg_id]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def wait_for(pred: Any, timeout_s: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
