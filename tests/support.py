"""What the tests share besides fixtures (those live in ``tests/conftest.py``): the one poll-until
helper, the real processes and servers the fixtures start (a worker, the HTTP API under
uvicorn, an ASGI app on a given socket, a callback receiver), config writers and the sandbox
control call."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from core.settings import Settings
from core.store import Store
from sandbox._http import shut_down

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def poll_until(cond: Callable[[], T], timeout_s: float = 30, what: str = "condition",
               every_s: float = 0.05) -> T:
    """Call ``cond`` until it returns something truthy, and return that; fail the test naming
    ``what`` once ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


def together(*starts: Callable[[], T]) -> list[T]:
    """Call every ``start`` at once, each from a thread of its own, and return what each
    returned, in order: worker processes that take a second or more each to boot on a busy
    host boot side by side (``together(lambda: start_worker("mts"), ...)``)."""
    with ThreadPoolExecutor(len(starts)) as pool:
        return list(pool.map(lambda start: start(), starts))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_socket() -> socket.socket:
    """A bound (not yet listening) socket on a free port; the caller closes it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s


def control(url: str, **body: Any) -> None:
    """POST a sandbox's ``/_sandbox/control`` (every sandbox has one)."""
    httpx.post(f"{url}/_sandbox/control", json=body).raise_for_status()


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
        for i, st in zip(pending, pipe.execute(), strict=True):
            if st and Status(st).final:
                final[i] = st
        if len(final) == len(ids):
            return final
        time.sleep(0.05)
    missing = [i for i in ids if i not in final]
    raise AssertionError(f"{len(missing)} of {len(ids)} messages not final after {timeout_s}s; "
                         f"e.g. {store.find(missing[0])}")


class WorkerProcess:
    """``gonets worker`` as a real process; started when its log says ``ready``."""

    def __init__(self, env: dict[str, str], pool: str, threads: int, log: Path,
                 args: tuple[str, ...] = ()) -> None:
        self.log = log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "--pool", pool, "--threads",
             str(threads), *args],
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


# --- the HTTP API ---------------------------------------------------------------------------

CALLBACK_SECRET = "smsc-hook-secret-123"


class ApiServer:
    """uvicorn serving ``create_app(settings)`` in a thread, on a free port."""

    def __init__(self, settings: Settings) -> None:
        from producers.http.app import create_app
        from producers.http.wire import Protocol

        self.app = create_app(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # the HTTP protocol gonets api serves with
        cfg = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                             access_log=False, lifespan="on", http=Protocol)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        poll_until(lambda: self.server.started, 10, "uvicorn to start", every_s=0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@contextlib.contextmanager
def serve_asgi(app: Any, sock: socket.socket) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on ``sock`` (a real socket) from a thread."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    sock.listen(64)
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    poll_until(lambda: server.started, 10, "the ASGI server to start", every_s=0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        t.join(10)


class Receiver:
    """A local HTTP server that records callbacks; ``fail_first`` answers 500 that many times."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.failures_left = fail_first
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
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
        shut_down(self.server)
        self.server.server_close()


# --- MTS Money (bePaid) -----------------------------------------------------------------------

BEPAID_SHOP_ID, BEPAID_SECRET = "361", "sandbox-secret-key"


def bepaid_config(path: Path, bepaid_url: str, hook_url: str, *, api_version: int = 2) -> Path:
    path.write_text(f"""
default_region = "BY"

[accounts.bepaid]
provider = "bepaid"
base_urls = ["{bepaid_url}"]
credentials = {{ shop_id = "env:TEST_BEPAID_SHOP_ID", secret_key = "env:TEST_BEPAID_SECRET" }}
timeout_s = 1

[accounts.bepaid.options]
test = true
api_version = {api_version}
return_url = "https://shop.example/back"
notification_url = "{hook_url}/v1/webhooks/bepaid/bepaid"
pending_lookup_after_s = 0.5
max_lookup_interval_s = 1
""", encoding="utf-8")
    return path


def wait_status(ps: Any, ids: list[str], want: set[str] | None = None,
                timeout_s: float = 30) -> dict[str, str]:
    """Wait until every payment's status is in ``want`` (default: final); returns id -> status."""
    from core.payments import PaymentStatus

    wanted = want if want is not None else {s.value for s in PaymentStatus if s.final}
    got: dict[str, str] = {}

    def reached() -> bool:
        got.update({i: ps.payment(i)["status"] for i in ids})
        return all(s in wanted for s in got.values())

    try:
        poll_until(reached, timeout_s, f"payments to reach {wanted}", every_s=0.1)
    except AssertionError:
        raise AssertionError(f"payments did not reach {wanted}: {got}") from None
    return dict(got)
