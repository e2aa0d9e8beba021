"""A small threaded HTTP server that listens on several ports and shares one state object.

Used by every HTTP sandbox.  ``Listener index 0`` is the primary server; more listeners are
fallback servers with the same data (as SMSC's www2, www3... are).
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: SO_TIMESTAMPNS (Linux): the kernel stamps each received segment with its arrival time
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_arrival = threading.local()


def arrival_time(sock: socket.socket) -> float:
    """When the next bytes on ``sock`` reached this host (the kernel's receive timestamp of
    them, waiting for them if none are there yet), or now where the kernel cannot say (TLS,
    not Linux). A sandbox is the provider: its receive time is the arrival of the bytes, not
    when a thread of a busy host got round to reading them."""
    if not hasattr(sock, "recvmsg") or isinstance(sock, ssl.SSLSocket):
        return time.time()
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        _, anc, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(16), socket.MSG_PEEK)
    except (OSError, ValueError):
        return time.time()
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
            sec, nsec = struct.unpack("qq", raw[:16])
            return float(sec) + nsec / 1e9
    return time.time()


class Request:
    def __init__(self, handler: BaseHTTPRequestHandler, listener: int, body: bytes) -> None:
        self.method = handler.command
        self.path = urlsplit(handler.path).path
        self.query_string = urlsplit(handler.path).query
        self.headers = {k.lower(): v for k, v in handler.headers.items()}
        self.body = body
        self.listener = listener

    def form(self, encoding: str = "utf-8") -> dict[str, str]:
        """Query string and (for form posts) body, merged; the last value of a key wins."""
        out: dict[str, str] = {}
        for qs in (self.query_string,
                   self.body.decode("latin-1") if self.headers.get("content-type", "").startswith(
                       "application/x-www-form-urlencoded") else ""):
            for k, vals in parse_qs(qs, keep_blank_values=True, encoding=encoding,
                                    errors="replace").items():
                out[k] = vals[-1]
        return out

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class Response:
    def __init__(self, status: int = 200, body: bytes | str = b"",
                 content_type: str = "text/plain; charset=utf-8",
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.content_type = content_type
        self.headers = headers or {}

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(data, ensure_ascii=False),
                   "application/json; charset=utf-8")


#: what the app returns to have the listener hang up without answering (a dead server)
DROP = object()

App = Callable[[Request], "Response | object"]


def shut_down(*servers: socketserver.BaseServer) -> None:
    """``shutdown()`` several ``socketserver`` servers without sitting out each one's poll
    interval (0.2-0.5 s) in turn: all are asked at once and each one's ``select`` is woken by a
    connection, so that it sees the request at once. The caller closes the sockets."""
    asked = [threading.Thread(target=s.shutdown, daemon=True) for s in servers]
    for t in asked:
        t.start()
    for s, t in zip(servers, asked, strict=True):
        deadline = time.monotonic() + 10
        while t.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(s.server_address[:2], timeout=1).close()
            t.join(0.01)


class MultiPortServer:
    """Serve ``app`` on one or more ports of ``host`` from daemon threads."""

    def __init__(self, app: App, host: str = "127.0.0.1", ports: list[int] | None = None) -> None:
        self.app = app
        self.host = host
        self.requested_ports = ports or [0]
        self.servers: list[ThreadingHTTPServer] = []
        self.threads: list[threading.Thread] = []

    @property
    def ports(self) -> list[int]:
        return [s.server_address[1] for s in self.servers]

    def urls(self) -> list[str]:
        return [f"http://{self.host}:{p}" for p in self.ports]

    def start(self) -> MultiPortServer:
        for index, port in enumerate(self.requested_ports):
            handler = _handler_for(self.app, index)
            srv = ThreadingHTTPServer((self.host, port), handler)
            srv.daemon_threads = True
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                 name=f"sandbox-{port}", daemon=True)
            t.start()
            self.servers.append(srv)
            self.threads.append(t)
        return self

    def stop(self) -> None:
        shut_down(*self.servers)  # all at once, each woken: milliseconds, not 0.2 s a port
        for srv in self.servers:
            srv.server_close()
        self.servers.clear()

    def __enter__(self) -> MultiPortServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(app: App, index: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "GonetsSandbox/1"
        # headers and body are two writes: with Nagle on, the body waited for the client's
        # delayed ACK (~40 ms) on every keep-alive request (the sandbox answered ~180/s)
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def handle_one_request(self) -> None:
            # the arrival of the request's first bytes, logged as its "at" (RequestLog.add)
            _arrival.at = arrival_time(self.connection)
            super().handle_one_request()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                resp = app(Request(self, index, body))
            except Exception as exc:  # a sandbox bug must show up as a 500, not a hang
                resp = Response(500, f"sandbox error: {exc!r}")
            if resp is DROP:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            assert isinstance(resp, Response)
            try:
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.content_type)
                self.send_header("Content-Length", str(len(resp.body)))
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(resp.body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client went away (or was killed)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


class RequestLog:
    """Every request a sandbox received, for tests to count and read."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._items: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, **item: Any) -> None:
        item.setdefault("at", getattr(_arrival, "at", None) or time.time())
        with self._lock:
            self._items.append(item)
            if len(self._items) > self.limit:
                del self._items[: len(self._items) - self.limit]

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
