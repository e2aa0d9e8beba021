"""Performance tracing, judged by what reaches the local Sentry stand-in (envelopes over HTTP,
``tests.test_observability.SentryStandIn``): the real ``gonets api`` and ``gonets worker``
processes report to it, and an SMS queued over the HTTP API must come back as one trace."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
from dramatiq import Worker
from dramatiq.brokers.redis import RedisBroker

from core import observability
from core.embedded_redis import free_port
from producers.http.auth import Tokens
from tests.sentry_standin import SentryStandIn, reporting_to
from tests.support import ROOT, WorkerProcess, poll_until, wait_final

PHONE = "375297654321"
TEXT = "tracing secret 8080 text"


@pytest.fixture
def sentry_server() -> Iterator[SentryStandIn]:
    s = SentryStandIn()
    yield s
    s.stop()


class ApiProcess:
    """``gonets api`` as its own process (so ``setup('api')`` runs as in production)."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "api", "--port", str(self.port),
             "--workers", str(workers)],
            env=env, cwd=ROOT, stdout=self._fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("api did not start:\n" + log.read_text(errors="replace"))
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()
        return self.proc.returncode


def _spans(tx: dict[str, Any]) -> list[dict[str, Any]]:
    return tx.get("spans") or []


def test_an_api_request_and_its_send_job_are_one_trace_with_tags_spans_and_no_pii(
        gonets_env, smsc, sentry_server, store, tmp_path):
    env = dict(gonets_env, GONETS_SENTRY_DSN=sentry_server.dsn, GONETS_ENVIRONMENT="ci",
               GONETS_RELEASE="gonets@9.9.9-test", GONETS_SENTRY_TRACES_SAMPLE_RATE="1.0")
    token = Tokens(store.r, store.ns).create("shop", "send,read")
    api = ApiProcess(env, tmp_path / "api.log")
    worker = WorkerProcess(env, "smsc", 2, tmp_path / "worker.log")
    try:
        resp = httpx.post(f"{api.url}/v1/sms", json={"to": f"+{PHONE}", "text": TEXT},
                          headers={"Authorization": f"Bearer {token.token}"}, timeout=30)
        assert resp.status_code == 202, resp.text
        msg_id = resp.json()["id"]
        assert wait_final(store, [msg_id])[msg_id] == "delivered"

        def send_tx() -> list[dict[str, Any]]:
            return [t for t in sentry_server.of_type("transaction")
                    if t.get("transaction") == "send_sms"]

        poll_until(send_tx, 20, "the send job's transaction")
        poll_until(lambda: any(t.get("transaction") == "/v1/sms"
                          for t in sentry_server.of_type("transaction")), 20,
              "the API request's transaction")
    finally:
        assert worker.stop() == 0
        assert api.stop() in (0, -15)  # uvicorn dies of the SIGTERM it shut down on

    txs = sentry_server.of_type("transaction")
    api_tx = next(t for t in txs if t["transaction"] == "/v1/sms")
    send = send_tx()
    assert len(send) == 1
    job = send[0]
    # one trace: the job continues the request; its parent is a span of the request
    trace = api_tx["contexts"]["trace"]["trace_id"]
    assert job["contexts"]["trace"]["trace_id"] == trace
    api_span_ids = {api_tx["contexts"]["trace"]["span_id"]} | {s["span_id"]
                                                                for s in _spans(api_tx)}
    assert job["contexts"]["trace"]["parent_span_id"] in api_span_ids
    assert api_tx["contexts"]["trace"]["op"] == "http.server"
    # the job: named by its actor, tagged, its queue wait measured
    assert {"account": "smsc", "provider": "smsc_http", "lane": "bulk",
            "queue": "sms.smsc.bulk", "outcome": "submitted", "role": "worker"}.items() \
        <= job["tags"].items()
    assert job["release"] == "gonets@9.9.9-test" and job["environment"] == "ci"
    assert job["measurements"]["queue_wait"]["unit"] == "millisecond"
    assert 0 <= job["measurements"]["queue_wait"]["value"] < 30_000
    assert job["measurements"]["pacing_wait"]["value"] >= 0
    # spans: the provider call, the pacing wait, the Lua scripts by name
    ops = {(s["op"], s.get("description")) for s in _spans(job)}
    http = [s for s in _spans(job) if s["op"] == "http.client"]
    assert http and all("/sys/send.php" in s["description"] for s in http), ops
    assert ("pacing.wait", "pace smsc") in ops, ops
    scripts = {d for o, d in ops if o == "db.redis.script"}
    # (the send's attempt, pacing and flood count run in admit.lua; its transition with the
    # poll in submitted.lua)
    assert {"admit.lua", "submitted.lua"} <= scripts, ops
    # the follow-up status poll is a transaction of the same trace too (enqueued by the job)
    polls = [t for t in txs if t["transaction"] == "poll_status"]
    assert polls and polls[0]["contexts"]["trace"]["trace_id"] == trace
    assert polls[0]["tags"]["lane"] == "status"

    # no PII anywhere: not the phone, the text, the token or the SMSC credentials
    raw = sentry_server.everything().decode()
    for secret in (PHONE[3:], TEXT, TEXT.replace(" ", "+"), TEXT.replace(" ", "%20"),
                   token.token, gonets_env["TEST_SMSC_PASSWORD"], "login=gonets"):
        at = raw.find(secret)
        assert at < 0, (secret, raw[max(0, at - 300):at + 100])

    # release health: each role's run is a session of its release, closed at its stop
    sessions = sentry_server.of_type("session")
    ended = [s for s in sessions if s.get("status") == "exited"]
    assert len(ended) >= 2, sessions
    assert all(s["attrs"]["release"] == "gonets@9.9.9-test"
               and s["attrs"]["environment"] == "ci" for s in sessions)


