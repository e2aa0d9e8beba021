"""A paused account's waiting messages say why they wait, in `gonets status` and the API, and
the worker's terminal is not flooded with dramatiq's per-retry lines meanwhile."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.support import control

ROOT = Path(__file__).resolve().parent.parent


def test_a_paused_accounts_messages_show_why_they_wait(gonets_env, smsc, producer, store,
                                                      start_worker, client):
    control(smsc.urls[0], balance=0)
    worker = start_worker(threads=2)
    ids = [producer.send_sms(f"+37529555{i:04d}", f"wait {i}", producer="shop")
           for i in range(5)]
    deadline = time.monotonic() + 30
    while not all(store.r.hget(f"gonets:msg:{i}", "waiting_reason") for i in ids):
        assert time.monotonic() < deadline, [store.get(i) for i in ids]
        time.sleep(0.2)

    shown = subprocess.run([sys.executable, "-m", "cli.main", "status", ids[0]],
                           env=gonets_env, cwd=ROOT, capture_output=True, text=True,
                           timeout=60).stdout
    assert "  waiting: account smsc is paused" in shown, shown
    got = client.get(f"/v1/sms/{ids[1]}").json()
    assert got["status"] in ("queued", "deferred")
    assert got["waiting_reason"].startswith("account smsc is paused"), got
    as_json = subprocess.run([sys.executable, "-m", "cli.main", "status", ids[1], "--json"],
                             env=gonets_env, cwd=ROOT, capture_output=True, text=True,
                             timeout=60).stdout
    assert '"waiting_reason": "account smsc is paused' in as_json

    # money again: after the pause they go, and no longer say they wait
    control(smsc.urls[0], balance=1000)
    deadline = time.monotonic() + 60
    while not all(store.r.hget(f"gonets:msg:{i}", "status") == "delivered" for i in ids):
        assert time.monotonic() < deadline, [store.get(i)["status"] for i in ids]
        time.sleep(0.3)
    assert "waiting_reason" not in client.get(f"/v1/sms/{ids[1]}").json()
    worker.stop()
    log = worker.log.read_text(errors="replace")
    assert "Retrying message" not in log, log  # expected waits are not info lines
    assert "paused" in log  # the pause itself is said, once


def test_debug_level_shows_the_retries(gonets_env, smsc, producer, store, tmp_path):
    """At debug level nothing is hidden."""
    from tests.conftest import WorkerProcess

    control(smsc.urls[0], balance=0)
    w = WorkerProcess({**gonets_env, "GONETS_LOG_LEVEL": "debug"}, "smsc", 2,
                      tmp_path / "debug.log")
    try:
        producer.send_sms("+375295550999", "debug wait")
        deadline = time.monotonic() + 30
        while "Retrying message" not in w.log.read_text(errors="replace"):
            assert time.monotonic() < deadline, w.log.read_text(errors="replace")
            time.sleep(0.2)
    finally:
        w.stop()
