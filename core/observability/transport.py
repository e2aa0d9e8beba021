"""sentry-sdk's HTTP transport with a cheaper request: one kept-alive HTTP/1.1 connection
instead of urllib3's pool manager.

With tracing on, every job sends one envelope (Sentry's envelope format allows one
transaction per envelope) from sentry-sdk's background thread, which shares the GIL with the
worker's threads: urllib3's per-request bookkeeping (pool lookup, retry and timeout objects,
its response wrapper) cost more CPU than the send itself.  Everything else is sentry-sdk's own
(queueing, rate limits from ``X-Sentry-Rate-Limits``/429, client reports, lost-event
accounting, compression); a proxy or custom socket options go through its urllib3 pool as
before.

Its background thread is not woken for every envelope (``QuietWorker``): a busy worker's
jobs each hand one over, and each wake-up made the thread compete with the job threads for
the GIL, in the middle of their Redis and provider round trips.  Once it has sent what was
queued, the thread takes a short nap (``LINGER_S``) before looking again, and only a thread
found with nothing to do after its nap sleeps until the next envelope wakes it: under load it
sends what a nap gathered, back to back; an idle process never wakes.

The request is written in one piece and the answer read with the socket's buffered reader
(``_Connection``): ``http.client`` parses a response's headers with the ``email`` package's
feed parser, which took more of the sending thread's time than anything else (a profile of a
traced worker, GIL held: the response's parsing 5 % of all samples, ahead of the envelope's
JSON and gzip together).  Sentry answers each envelope with a short JSON body and its
``Content-Length``; a chunked body, an interim ``1xx``, ``Connection: close`` and HTTP/1.0 are
read as HTTP/1.1 says.  What sentry-sdk reads of the answer is its status and the
``Retry-After`` and ``X-Sentry-Rate-Limits`` headers (rate limits).

Envelopes are gzipped at level 1, not sentry-sdk's default 9: a 4 KB transaction shrinks to
1.36 KB instead of 1.25 KB for half the CPU; in one ``gzip.compress`` call over the envelope's
bytes, where sentry-sdk opens a ``GzipFile`` per envelope and writes it in six pieces.
"""

from __future__ import annotations

import gzip
import http.client
import io
import os
import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

from sentry_sdk._queue import FullError, Queue
from sentry_sdk.transport import HttpTransport
from sentry_sdk.utils import logger
from sentry_sdk.worker import _TERMINATOR, BackgroundWorker

#: gzip level for envelopes (``_experiments.transport_compression_level`` overrides it)
COMPRESSION_LEVEL = 1


#: how long the sending thread naps after it sent what was queued, before it looks again
#: (what a busy process sends meanwhile goes out together); an envelope waits at most this
#: long more than with sentry-sdk's own worker
LINGER_S = 0.05


