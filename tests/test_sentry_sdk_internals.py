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
