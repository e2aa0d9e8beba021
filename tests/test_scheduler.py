"""The scheduler against a real Redis: the status sweep with a real worker and the SMSC sandbox,
the leader lock, dedupe keys and coalesced misfires with two real scheduler processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.broker import build_broker, enqueue
from core.contracts import PAYMENTS_SWEEP_QUEUE, Lane, Status, send_actor, send_queue
from core.settings import Settings, load_settings
from core.store import Store, now_ms, redis_client
from producers import Producer
from scheduler import sweeps
from scheduler.service import Scheduler, latest_due
from tests.support import ROOT, WorkerProcess, control, poll_until, wait_final, write_config

DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def sched_env(gonets_env: dict[str, str], smsc: Any) -> dict[str, str]:
    """The test env, but the worker's own poll chain waits 10 minutes: only the sweep polls."""
    write_config(Path(gonets_env["GONETS_CONFIG"]), smsc.urls, first_poll_s=600, extra="""
[accounts.pay]
provider = "bepaid"
""")
    return dict(gonets_env, GONETS_STATUS_SWEEP_EVERY_S="1", GONETS_SCHEDULER_LOCK_TTL_S="3",
                GONETS_PAYMENT_SWEEP_EVERY_S="3600", GONETS_BALANCE_CHECK_EVERY_S="3600")


