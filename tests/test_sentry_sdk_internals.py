"""The sentry-sdk internals tracing relies on (``core/observability/sdk.py``, pinned to
sentry-sdk 2.75.0): each test fails if sentry-sdk moves the name it replaces or its own
behaviour drifts from the replacement's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from enum import IntEnum
from typing import Any

import dramatiq
import pytest
from dramatiq import Worker
from dramatiq.brokers.redis import RedisBroker
from hypothesis import given, settings
from hypothesis import strategies as st
from sentry_sdk import serializer as sdk_serializer
from sentry_sdk._types import AnnotatedValue
from sentry_sdk.consts import CompressionAlgo
from sentry_sdk.tracing import TransactionSource

from core import observability
from core.observability import sdk
from tests.sentry_standin import SentryStandIn, reporting_to
from tests.support import poll_until


class _Odd(IntEnum):
    ONE = 1


_times = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 1, 1),
                      timezones=st.sampled_from([None, UTC,
                                                 timezone(timedelta(hours=3))]))
_leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.text() | _times
           | st.binary(max_size=8) | st.frozensets(st.integers(), max_size=3)
           | st.sampled_from(TransactionSource) | st.sampled_from(_Odd)
           | st.sampled_from(CompressionAlgo)
           | st.builds(AnnotatedValue.removed_because_raw_data))
_trees = st.recursive(_leaves, lambda kids: st.lists(kids, max_size=4)
                      | st.tuples(kids, kids)
                      | st.dictionaries(st.text(max_size=8) | st.integers(), kids, max_size=4),
                      max_leaves=25)
_keys = st.sampled_from(["contexts", "tags", "spans", "measurements", "extra", "breadcrumbs",
                         "request", "sdk", "transaction", "timestamp", "user"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _trees, max_size=6), st.sampled_from(["transaction", "event"]),
       st.sampled_from([{}, {"max_value_length": 5}, {"max_request_body_size": "always"}]))
def test_the_plain_copy_gives_what_sentry_sdks_serializer_gives(
        body: dict[str, Any], kind: str, options: dict[str, Any]) -> None:
    event = {"type": kind, **body}
    assert sdk.serialize(event, **options) == sdk_serializer.serialize(event, **options)


def test_a_job_transaction_is_plain_and_carries_no_dramatiq_context(redis_url: str) -> None:
    """A real job through sentry-sdk's dramatiq middleware: its transaction takes the plain
    copy (sentry-sdk's serializer is never called for it), leaves the message out and still
    reaches Sentry whole; an error of the same job keeps the message context."""
    from dramatiq.middleware import CurrentMessage, default_middleware

    standin = SentryStandIn()
    fallbacks: list[Any] = []
    orig = sdk_serializer.serialize

    def counting(event: Any, **kw: Any) -> Any:
        fallbacks.append(event.get("type"))
        return orig(event, **kw)

    try:
        with reporting_to(standin, role="worker", account="smsc", environment="test",
                          providers={"smsc": "smsc_http"}, traces_sample_rate=1.0):
            import sentry_sdk.client

            assert sentry_sdk.client.serialize is sdk.serialize  # the name sentry-sdk calls
            broker = RedisBroker(url=redis_url, namespace="sdk-internals-test",
                                 middleware=[m() for m in default_middleware]
                                 + [CurrentMessage(), observability.JobTags()])
            worker = None
            done: list[str] = []
            try:
                def job(rec: str) -> None:
                    with observability.span("db.redis.script", "transition.lua"):
                        done.append(rec)
                    if rec == "boom":
                        raise RuntimeError("provider answered garbage")

                actor = dramatiq.actor(job, broker=broker, queue_name="sms.smsc.bulk",
                                       max_retries=0)
                pytest.MonkeyPatch().setattr(sdk_serializer, "serialize", counting)
                actor.send("m1")
                worker = Worker(broker, worker_threads=1)
                worker.start()
                poll_until(lambda: standin.of_type("transaction"), 15, "the transaction")
                actor.send("boom")
                poll_until(lambda: standin.of_type("event"), 15, "the error")
                sentry_sdk.flush(5)
            finally:
                if worker is not None:
                    worker.stop()
                broker.close()
                sdk_serializer.serialize = orig
    finally:
        standin.stop()
    assert "transaction" not in fallbacks, fallbacks
    txs = [t for t in standin.of_type("transaction") if t["tags"].get("outcome") == "ok"]
    assert txs, standin.of_type("transaction")
    tx = txs[0]
    assert tx["transaction"] == "job" and tx["tags"]["queue"] == "sms.smsc.bulk"
    assert "dramatiq" not in tx["contexts"] and "_meta" not in tx
    assert [s["description"] for s in tx["spans"]] == ["transition.lua"]
    assert tx["spans"][0]["start_timestamp"].endswith("Z")
    assert datetime.fromisoformat(tx["timestamp"].replace("Z", "+00:00")) \
        >= datetime.fromisoformat(tx["start_timestamp"].replace("Z", "+00:00"))
    errors = standin.of_type("event")
    assert errors and errors[0]["contexts"]["dramatiq"]["type"] == "dramatiq"


def test_the_transport_methods_gonets_replaces_are_the_ones_sentry_sdk_calls() -> None:
    """``KeepAliveTransport`` (core/observability/transport.py) replaces how an envelope is
    compressed and how its request goes out: sentry-sdk must still call both by name."""
    import gzip
    import inspect

    from sentry_sdk.client import get_options
    from sentry_sdk.envelope import Envelope
    from sentry_sdk.transport import BaseHttpTransport, HttpTransportCore

    from core.observability.transport import KeepAliveTransport

    assert "self._serialize_envelope(envelope)" in inspect.getsource(
        HttpTransportCore._prepare_envelope)
    assert "self._request(" in inspect.getsource(BaseHttpTransport._send_request)
    transport = KeepAliveTransport({**get_options("http://key@127.0.0.1:9/1"),
                                    "transport_queue_size": 1})
    try:
        envelope = Envelope()
        envelope.add_transaction({"type": "transaction", "transaction": "send_sms"})
        encoding, body = transport._serialize_envelope(envelope)
        assert encoding == "gzip" and gzip.decompress(body.getvalue()) == envelope.serialize()
    finally:
        transport.kill()


def test_the_sending_threads_hooks_quietworker_replaces_are_the_ones_sentry_sdk_uses() -> None:
    """``QuietWorker`` (core/observability/transport.py) is sentry-sdk's ``BackgroundWorker``
    with its own queue and loop: the transport must still build its worker by
    ``_create_worker``, the worker hand envelopes over by ``put_nowait`` and stop on
    ``_TERMINATOR``, its flush wait on the queue's ``unfinished_tasks``, and its thread run
    ``_target``."""
    import inspect

    from sentry_sdk import worker as sdk_worker
    from sentry_sdk.transport import HttpTransportCore

    assert "self._create_worker(options)" in inspect.getsource(HttpTransportCore.__init__)
    bw = sdk_worker.BackgroundWorker
    assert "self._queue.put_nowait(callback)" in inspect.getsource(bw.submit)
    assert "self._queue.put_nowait(_TERMINATOR)" in inspect.getsource(bw.kill)
    assert "queue.unfinished_tasks" in inspect.getsource(bw._timed_queue_join)
    assert "target=self._target" in inspect.getsource(bw.start)


def test_envelopes_sent_by_the_quiet_worker_all_arrive_and_an_idle_one_is_woken() -> None:
    """Transactions finished by eight threads at once all reach Sentry, in bursts the
    sending thread sends back to back after its nap; once idle, the thread sleeps until the
    next envelope, which still goes out at once (no flush); a flush sends what is queued, and
    closing the client stops the thread."""
    import threading

    import sentry_sdk

    from core.observability import transport

    standin = SentryStandIn()
    try:
        with reporting_to(standin, role="worker", environment="test", traces_sample_rate=1.0):
            worker = sentry_sdk.get_client().transport._worker  # type: ignore[union-attr]
            assert isinstance(worker, transport.QuietWorker)

            def jobs(t: int) -> None:
                for i in range(40):
                    with sentry_sdk.start_transaction(op="queue.task.dramatiq",
                                                      name=f"job-{t}-{i}", sampled=True):
                        pass

            threads = [threading.Thread(target=jobs, args=(t,)) for t in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            sentry_sdk.flush(10)
            assert len(standin.of_type("transaction")) == 320
            poll_until(lambda: worker._queue.idle, 5, "the sending thread asleep")
            with sentry_sdk.start_transaction(op="queue.task.dramatiq", name="after-idle",
                                              sampled=True):
                pass
            poll_until(lambda: any(t["transaction"] == "after-idle"
                                   for t in standin.of_type("transaction")),
                       5, "the envelope that woke the thread")
            with sentry_sdk.start_transaction(op="queue.task.dramatiq", name="flushed",
                                              sampled=True):
                pass
            sentry_sdk.flush(10)
            assert any(t["transaction"] == "flushed" for t in standin.of_type("transaction"))
            thread = worker._thread
            assert thread is not None and thread.is_alive()
    finally:
        standin.stop()
    poll_until(lambda: not thread.is_alive(), 5, "the sending thread stopped")


def test_sentry_sdks_ids_come_from_random_unique_well_formed_and_new_in_a_forked_child(
) -> None:
    """``sdk._ids`` (core/observability/sdk.py) stands in for the ``uuid`` module in the
    sentry-sdk modules that make trace, span and event ids: they must use nothing of it but
    ``uuid4``; the ids stay unique and of Sentry's form, and a forked worker process makes
    other ids than its parent (``random`` reseeds in a forked child)."""
    import importlib
    import inspect
    import os
    import re

    import sentry_sdk

    for name in sdk.ID_MODULES:
        src = inspect.getsource(importlib.import_module(name))
        assert re.search(r"(?m)^import uuid$", src)
        assert set(re.findall(r"\buuid\.(\w+)", src)) <= {"uuid4"}
    standin = SentryStandIn()
    try:
        with reporting_to(standin, role="worker", environment="test", traces_sample_rate=1.0):
            for name in sdk.ID_MODULES:
                assert importlib.import_module(name).uuid is sdk._ids  # type: ignore[attr-defined]
            for i in range(100):
                with sentry_sdk.start_transaction(op="queue.task.dramatiq", name=f"job-{i}",
                                                  sampled=True), \
                        sentry_sdk.start_span(op="db.redis.script", name="book.lua"):
                    pass
            sentry_sdk.flush(10)
            txs = standin.of_type("transaction")
    finally:
        standin.stop()
    assert len(txs) == 100
    events = {t["event_id"] for t in txs}
    traces = {t["contexts"]["trace"]["trace_id"] for t in txs}
    spans = {t["contexts"]["trace"]["span_id"] for t in txs} | \
        {s["span_id"] for t in txs for s in t["spans"]}
    assert len(events) == len(traces) == 100 and len(spans) == 200
    assert all(re.fullmatch(r"[0-9a-f]{32}", x) for x in events | traces)
    assert all(re.fullmatch(r"[0-9a-f]{16}", x) for x in spans)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one id, then out without any cleanup of the parent's
        os.write(w, sdk._uuid4().hex.encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 64).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", child) and child != sdk._uuid4().hex


class _Scripted:
    """A Sentry endpoint that answers each request with the next of ``answers`` (raw bytes,
    ``None``: close the connection without answering) and, for an answer ending in
    ``b"|close"``, closes the connection after it; it keeps each request's body."""

    def __init__(self, answers: list[bytes | None]) -> None:
        import socket
        import threading

        self.answers, self.bodies, self.connections = list(answers), [], 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.dsn = f"http://key@127.0.0.1:{self._sock.getsockname()[1]}/1"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Any) -> None:
        import re

        buf = b""
        with conn:
            while self.answers:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                n = int(m.group(1)) if m else 0
                while len(buf) < n:
                    buf += conn.recv(65536)
                self.bodies.append(buf[:n])
                buf = buf[n:]
                answer = self.answers.pop(0)
                if answer is None:
                    self.bodies.pop()
                    return
                close = answer.endswith(b"|close")
                conn.sendall(answer.removesuffix(b"|close"))
                if close:
                    return

    def stop(self) -> None:
        self._sock.close()


