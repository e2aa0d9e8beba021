"""The Sentry transport reads answers itself (core/observability/transport.py ``_Connection``):
whatever bytes come back, it gives a response or raises only what it declares — ``OSError``
(the network) or ``http.client.HTTPException`` (not an HTTP answer), which sentry-sdk counts
as a failed send — never another error that would end its sending thread."""

from __future__ import annotations

import http.client
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from core.observability.transport import _Connection

_line = st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass"))
_status = st.one_of(
    st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK", b"HTTP/1.1 100 Continue",
                     b"HTTP/1.1 429 Too Many", b"HTTP/1.1 204 No Content"]),
    st.builds(lambda v, c: b"HTTP/" + v + b" " + c, _line, _line))
_header = st.one_of(
    st.builds(lambda n, v: n + b": " + v,
              st.sampled_from([b"Content-Length", b"Transfer-Encoding", b"Connection",
                               b"Retry-After", b"X-Sentry-Rate-Limits"]),
              st.one_of(_line, st.sampled_from([b"chunked", b"close", b"-3", b"5", b"0"]))),
    _line)
_answer = st.one_of(
    st.binary(max_size=600),
    st.builds(lambda s, hs, body: b"\r\n".join([s, *hs, b"", body]),
              _status, st.lists(_header, max_size=6), st.binary(max_size=200)))


@settings(max_examples=400, deadline=None)
@given(_answer)
def test_any_answer_is_a_response_or_a_declared_error(answer: bytes) -> None:
    ours, sentry = socket.socketpair()
    ours.settimeout(5)
    try:
        sentry.sendall(answer)
        sentry.shutdown(socket.SHUT_WR)  # then Sentry closes: nothing blocks for ever
        conn = _Connection(ours)
        try:
            response, _ = conn.exchange(b"POST /api/1/envelope/ HTTP/1.1\r\n\r\n")
        except (OSError, http.client.HTTPException):
            return
        assert 100 <= response.status <= 999
        assert isinstance(response.data, bytes)
    finally:
        ours.close()
        sentry.close()