@pytest.fixture
def ssettings(sched_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for k in ("TEST_SMSC_LOGIN", "TEST_SMSC_PASSWORD"):
        monkeypatch.setenv(k, sched_env[k])
    return load_settings(sched_env)


@pytest.fixture
def sstore(ssettings: Settings) -> Iterator[Store]:
    s = Store(redis_client(ssettings.redis_url), namespace=ssettings.namespace)
    yield s
    s.r.close()


@pytest.fixture
def broker(ssettings: Settings) -> Iterator[Any]:
    b = build_broker(ssettings)
    yield b
    b.close()


def test_status_sweep_polls_due_messages_in_batches_and_closes_stale_ones(
        sched_env, ssettings, sstore, broker, smsc, tmp_path):
    control(smsc.urls[0], progress_s=[0.01, 0.05])  # final at the provider almost at once
    worker = WorkerProcess(sched_env, "smsc", 4, tmp_path / "worker.log")
    try:
        producer = Producer(ssettings, store=sstore, broker=broker)
        ids = [producer.send_sms(f"+37529100000{i}", f"sweep me {i}") for i in range(5)]
        poll_until(lambda: all(sstore.get(i)["status"] == "submitted" for i in ids), 20, "submits")
        assert smsc.counters["status"] == 0  # the worker's own chain waits 10 minutes
        time.sleep(0.2)

        # a message submitted 4 days ago, never finalised: beyond what the provider answers for
        stale = "stale0000000000000000000000000001"
        sstore.create(stale, {"account": "smsc", "phone": "375291110000", "text": "old"},
                      next_check_ms=0)
        sstore.transition(stale, Status.SUBMITTED, submitted_ms=now_ms() - 4 * DAY_MS)
        # an index entry whose record is gone (retention), and a queued message (its send
        # job, delayed a minute, owns it: it is looked at again later, not polled)
        sstore.r.zadd(sstore.nonfinal_key, {"ghost": 0})
        queued = "queued000000000000000000000000001"
        sstore.create(queued, {"account": "smsc", "phone": "375291110001", "text": "q"},
                      next_check_ms=0)
        enqueue(broker, send_queue("smsc", Lane.BULK), send_actor(Lane.BULK), queued,
                delay_ms=60_000)
        # queued for 10 hours and no send job left anywhere: reconciled (sent again)
        old_queued = "queued000000000000000000000000002"
        sstore.create(old_queued, {"account": "smsc", "phone": "375291110002", "text": "q"},
                      next_check_ms=0)
        sstore.update(old_queued, created_ms=now_ms() - 10 * 3600 * 1000)
        created = int(sstore.get(queued)["created_ms"])

        later = now_ms() + 11 * 60 * 1000  # the sweep runs after the worker's checks fell due
        stats = sweeps.status_sweep(sstore, broker, ssettings, now=later, batch=2)
        assert (stats.enqueued, stats.jobs, stats.closed, stats.removed) == (5, 3, 1, 1)
        assert stats.per_account == {"smsc": 5}
        assert stats.requeued == 1

        final = wait_final(sstore, ids, timeout_s=30)
        assert set(final.values()) == {"delivered"}
        assert smsc.counters["status"] >= 5
        rec = sstore.get(stale)
        assert rec["status"] == "unknown" and "no final status" in rec["reason"]
        assert sstore.r.zscore(sstore.nonfinal_key, "ghost") is None
        # not polled (its send job owns it) but kept, its next check backing off with its age
        assert sstore.r.zscore(sstore.nonfinal_key, queued) == later + (later - created)
        poll_until(lambda: sstore.get(old_queued)["status"] == "submitted", 30, "it was sent")
        assert sstore.get(old_queued)["reconciled"] == "1"

        # every id left the due range: the same sweep again finds nothing to do
        # (but the reconciled one, sent since, whose first poll falls due by then)
        again = sweeps.status_sweep(sstore, broker, ssettings, now=later, batch=2)
        assert (again.checked, again.enqueued, again.requeued) == (1, 1, 0)
        assert again.per_account == {"smsc": 1}
    finally:
        worker.stop()


def test_payment_sweep_and_balance_checks_are_enqueued_by_name(ssettings, broker, sstore):
    sched = Scheduler(ssettings, store=sstore, broker=broker)
    assert sched._payment_sweep() == {"enqueued": 1}
    ns = broker.namespace
    assert sstore.r.hlen(f"{ns}:{PAYMENTS_SWEEP_QUEUE}.msgs") == 1
    # no account has a min_balance threshold: nothing to check
    assert sched._balance_check() == {"accounts": ""}


def _runs(store: Store, ns: str = "gonets") -> list[dict[str, Any]]:
    return [dict(fields, fire_ms=int(fields["fire_ms"]))
            for _, fields in store.r.xrange(f"{ns}:scheduler:runs")]


def test_a_fire_runs_once_whoever_fires_it(ssettings, sstore, broker):
    a = Scheduler(ssettings, store=sstore, broker=broker, me="a")
    b = Scheduler(ssettings, store=sstore, broker=broker, me="b")
    assert a.tick() and not b.tick()  # a holds the lock
    assert not b.fire("status_sweep")  # only the holder fires
    fire = (now_ms() // 1000) * 1000
    assert a.run_once("status_sweep", fire)
    assert not a.run_once("status_sweep", fire)  # dedupe key: job + fire time
    assert not b.run_once("status_sweep", fire)
    assert [r["fire_ms"] for r in _runs(sstore)] == [fire]


def test_scheduler_down_for_several_slots_runs_the_missed_sweep_once(ssettings, sstore, broker):
    s = Scheduler(ssettings, store=sstore, broker=broker, me="solo")
    now = datetime.now(UTC)
    due = latest_due(s.jobs["status_sweep"].trigger, now)
    assert due is not None
    # it last ran five slots (1 s each) ago, then was down
    last = int(due.timestamp() * 1000) - 5000
    for job in s.jobs:
        s.lock.r.set(f"gonets:scheduler:last:{job}", last if job == "status_sweep"
                     else int(due.timestamp() * 1000) + 10**9)
    assert s.tick()
    runs = _runs(sstore)
    assert len(runs) == 1 and runs[0]["job"] == "status_sweep"
    assert runs[0]["fire_ms"] >= int(due.timestamp() * 1000)  # the latest missed slot only
    time.sleep(0.2)
    s.tick()
    assert len([r for r in _runs(sstore) if r["fire_ms"] <= runs[0]["fire_ms"]]) == 1
    s.lock.release()


def test_takeover_runs_the_sweep_that_fell_due_while_nobody_held_the_lock(
        ssettings, sstore, broker):
    b = Scheduler(ssettings, store=sstore, broker=broker, me="b")
    job = b.jobs["status_sweep"]
    due = latest_due(job.trigger, datetime.now(UTC))
    assert due is not None
    for name in b.jobs:
        sstore.r.set(f"gonets:scheduler:last:{name}", int(due.timestamp() * 1000))
    # the old leader died holding the lock; it expires in 2.5 s, a slot falls due meanwhile
    sstore.r.set("gonets:scheduler:leader", "dead", px=2500)
    time.sleep(1.2)
    assert not b.tick() and _runs(sstore) == []
    poll_until(lambda: b.tick(), 5, "the lock to expire")
    runs = _runs(sstore)
    assert len(runs) == 1 and runs[0]["by"] == "b"
    assert int(due.timestamp() * 1000) < runs[0]["fire_ms"] <= int(runs[0]["started_ms"])
    b.lock.release()


class SchedulerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "scheduler"], env=env,
                                     cwd=ROOT, stdout=self._fh, stderr=subprocess.STDOUT)
        poll_until(lambda: b"ready" in log.read_bytes() or self.proc.poll() is not None, 30,
              "scheduler start")
        if self.proc.poll() is not None:
            raise RuntimeError(log.read_text(errors="replace"))
        self.me = log.read_text().split("instance ")[1].split(")")[0]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()
        return self.proc.returncode