def test_the_transport_reads_every_form_of_answer_http_allows_and_applies_rate_limits() -> None:
    """``KeepAliveTransport``'s own HTTP/1.1 exchange: an interim ``100``, a chunked body, an
    HTTP/1.0 answer read to the connection's end, a connection the server closed while idle
    (the envelope is sent again on a new one) all deliver their envelope; a 429 with
    ``X-Sentry-Rate-Limits`` for transactions stops the next transaction from being sent, as
    with sentry-sdk's own transport."""
    import gzip

    from sentry_sdk.client import get_options
    from sentry_sdk.envelope import Envelope

    from core.observability.transport import KeepAliveTransport

    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    server = _Scripted([
        b"HTTP/1.1 100 Continue\r\n\r\n" + ok,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;x=y\r\n{\r\n1\r\n}\r\n0\r\n"
        b"Trailer: t\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}|close",
        ok + b"|close",  # and the next request on it finds it closed
        ok,
        b"HTTP/1.1 429 Too Many Requests\r\nx-sentry-rate-limits: 60:transaction:key\r\n"
        b"Retry-After: 60\r\nContent-Length: 0\r\n\r\n",
        ok, ok, ok,  # sentry-sdk's client reports of what it dropped
    ])
    transport = KeepAliveTransport({**get_options(server.dsn), "transport_queue_size": 10})
    try:
        for i in range(7):
            envelope = Envelope()
            envelope.add_transaction({"type": "transaction", "transaction": f"job-{i}",
                                      "event_id": f"{i:032x}"})
            transport.capture_envelope(envelope)
            transport.flush(5)
        sent = [Envelope.deserialize(gzip.decompress(b)).get_transaction_event()
                for b in server.bodies]
    finally:
        transport.kill()
        server.stop()
    # job-6 is held back by the rate limit, nothing else is lost or sent twice
    assert [t["transaction"] for t in sent if t is not None] == [f"job-{i}" for i in range(6)]
    assert server.connections == 3
    assert transport._check_disabled("transaction")
