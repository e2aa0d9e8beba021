"""sentry-sdk's HTTP transport with a cheaper request: one kept-alive ``http.client``
connection instead of urllib3's pool manager.

With tracing on, every job sends one envelope (Sentry's envelope format allows one
transaction per envelope) from sentry-sdk's background thread, which shares the GIL with the
worker's threads: urllib3's per-request bookkeeping (pool lookup, retry and timeout objects,
its response wrapper) cost more CPU than the send itself.  Everything else is sentry-sdk's own
(queueing, rate limits from ``X-Sentry-Rate-Limits``/429, client reports, lost-event
accounting, compression); a proxy or custom socket options go through its urllib3 pool as
before.

Envelopes are gzipped at level 1, not sentry-sdk's default 9: a 4 KB transaction shrinks to
1.36 KB instead of 1.25 KB for half the CPU; in one ``gzip.compress`` call over the envelope's
bytes, where sentry-sdk opens a ``GzipFile`` per envelope and writes it in six pieces.
"""

from __future__ import annotations

import gzip
import http.client
import io
import os
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

from sentry_sdk.transport import HttpTransport

#: gzip level for envelopes (``_experiments.transport_compression_level`` overrides it)
COMPRESSION_LEVEL = 1


class _Response:
    """What sentry-sdk reads of a response: status, headers (``.get``), body, ``close()``."""

    def __init__(self, status: int, headers: Any, data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data

    def close(self) -> None:
        pass


class KeepAliveTransport(HttpTransport):
    def __init__(self, options: dict[str, Any]) -> None:
        self._conn: http.client.HTTPConnection | None = None
        self._conn_lock = threading.Lock()
        experiments = options.setdefault("_experiments", {})
        experiments.setdefault("transport_compression_level", COMPRESSION_LEVEL)
        super().__init__(options)
        url = urlsplit(self._auth.get_api_url())
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port
        self._direct = self._resolve_proxy() is None and options.get("socket_options") is None

    def _serialize_envelope(self, envelope: Any) -> tuple[str | None, io.BytesIO]:
        if self._compression_algo != "gzip" or not self._compression_level:
            return super()._serialize_envelope(envelope)
        return "gzip", io.BytesIO(gzip.compress(envelope.serialize(), self._compression_level))

    def _connect(self) -> http.client.HTTPConnection:
        if not self._https:
            return http.client.HTTPConnection(self._host, self._port, timeout=self.TIMEOUT)
        ctx = ssl.create_default_context(cafile=self._ca_file())
        cert = self.options.get("cert_file") or os.environ.get("CLIENT_CERT_FILE")
        if cert:
            key = self.options.get("key_file") or os.environ.get("CLIENT_KEY_FILE")
            ctx.load_cert_chain(cert, key)
        return http.client.HTTPSConnection(self._host, self._port, timeout=self.TIMEOUT,
                                           context=ctx)

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
        with self._conn_lock:
            while True:
                reused = self._conn is not None
                conn = self._conn or self._connect()
                self._conn = None
                try:
                    conn.request(method, path, body=body, headers=dict(headers))
                    r = conn.getresponse()
                    data = r.read()
                except (http.client.HTTPException, OSError):
                    conn.close()
                    if reused:  # the server closed an idle kept-alive connection: once more
                        continue
                    raise
                if r.will_close:
                    conn.close()
                else:
                    self._conn = conn
                return _Response(r.status, r.headers, data)

    def kill(self) -> None:
        super().kill()
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