def test_each_worker_of_gonets_api_workers_n_reports_to_sentry(gonets_env, sentry_server,
                                                                store, tmp_path):
    """``gonets api --workers 2``: the requests are served by processes uvicorn spawned, and
    their traces still reach Sentry, tagged and scrubbed as the one-process API's."""
    env = dict(gonets_env, GONETS_SENTRY_DSN=sentry_server.dsn, GONETS_ENVIRONMENT="ci",
               GONETS_SENTRY_TRACES_SAMPLE_RATE="1.0")
    token = Tokens(store.r, store.ns).create("shop", "send")
    api = ApiProcess(env, tmp_path / "api.log", workers=2)
    try:
        resp = httpx.post(f"{api.url}/v1/sms", json={"to": f"+{PHONE}", "text": TEXT},
                          headers={"Authorization": f"Bearer {token.token}"}, timeout=30)
        assert resp.status_code == 202, resp.text
        txs = poll_until(lambda: [t for t in sentry_server.of_type("transaction")
                                  if t.get("transaction") == "/v1/sms"], 20,
                         "the request's transaction from a worker process")
    finally:
        assert api.stop() in (0, -15)
    assert txs[0]["tags"]["role"] == "api" and txs[0]["environment"] == "ci"
    raw = sentry_server.everything().decode()
    assert PHONE[3:] not in raw and TEXT not in raw and token.token not in raw


def test_a_failed_job_is_kept_at_a_sample_rate_of_one_in_a_hundred(sentry_server, redis_url):
    import sentry_sdk
    from dramatiq.middleware import CurrentMessage, default_middleware

    with reporting_to(sentry_server, role="worker", account="smsc", environment="test",
                      providers={"smsc": "smsc_http"}, traces_sample_rate=0.01):
        broker = RedisBroker(url=redis_url, namespace="trace-test",
                             middleware=[m() for m in default_middleware]
                             + [CurrentMessage(), observability.JobTags()])
        worker = None
        done: list[int] = []
        try:
            def fine(i: int) -> None:
                done.append(i)

            def broken(i: int) -> None:
                raise RuntimeError(f"provider answered garbage for job {i}")

            ok = dramatiq.actor(fine, broker=broker, queue_name="sms.smsc.bulk", max_retries=0)
            bad = dramatiq.actor(broken, broker=broker, queue_name="sms.smsc.urgent",
                                 max_retries=0)
            for i in range(100):
                ok.send(i)
            bad.send(7)
            worker = Worker(broker, worker_threads=2)
            worker.start()
            poll_until(lambda: len(done) == 100, 30, "the fine jobs")
            poll_until(lambda: [t for t in sentry_server.of_type("transaction")
                           if t["transaction"] == "broken"], 15, "the failed job's transaction")
            sentry_sdk.flush(5)
        finally:
            if worker is not None:
                worker.stop()
            broker.close()

    txs = sentry_server.of_type("transaction")
    failed = [t for t in txs if t["transaction"] == "broken"]
    assert len(failed) == 1
    assert failed[0]["tags"]["outcome"] == "error"
    assert failed[0]["tags"]["cause"] == "RuntimeError"
    assert failed[0]["contexts"]["trace"]["status"] == "internal_error"
    # the rest sampled at 1 %: of 100 fine jobs, a handful at most (P(>10) is about 1e-8)
    kept = [t for t in txs if t["transaction"] == "fine"]
    assert len(kept) <= 10, len(kept)
    assert all(t["tags"]["outcome"] == "ok" for t in kept)


