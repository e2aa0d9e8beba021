"""A local stand-in for Sentry's ingestion endpoint: a DSN pointing at it makes sentry-sdk send
its envelopes (events, transactions, sessions, check-ins) here over a real socket, where the
tests (and ``bench/bench_sentry.py``) read them back.  It covers the documented envelope
format: a header line, then per item a header line (``type``, ``length``) and its payload;
gzip bodies (``Content-Encoding: gzip``)."""

from __future__ import annotations

import gzip
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support import shut_down


class SentryStandIn:
    """Receives envelopes at ``/api/<project>/envelope/`` (HTTP/1.1, keep-alive, as Sentry's
    ingestion does); keeps the raw bodies and reads the items out of them when asked."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self._items: list[tuple[dict[str, Any], Any]] = []
        self._parsed = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body go in two writes: without this, keep-alive waits on
                # the client's delayed ACK (40 ms) for every envelope
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with outer.lock:
                    outer.raw.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.dsn = f"http://publickey@127.0.0.1:{self.server.server_address[1]}/1"

    @staticmethod
    def _parse(body: bytes) -> list[tuple[dict[str, Any], Any]]:
        lines = body.split(b"\n")
        items = []
        i = 1  # line 0 is the envelope header
        while i < len(lines):
            if not lines[i].strip():
                i += 1
                continue
            head = json.loads(lines[i])
            payload = lines[i + 1] if i + 1 < len(lines) else b""
            try:
                items.append((head, json.loads(payload)))
            except ValueError:
                items.append((head, payload))
            i += 2
        return items

    @property
    def items(self) -> list[tuple[dict[str, Any], Any]]:
        with self.lock:
            for body in self.raw[self._parsed:]:
                self._items.extend(self._parse(body))
            self._parsed = len(self.raw)
            return list(self._items)

    def of_type(self, kind: str) -> list[Any]:
        return [p for h, p in self.items if h.get("type") == kind]

    def alerts(self, alert: str) -> list[dict[str, Any]]:
        return [e for e in self.of_type("event") if (e.get("tags") or {}).get("alert") == alert]

    def everything(self) -> bytes:
        with self.lock:
            return b"".join(self.raw)

    def stop(self) -> None:
        shut_down(self.server)
        self.server.server_close()


@contextmanager
def reporting_to(standin: SentryStandIn, **options: Any) -> Iterator[None]:
    """This process's Sentry (``init_sentry``) pointed at the stand-in for the block, then
    reset to no Sentry at all."""
    import sentry_sdk

    from core import observability

    assert observability.init_sentry(standin.dsn, **options)
    try:
        yield
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()
        observability._state.update(sentry=False, traces_rate=0.0)
