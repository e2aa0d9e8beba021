"""Sentry, logs and metrics, judged by what leaves the process: a local HTTP server stands in for
Sentry (the DSN points at it; tests/sentry_standin.py) and receives the envelopes over a real
socket."""

from __future__ import annotations

import gzip
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
from dramatiq import Worker
from dramatiq.brokers.redis import RedisBroker
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core import observability
from core.embedded_redis import free_port
from core.privacy import mask_phone, scrub_text
from core.store import Store, redis_client
from producers import Producer
from tests.sentry_standin import SentryStandIn
from tests.support import WorkerProcess, control, poll_until, shut_down, wait_final, write_config
from tests.test_scheduler import SchedulerProcess

PHONE = "375291234567"
#: what must never leave the process (kept far from the raising frame: Sentry sends the
#: source lines around it, which are code, not data)
TEXT = "your secret code 4321"
SECRETS = {"password": "hunter2", "token": "tok-abc", "login": "acme"}


@pytest.fixture
def sentry_server() -> Iterator[SentryStandIn]:
    s = SentryStandIn()
    yield s
    s.stop()


def test_an_unexpected_actor_error_reaches_sentry_without_phone_text_or_secrets(
        sentry_server, redis_url):
    import sentry_sdk

    assert observability.init_sentry(sentry_server.dsn, role="worker", account="smsc",
                                     environment="test", providers={"smsc": "smsc_http"})
    from dramatiq.middleware import CurrentMessage, default_middleware

    # built after init, as every Gonets role does: the integration adds its middleware
    broker = RedisBroker(url=redis_url, namespace="obs-test",
                         middleware=[m() for m in default_middleware]
                         + [CurrentMessage(), observability.JobTags()])
    worker = None
    try:
        def boom(phone: str, text: str, creds: dict[str, str]) -> None:
            logging.getLogger("gonets.worker").warning("sending to %s failed once", phone)
            raise RuntimeError(
                f"GET http://smsc.test/sys/send.php?login={creds['login']}&psw={creds['password']}"
                f"&phones={phone}&mes={text.replace(' ', '+')} answered garbage")

        actor = dramatiq.actor(boom, broker=broker, queue_name="obs", max_retries=0)
        actor.send(f"+{PHONE}", TEXT, SECRETS)
        worker = Worker(broker, worker_threads=1)
        worker.start()
        poll_until(lambda: sentry_server.of_type("event"), 15, "the event")
    finally:
        if worker is not None:
            worker.stop()
        broker.close()
        sentry_sdk.get_client().close()
        sentry_sdk.init()
        observability._state["sentry"] = False

    event = sentry_server.of_type("event")[0]
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["environment"] == "test" and event["release"].startswith("gonets@")
    assert {"role": "worker", "account": "smsc", "provider": "smsc_http"}.items() \
        <= event["tags"].items()
    raw = sentry_server.everything().decode()
    for secret in (PHONE[3:], TEXT, TEXT.replace(" ", "+"), *SECRETS.values()):
        assert secret not in raw, raw[max(0, raw.find(secret) - 400):raw.find(secret) + 100]
    # masked, not lost: the operator prefix is still there to debug with
    assert scrub_text(f"+{PHONE}") in event["exception"]["values"][-1]["value"]
    crumbs = [c.get("message", "") for c in event["breadcrumbs"]["values"]]
    assert any(scrub_text(f"+{PHONE}") in c for c in crumbs)
    assert event["tags"]["job"] == "boom"
    assert "args" not in json.dumps(event["contexts"].get("dramatiq", {}))


def test_scrub_masks_phones_and_drops_texts_and_secrets_by_key() -> None:
    out = observability.scrub({"to": "+375291234567", "text": "hi", "nested": [
        {"psw": "x", "note": "call 79161234567 now", "message_id": "12345678901234"}]})
    assert out["to"] == mask_phone(PHONE) and out["text"] == "[Filtered]"
    inner = out["nested"][0]
    assert inner["psw"] == "[Filtered]" and "79161234567" not in inner["note"]
    assert inner["message_id"] == "12345678901234"  # ids are not phone numbers