def test_a_retried_job_stays_in_the_trace_that_queued_it(sentry_server, redis_url):
    """sentry-sdk starts a new trace for a retry; Gonets keeps it in the trace of whatever
    queued the job (an API request, a sweep), beside the first try."""
    import sentry_sdk
    from dramatiq.middleware import CurrentMessage, default_middleware

    from core.observability.tracing import install

    with reporting_to(sentry_server, role="worker", account="smsc", environment="test",
                      providers={"smsc": "smsc_http"}, traces_sample_rate=1.0):
        broker = RedisBroker(url=redis_url, namespace="retry-trace-test",
                             middleware=[m() for m in default_middleware]
                             + [CurrentMessage(), observability.KeepTrace(),
                                observability.JobTags()])
        install(broker)
        worker = None
        tries: list[int] = []
        try:
            def flaky(i: int) -> None:
                tries.append(i)
                if len(tries) == 1:
                    raise ConnectionError("provider went away")

            actor = dramatiq.actor(flaky, broker=broker, queue_name="sms.smsc.bulk",
                                   max_retries=3, min_backoff=10, max_backoff=50)
            with sentry_sdk.start_transaction(name="POST /v1/sms", op="http.server",
                                              sampled=True) as request:
                actor.send(1)
            trace_id = request.trace_id
            worker = Worker(broker, worker_threads=1)
            worker.start()
            poll_until(lambda: len([t for t in sentry_server.of_type("transaction")
                                    if t["transaction"] == "flaky"]) == 2, 20, "both tries")
        finally:
            if worker is not None:
                worker.stop()
            broker.close()
    jobs = [t for t in sentry_server.of_type("transaction") if t["transaction"] == "flaky"]
    assert sorted(t["tags"]["outcome"] for t in jobs) == ["error", "ok"]
    assert {t["contexts"]["trace"]["trace_id"] for t in jobs} == {trace_id}
    retry = next(t for t in jobs if t["tags"]["outcome"] == "ok")
    assert retry["contexts"]["trace"]["data"]["messaging.message.retry.count"] == 1


def test_credentials_in_a_provider_url_are_scrubbed_from_its_span(sentry_server, smsc):
    """SMSC and SMS2 both accept their credentials in the query string (GET): whatever a
    provider client puts there, the span's URL and ``http.query`` carry none of it."""
    import sentry_sdk

    with reporting_to(sentry_server, role="worker", environment="test", traces_sample_rate=1.0):
        with sentry_sdk.start_transaction(name="send_sms", op="queue.task.dramatiq",
                                          sampled=True):
            for path in (f"/sys/send.php?login=acme&psw=hunter2&phones=%2B{PHONE}&mes=hi+there",
                         f"/sms.cgi?user=acme&pass=hunter2&phone={PHONE}&message=hi"):
                httpx.get(smsc.urls[0] + path, timeout=5)
        sentry_sdk.flush(5)
        poll_until(lambda: sentry_server.of_type("transaction"), 10, "the transaction")
    raw = sentry_server.everything().decode()
    for secret in ("acme", "hunter2", PHONE[3:], "hi+there"):
        assert secret not in raw, (secret, raw[max(0, raw.find(secret) - 300):][:400])
    spans = sentry_server.of_type("transaction")[0]["spans"]
    queries = [s["data"]["http.query"] for s in spans if s["op"] == "http.client"]
    assert len(queries) == 2
    assert "login=[Filtered]&psw=[Filtered]" in queries[0]
    assert "user=[Filtered]&pass=[Filtered]" in queries[1]


