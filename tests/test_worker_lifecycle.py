"""The worker and the CLI as a user meets them: graceful SIGTERM, the demo progress bar."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.support import ROOT, control, wait_final


def test_sigterm_drains_in_flight_sends_before_exiting(producer, store, smsc, start_worker):
    control(smsc.urls[0], delay_s=1.5)
    w = start_worker(threads=4)
    ids = [producer.send_sms(f"+37529{7000000 + i}", f"drain {i}") for i in range(4)]
    deadline = time.monotonic() + 20
    while not all(store.r.hget(store.msg_key(i), "inflight_ms") for i in ids):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert w.stop(signal.SIGTERM, timeout=30) == 0
    # every in-flight send finished and was recorded before the process exited
    assert [store.get(i)["status"] for i in ids] == ["submitted"] * 4
    assert smsc.counters["accepted"] == 4


def test_demo_shows_progress_until_all_final(gonets_env, smsc, start_worker):
    start_worker(threads=4)
    out = subprocess.run([sys.executable, "-m", "cli.main", "send", "--demo", "5"],
                         env=gonets_env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert '"sent": 5' in out.stdout and '"delivered": 5' in out.stdout
    assert "final" in out.stderr and "5/5" in out.stderr  # tqdm's bar


def test_cli_send_reports_bad_input_by_field(gonets_env):
    out = subprocess.run([sys.executable, "-m", "cli.main", "send", "--to", "12", "--text", "x"],
                         env=gonets_env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("gonets: invalid to:")


def test_status_of_an_unknown_id_is_a_clear_error(gonets_env):
    out = subprocess.run([sys.executable, "-m", "cli.main", "status", "nope"],
                         env=gonets_env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1 and "no message nope" in out.stderr


def test_options_reach_the_provider(producer, store, smsc, start_worker):
    start_worker(threads=2)
    msg_id = producer.send_sms("+375291230000", "flash!", options={"format": "flash",
                                                                   "translit": 1})
    wait_final(store, [msg_id])
    sent = next(r["params"] for r in smsc.log.items() if r["path"] == "/sys/send.php")
    assert sent["flash"] == "1" and sent["translit"] == "1" and sent["sender"] == "Gonets"