def test_alerts_are_one_event_per_incident_and_sweeps_check_in(
        gonets_env, smsc, sentry_server, tmp_path, monkeypatch):
    """A real worker and a real scheduler, both reporting to the stand-in: low balance and no
    funds alert once per incident, grouped per account; every scheduled run checks in."""
    write_config(Path(gonets_env["GONETS_CONFIG"]), smsc.urls,
                 extra="limits = { min_balance = 100.0 }")
    env = dict(gonets_env, GONETS_SENTRY_DSN=sentry_server.dsn, GONETS_ENVIRONMENT="ci",
               GONETS_STATUS_SWEEP_EVERY_S="1", GONETS_BALANCE_CHECK_EVERY_S="0.5",
               GONETS_PAYMENT_SWEEP_EVERY_S="3600", GONETS_SCHEDULER_LOCK_TTL_S="3",
               GONETS_LOG_FORMAT="json")
    from core.settings import load_settings

    for k in ("TEST_SMSC_LOGIN", "TEST_SMSC_PASSWORD"):
        monkeypatch.setenv(k, env[k])
    settings = load_settings(env)
    control(smsc.urls[0], balance=50.0)
    wport, sport = free_port(), free_port()
    worker = WorkerProcess(dict(env, GONETS_METRICS_PORT=str(wport)), "smsc", 4,
                           tmp_path / "worker.log")
    sched = SchedulerProcess(dict(env, GONETS_METRICS_PORT=str(sport)),
                             tmp_path / "scheduler.log")
    store = Store(redis_client(settings.redis_url))
    from core.broker import build_broker

    broker = build_broker(settings)
    try:
        # low balance: checked every 0.5 s, alerted once
        poll_until(lambda: smsc.counters["balance"] >= 4, 20, "balance checks")
        poll_until(lambda: sentry_server.alerts("low_balance"), 10, "the low-balance alert")
        time.sleep(1.0)
        low = sentry_server.alerts("low_balance")
        assert len(low) == 1
        assert low[0]["fingerprint"] == ["gonets-account-alert", "smsc", "low_balance"]
        assert low[0]["tags"]["provider"] == "smsc_http" and low[0]["environment"] == "ci"

        # no funds: three messages, one pause, one event; the messages are kept
        control(smsc.urls[0], balance=0.0)
        producer = Producer(settings, store=store, broker=broker)
        ids = [producer.send_sms(f"+37529123456{i}", f"alert test {i}") for i in range(3)]
        poll_until(lambda: sentry_server.alerts("no_funds"), 20, "the no-funds alert")
        sends = smsc.counters["send"]
        # past the 2 s pause the pool tries again, is refused again and stays paused
        poll_until(lambda: smsc.counters["send"] > sends, 20, "a send after the pause")
        poll_until(lambda: store.r.pttl(store.keys.pause("smsc")) > 0, 10, "the pause again")
        assert len(sentry_server.alerts("no_funds")) == 1
        control(smsc.urls[0], balance=1000.0)
        assert set(wait_final(store, ids, 30).values()) == {"delivered"}
        assert len(sentry_server.alerts("no_funds")) == 1  # still one, however late it came

        # a new incident after recovery alerts again
        poll_until(lambda: not store.r.exists("gonets:alert:smsc:low_balance"), 10, "recovery")
        control(smsc.urls[0], balance=10.0)
        poll_until(lambda: len(sentry_server.alerts("low_balance")) == 2, 10, "the second incident")

        # Crons: every scheduled run checks in with its schedule
        poll_until(lambda: any(c["status"] == "ok" and c["monitor_slug"] == "gonets-status-sweep"
                          for c in sentry_server.of_type("check_in")), 10, "check-ins")

        # metrics: the worker's jobs, the scheduler's cluster-wide figures and sweeps
        wm = _metrics(wport)
        assert wm[("gonets_jobs_total", (("actor", "send_sms"), ("cause", ""), ("outcome", "ok"),
                                         ("queue", "sms.smsc.bulk")))] >= 3
        # the no-funds retries, by their cause
        assert wm[("gonets_jobs_total", (("actor", "send_sms"), ("cause", "AccountProblem"),
                                         ("outcome", "retry"), ("queue", "sms.smsc.bulk")))] >= 1
        sm = _metrics(sport)
        assert sm[("gonets_messages_total", (("account", "smsc"), ("code", ""),
                                             ("status", "delivered")))] == 3
        assert sm[("gonets_account_balance", (("account", "smsc"),))] == 10.0
        assert sm[("gonets_account_alert", (("account", "smsc"), ("alert", "low_balance")))] == 1
        assert sm[("gonets_queue_depth", (("queue", "sms.smsc.bulk"),))] == 0
        assert sm[("gonets_account_rate_limit_per_s", (("account", "smsc"),))] == 30

        def sweeps_checked() -> int:
            return sum(json.loads(f.get("result") or "{}").get("checked", 0)
                       for _, f in store.r.xrange(store.keys.runs())
                       if f["job"] == "status_sweep")

        # the counter is what the status sweeps themselves recorded they checked (read
        # between two sweeps: a sweep counts before it records its run)
        key = ("gonets_sweep_checked_total", (("job", "status_sweep"),))
        poll_until(lambda: _metrics(sport)[key] == sweeps_checked(), 10,
                   "the sweep counter to match the sweeps' records")
        # every series the Grafana dashboard draws is one we export
        dash = (Path(__file__).parent.parent / "k8s/grafana/gonets-dashboard.json").read_text()
        exported = {name for name, _ in [*wm, *sm]}
        missing = set(re.findall(r"gonets_[a-z_]+", dash)) - exported
        assert not missing, missing
    finally:
        sched.stop()
        worker.stop()
        broker.close()
        store.r.close()

    checkins = sentry_server.of_type("check_in")
    sweep = [c for c in checkins if c["monitor_slug"] == "gonets-status-sweep"]
    assert {"in_progress", "ok"} <= {c["status"] for c in sweep}
    assert sweep[0]["monitor_config"]["schedule"] == {"type": "interval", "value": 1,
                                                      "unit": "minute"}
    ok = next(c for c in sweep if c["status"] == "ok")
    assert any(c["check_in_id"] == ok["check_in_id"] and c["status"] == "in_progress"
               for c in sweep)
    assert "gonets-balance-check" in {c["monitor_slug"] for c in checkins}
    # expected flow (retries while paused, requeues) made no error events of its own
    events = sentry_server.of_type("event")
    assert all((e.get("tags") or {}).get("alert") for e in events), \
        [e.get("logentry") or e.get("exception") for e in events]
    raw = sentry_server.everything().decode()
    for i in range(3):
        assert f"37529123456{i}" not in raw and f"alert test {i}" not in raw

    # structured logs: JSON lines, the alert line with its account, no phone number
    lines = [json.loads(x) for x in (tmp_path / "worker.log").read_text().splitlines()
             if x.startswith("{")]
    assert lines and all({"ts", "level", "logger", "msg"} <= ln.keys() for ln in lines)
    alert_lines = [ln for ln in lines if ln.get("alert") == "no_funds"]
    assert len(alert_lines) == 1 and alert_lines[0]["account"] == "smsc"
    assert not any(f"37529123456{i}" in (tmp_path / "worker.log").read_text() for i in range(3))


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(httpx.get(f"http://127.0.0.1:{port}/metrics").text):
        for smp in fam.samples:
            out[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    return out


def test_metrics_endpoint_serves_sweep_figures() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    observability.sweep_done("status_sweep", 42, 0.25)
    server = observability.serve_metrics(port)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        shut_down(server)
        server.server_close()
    assert 'gonets_sweep_checked_total{job="status_sweep"}' in text
    assert "gonets_sweep_duration_seconds_count" in text




@hsettings(max_examples=100, deadline=None)
@given(prefix=st.text(max_size=30), suffix=st.text(max_size=30),
       digits=st.text(alphabet="0123456789", min_size=9, max_size=12),
       key=st.sampled_from(sorted(observability.SECRET_KEYS)), secret=st.text(min_size=1))
def test_scrub_never_lets_a_phone_or_a_keyed_secret_through(prefix, suffix, digits, key, secret):
    phone = "375" + digits
    text = f"{prefix} +{phone} {suffix}"
    out = observability.scrub({"note": text, "nested": [{key: secret}], "tags": {"to": phone}})
    assert phone not in json.dumps(out)
    assert out["nested"][0][key] == "[Filtered]"


def test_envelopes_go_over_one_kept_alive_connection_that_survives_sentry_closing_it(
        sentry_server):
    """Gonets' transport (core/observability/transport.py) sends each envelope on one
    kept-alive connection; when Sentry closes an idle connection the next envelope goes on a
    new one, and Sentry's rate limit (``X-Sentry-Rate-Limits``) still holds events back."""
    import sentry_sdk

    from tests.sentry_standin import reporting_to

    seen: dict[str, Any] = {"connections": 0, "close": False, "limit": False, "limited": []}
    base = sentry_server.server.RequestHandlerClass

    class Handler(base):  # type: ignore[misc,valid-type]
        def setup(self) -> None:
            seen["connections"] += 1
            super().setup()

        def do_POST(self) -> None:
            if seen["limit"]:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                seen["limited"].append(gzip.decompress(body))
                self.send_response(429)
                self.send_header("X-Sentry-Rate-Limits", "60:error:organization")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            close = seen["close"]  # read before answering: the test sets it once answered
            super().do_POST()
            # closed without a word: the client finds out on its next request
            self.close_connection = close

    sentry_server.server.RequestHandlerClass = Handler

    def events() -> list[str]:
        return [e["message"] for e in sentry_server.of_type("event")]

    with reporting_to(sentry_server, role="worker"):
        for i in range(3):
            sentry_sdk.capture_message(f"kept {i}")
            sentry_sdk.flush(10)
        assert events() == ["kept 0", "kept 1", "kept 2"]
        assert seen["connections"] == 1
        seen["close"] = True
        for i in range(3):
            sentry_sdk.capture_message(f"reopened {i}")
            sentry_sdk.flush(10)
        assert events()[3:] == ["reopened 0", "reopened 1", "reopened 2"]
        # the first went on the kept connection, each later one found it closed
        assert seen["connections"] == 3
        seen.update(close=False, limit=True)
        sentry_sdk.capture_message("limited")
        sentry_sdk.flush(10)
        sentry_sdk.capture_message("held back")  # dropped in the process for 60 s
        sentry_sdk.flush(10)
    assert len(sentry_server.raw) == 6
    assert b"limited" in seen["limited"][0]
    assert not any(b"held back" in body for body in seen["limited"])