def test_a_scheduled_run_is_a_transaction_whatever_the_rate(sentry_server):
    import sentry_sdk

    with reporting_to(sentry_server, role="scheduler", environment="test",
                      traces_sample_rate=0.01):
        with observability.cron_checkin("status_sweep", {"type": "interval", "value": 1,
                                                         "unit": "minute"}):
            time.sleep(0.01)
        sentry_sdk.flush(5)
        poll_until(lambda: sentry_server.of_type("transaction"), 10, "the sweep's transaction")
    tx = sentry_server.of_type("transaction")[0]
    assert tx["transaction"] == "status_sweep"
    assert tx["contexts"]["trace"]["op"] == "schedule.run"
    took = datetime.fromisoformat(tx["timestamp"]) - datetime.fromisoformat(tx["start_timestamp"])
    assert took.total_seconds() >= 0.01
    assert {c["status"] for c in sentry_server.of_type("check_in")} == {"in_progress", "ok"}


def test_tracing_is_off_by_default(sentry_server, redis_url):
    import sentry_sdk

    with reporting_to(sentry_server, role="worker", environment="test"):
        assert sentry_sdk.get_client().options["traces_sample_rate"] is None
        assert sentry_sdk.get_client().options["traces_sampler"] is None
        with observability.span("pacing.wait", "pace smsc") as s:
            assert s is None



def test_a_job_that_moved_its_record_is_tagged_without_reading_it_back(sentry_server, settings,
                                                                       store):
    """The outcome tag is where the job left its record: the store reports each transition
    to tracing (``note_status``), so only a job that moved nothing reads its record."""
    import sentry_sdk
    from dramatiq.middleware import CurrentMessage, default_middleware

    from core.contracts import Status
    from core.observability.tracing import note_status, set_record_reader
    from core.store import set_transition_listener

    reads: list[str] = []

    def reader(actor: str, rec_id: str) -> tuple[object, object]:
        reads.append(rec_id)
        return tuple(store.r.hmget(store.record_key(rec_id), "status", "error_code"))

    for rec in ("m-sent", "m-polled"):
        store.create(rec, {"account": "smsc", "phone": PHONE, "text": "hi"}, next_check_ms=0)
    with reporting_to(sentry_server, role="worker", account="smsc", environment="test",
                      providers={"smsc": "smsc_http"}, traces_sample_rate=1.0):
        broker = RedisBroker(url=settings.redis_url, namespace="outcome-test",
                             middleware=[m() for m in default_middleware]
                             + [CurrentMessage(), observability.JobTags()])
        set_record_reader(reader)
        set_transition_listener(note_status)
        worker = None
        try:
            def send_sms(rec_id: str) -> None:
                store.transition(rec_id, Status.FAILED, error_code="42")

            def poll_status(rec_id: str) -> None:
                pass

            dramatiq.actor(send_sms, broker=broker, queue_name="sms.smsc.bulk").send("m-sent")
            dramatiq.actor(poll_status, broker=broker, queue_name="sms.smsc.status").send(
                "m-polled")
            worker = Worker(broker, worker_threads=1)
            worker.start()
            poll_until(lambda: len(sentry_server.of_type("transaction")) == 2, 15,
                       "both jobs' transactions")
            sentry_sdk.flush(5)
        finally:
            set_transition_listener(None)
            set_record_reader(None)
            if worker is not None:
                worker.stop()
            broker.close()
    tags = {t["transaction"]: t["tags"] for t in sentry_server.of_type("transaction")}
    assert tags["send_sms"]["outcome"] == "failed" and tags["send_sms"]["error_code"] == "42"
    assert tags["poll_status"]["outcome"] == "queued"
    assert reads == ["m-polled"]