class _QuietQueue(Queue):
    """sentry-sdk's queue of envelopes to send, whose ``put`` wakes the sending thread only
    when it sleeps for want of work (``idle``), when the queue is a quarter full, or to stop
    it."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)  # type: ignore[no-untyped-call]
        self.idle = False
        self.wake_at = max(1, maxsize // 4)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if block:  # sentry-sdk's worker puts without blocking; anything else as before
            super().put(item, block, timeout)  # type: ignore[no-untyped-call]
            return
        with self.mutex:
            if 0 < self.maxsize <= len(self.queue):
                raise FullError()
            self.queue.append(item)
            self.unfinished_tasks += 1
            if self.idle or item is _TERMINATOR or len(self.queue) >= self.wake_at:
                self.not_empty.notify()


class QuietWorker(BackgroundWorker):
    """sentry-sdk's ``BackgroundWorker`` (one daemon thread sending the queued envelopes, in
    order) on a ``_QuietQueue``: after it emptied the queue the thread naps ``LINGER_S``,
    then sleeps until woken if the nap brought nothing."""

    def __init__(self, queue_size: int) -> None:
        super().__init__(queue_size)
        self._queue: _QuietQueue = _QuietQueue(queue_size)

    def _next(self) -> Any:
        q = self._queue
        with q.not_empty:
            if not q.queue:
                q.not_empty.wait(LINGER_S)  # a nap: envelopes queued meanwhile wait for it
            while not q.queue:
                q.idle = True  # the next put wakes the thread
                q.not_empty.wait()
            q.idle = False
            item = q.queue.popleft()
            q.not_full.notify()
            return item

    def _target(self) -> None:
        while True:
            callback = self._next()
            try:
                if callback is _TERMINATOR:
                    break
                try:
                    callback()
                except Exception:
                    logger.error("Failed processing job", exc_info=True)
            finally:
                self._queue.task_done()  # type: ignore[no-untyped-call]

    def flush(self, timeout: float, callback: Any = None) -> None:
        with self._queue.not_empty:  # no nap before a flush
            self._queue.not_empty.notify()
        super().flush(timeout, callback)


class _Headers(dict[str, str]):
    """A response's headers by lower-case name; ``get`` takes a name in any case (sentry-sdk
    asks for ``Retry-After`` and ``x-sentry-rate-limits``)."""

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self, key.lower(), default)


class _Response:
    """What sentry-sdk reads of a response: status, headers (``.get``), body, ``close()``."""

    def __init__(self, status: int, headers: _Headers, data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data

    def close(self) -> None:
        pass


#: the longest status or header line read, and the most header lines (as ``http.client``)
_MAX_LINE = 65536
_MAX_HEADERS = 100


class _Connection:
    """One kept-alive HTTP/1.1 connection: a request written in one ``sendall``, its response
    read through the socket's buffered reader.  Errors are ``OSError`` (the network) or
    ``http.client.HTTPException`` (an answer that is not HTTP)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def exchange(self, request: bytes) -> tuple[_Response, bool]:
        """Send ``request`` (head and body); the response and whether the server closes the
        connection after it."""
        self.sock.sendall(request)
        try:
            return self._response()
        except ValueError as e:  # a number that is not one: not an HTTP answer
            raise http.client.HTTPException(f"bad response: {e}") from None

    def _line(self) -> bytes:
        line = self.rfile.readline(_MAX_LINE + 1)
        if not line:
            raise http.client.RemoteDisconnected("Sentry closed the connection")
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("response line")
        return line

    def _response(self) -> tuple[_Response, bool]:
        while True:
            parts = self._line().split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
                raise http.client.BadStatusLine(repr(parts))
            version, status = parts[0], int(parts[1])
            if not 100 <= status <= 999:
                raise http.client.BadStatusLine(str(status))
            headers = _Headers()
            for _ in range(_MAX_HEADERS + 1):
                line = self._line()
                if line in (b"\r\n", b"\n"):
                    break
                name, sep, value = line.decode("latin-1").partition(":")
                if not sep:
                    raise http.client.HTTPException(f"bad header line {line[:40]!r}")
                k, v = name.strip().lower(), value.strip()
                headers[k] = f"{headers[k]}, {v}" if k in headers else v
            else:
                raise http.client.HTTPException("too many headers")
            if status >= 200 or status == 101:
                break  # an interim 1xx answer is followed by the real one
        close = headers.get("connection", "").lower()
        will_close = "close" in close or (version == b"HTTP/1.0" and "keep-alive" not in close)
        if status in (204, 304):
            data = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            data = self._chunked()
        elif "content-length" in headers:
            n = int(headers["content-length"])
            if n < 0:
                raise http.client.HTTPException(f"bad Content-Length {n}")
            data = self.rfile.read(n)
            if len(data) < n:
                raise http.client.IncompleteRead(data, n - len(data))
        else:  # the body runs to the end of the connection
            data, will_close = self.rfile.read(), True
        return _Response(status, headers, data), will_close

    def _chunked(self) -> bytes:
        out: list[bytes] = []
        while True:
            size = int(self._line().split(b";", 1)[0].strip(), 16)
            if size < 0:
                raise http.client.HTTPException(f"bad chunk size {size}")
            if size == 0:
                while self._line() not in (b"\r\n", b"\n"):  # trailers
                    pass
                return b"".join(out)
            chunk = self.rfile.read(size + 2)  # and its CRLF
            if len(chunk) < size + 2:
                raise http.client.IncompleteRead(chunk, size + 2 - len(chunk))
            out.append(chunk[:size])


class KeepAliveTransport(HttpTransport):
    def __init__(self, options: dict[str, Any]) -> None:
        self._conn: _Connection | None = None
        self._conn_lock = threading.Lock()
        experiments = options.setdefault("_experiments", {})
        experiments.setdefault("transport_compression_level", COMPRESSION_LEVEL)
        super().__init__(options)
        url = urlsplit(self._auth.get_api_url())
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port or (443 if self._https else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        default = 443 if self._https else 80
        self._host_header = host if self._port == default else f"{host}:{self._port}"
        self._direct = self._resolve_proxy() is None and options.get("socket_options") is None

    def _create_worker(self, options: dict[str, Any]) -> QuietWorker:
        return QuietWorker(options["transport_queue_size"])

    def _serialize_envelope(self, envelope: Any) -> tuple[str | None, io.BytesIO]:
        if self._compression_algo != "gzip" or not self._compression_level:
            return super()._serialize_envelope(envelope)
        return "gzip", io.BytesIO(gzip.compress(envelope.serialize(), self._compression_level))

    def _connect(self) -> _Connection:
        sock = socket.create_connection((self._host, self._port), timeout=self.TIMEOUT)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._https:
                ctx = ssl.create_default_context(cafile=self._ca_file())
                cert = self.options.get("cert_file") or os.environ.get("CLIENT_CERT_FILE")
                if cert:
                    key = self.options.get("key_file") or os.environ.get("CLIENT_KEY_FILE")
                    ctx.load_cert_chain(cert, key)
                sock = ctx.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    def _ca_file(self) -> str:
        import certifi

        return str(self.options.get("ca_certs") or os.environ.get("SSL_CERT_FILE")
                   or os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where())

    def _request(self, method: str, endpoint_type: Any, body: Any,
                 headers: Any) -> Any:
        if not self._direct:
            return super()._request(method, endpoint_type, body, headers)
        url = urlsplit(self._auth.get_api_url(endpoint_type))
        path = url.path + (f"?{url.query}" if url.query else "")
        body = bytes(body or b"")
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header}",
                 f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()
                  if k.lower() not in ("host", "content-length")]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        with self._conn_lock:
            while True:
                reused = self._conn is not None
                conn = self._conn or self._connect()
                self._conn = None
                try:
                    response, will_close = conn.exchange(request)
                except (http.client.HTTPException, OSError):
                    conn.close()
                    if reused:  # the server closed an idle kept-alive connection: once more
                        continue
                    raise
                if will_close:
                    conn.close()
                else:
                    self._conn = conn
                return response

    def kill(self) -> None:
        super().kill()
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