def test_two_scheduler_processes_one_fires_the_other_takes_over_and_catches_up(
        sched_env, sstore, tmp_path):
    procs: list[SchedulerProcess] = []
    try:
        a = SchedulerProcess(sched_env, tmp_path / "a.log")
        procs.append(a)
        poll_until(lambda: len(_runs(sstore)) >= 2, 20, "first sweeps")
        b = SchedulerProcess(sched_env, tmp_path / "b.log")
        procs.append(b)
        # both running for three more status sweeps (one a second): only a fires
        seen = len(_runs(sstore))
        poll_until(lambda: len(_runs(sstore)) >= seen + 3, 20, "sweeps with both running")
        assert {r["by"] for r in _runs(sstore)} == {a.me}
        a.stop(signal.SIGKILL)  # dies holding the lock: b waits for it to expire (3 s)
        killed_ms = now_ms()
        poll_until(lambda: any(r["by"] == b.me for r in _runs(sstore)), 20, "takeover")
        poll_until(lambda: sum(r["by"] == b.me for r in _runs(sstore)) >= 3, 20, "b's sweeps")
        b.stop()
        assert b.proc.returncode == 0
    finally:
        for p in procs:
            p.stop(signal.SIGKILL)

    runs = [r for r in _runs(sstore) if r["job"] == "status_sweep"]
    fires = [r["fire_ms"] for r in runs]
    assert len(fires) == len(set(fires)), "a fire ran twice"
    by_a = [r for r in runs if r["by"] == a.me]
    by_b = [r for r in runs if r["by"] == b.me]
    assert max(r["fire_ms"] for r in by_a) < min(r["fire_ms"] for r in by_b)
    first_b = min(by_b, key=lambda r: r["fire_ms"])
    assert first_b["fire_ms"] > killed_ms
    # the slots that fell due while nobody held the lock were coalesced, not run one by one
    gap_slots = (first_b["fire_ms"] - max(r["fire_ms"] for r in by_a)) / 1000
    assert gap_slots >= 2
    # the lock was released on SIGTERM: nobody holds it now
    assert sstore.r.get("gonets:scheduler:leader") is None
    assert b"Traceback" not in (tmp_path / "b.log").read_bytes()




@hsettings(max_examples=30, deadline=None)
@given(every_s=st.floats(min_value=0.5, max_value=7200),
       offset_s=st.floats(min_value=0, max_value=10**8),
       cron=st.sampled_from(["5 * * * *", "*/15 * * * *", "0 3 * * 1"]))
def test_latest_due_is_the_last_fire_at_or_before_now(every_s, offset_s, cron):
    from datetime import timedelta

    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    from scheduler.service import ANCHOR

    now = ANCHOR + timedelta(seconds=offset_s)
    for trig in (IntervalTrigger(seconds=every_s, start_date=ANCHOR, timezone=UTC),
                 CronTrigger.from_crontab(cron, timezone=UTC)):
        due = latest_due(trig, now)
        if due is None:
            continue
        assert due <= now
        nxt = trig.get_next_fire_time(due, now)
        assert nxt is None or nxt > now or (nxt - now).total_seconds() < 1e-3
