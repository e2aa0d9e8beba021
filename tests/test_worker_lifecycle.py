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


def test_a_dead_workers_jobs_go_back_ahead_of_the_backlog(settings):
    """A job a SIGKILLed worker held may have been started (an SMPP submit on the wire, its
    answer lost with the worker): it goes back to the head of its queue, so its retry comes
    within the provider's duplicate window (SMSC: one identical request a minute, a safe
    resend) instead of behind every message queued since, when only a receipt could tell."""
    from dramatiq.common import current_millis

    from core.broker import build_broker, enqueue, maintain

    broker = build_broker(settings)
    try:
        queue = "lifecycle-requeue"
        ids = [enqueue(broker, queue, "send_sms", f"m{i}").options["redis_message_id"]
               for i in range(4)]
        # a worker whose last heartbeat is long gone fetched the first job (dramatiq's own
        # fetch: the job is in that worker's ack set)
        old = current_millis() - 10 * broker.heartbeat_timeout
        got = broker.scripts["dispatch"](
            keys=[broker.namespace],
            args=["fetch", old, queue, "dead-worker", broker.heartbeat_timeout,
                  broker.dead_message_ttl, 0, broker._max_unpack_size(), 1])
        assert len(got) == 1
        for i in range(4, 6):  # more messages queued meanwhile
            ids.append(enqueue(broker, queue, "send_sms", f"m{i}").options["redis_message_id"])
        maintain(broker, [queue])
        waiting = [x.decode() for x in broker.client.lrange(f"{broker.namespace}:{queue}", 0, -1)]
        assert waiting == ids  # the dead worker's job first, then the rest in their order
    finally:
        broker.close()
