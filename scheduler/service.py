"""``gonets scheduler``: one APScheduler process firing the sweeps, under a Redis leader lock.

Jobs (times in UTC):

    status_sweep    cron ``status_sweep_cron`` (hourly), or every ``status_sweep_every_s``
    payment_sweep   every ``payment_sweep_every_s`` (5 min)
    balance_check   every ``balance_check_every_s`` (15 min)

Interval jobs are anchored at a fixed instant, so every replica computes the same fire
times and the dedupe key of a fire is the same everywhere.  Each replica's APScheduler fires
on time; a fire runs only if this replica holds the leader lock and takes the fire's dedupe
key.  A tick (a third of the lock ttl) renews the lock and, while we hold it, runs any job
whose latest due fire time is newer than its last run: the sweep that was due while nobody
held the lock, or while the scheduler was down, runs once (misfires coalesced), never once
per missed slot.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from core import observability
from core.broker import build_broker
from core.settings import Settings, get_settings
from core.signals import set_from_handler
from core.store import Store, now_ms
from scheduler import sweeps
from scheduler.leader import LeaderLock

log = logging.getLogger("gonets.scheduler")

#: interval jobs fire at ANCHOR + k * interval, the same instants in every replica
ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)
#: how far back a cron job's fires are looked for: without a last run, and at most
CRON_LOOKBACK = timedelta(days=2)
CRON_LOOKBACK_MAX = timedelta(days=31)
RUNS_MAXLEN = 10_000


@dataclass(frozen=True)
class Job:
    name: str
    trigger: BaseTrigger
    #: Sentry Crons monitor schedule
    monitor: dict[str, Any]
    run: Callable[[], dict[str, Any]]


def _interval(seconds: float) -> tuple[BaseTrigger, dict[str, Any]]:
    trig = IntervalTrigger(seconds=seconds, start_date=ANCHOR, timezone=UTC)
    minutes = max(1, round(seconds / 60))
    return trig, {"type": "interval", "value": minutes, "unit": "minute"}


def latest_due(trigger: BaseTrigger, now: datetime,
               since: datetime | None = None) -> datetime | None:
    """The latest fire time of ``trigger`` at or before ``now`` (after ``since``, if given)."""
    if isinstance(trigger, IntervalTrigger):
        step = trigger.interval_length
        start = trigger.start_date.timestamp()
        k = int((now.timestamp() - start) // step)
        if k < 0:
            return None
        t = datetime.fromtimestamp(start + k * step, tz=UTC)
    else:
        begin = now - CRON_LOOKBACK if since is None else max(since, now - CRON_LOOKBACK_MAX)
        t = None
        nxt = trigger.get_next_fire_time(None, begin)
        while nxt is not None and nxt <= now:
            t = nxt
            nxt = trigger.get_next_fire_time(nxt, now)
    if t is None or (since is not None and t <= since):
        return None
    return t


def _ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


class Scheduler:
    def __init__(self, settings: Settings, *, store: Store | None = None,
                 broker: Any = None, me: str | None = None) -> None:
        self.settings = settings
        self.store = store or Store.from_settings(settings)
        self.broker = broker if broker is not None else build_broker(settings)
        # the leader lease and the fires' bookkeeping (core/locks.py, scheduler/leader.py)
        self.lock = LeaderLock(self.store.r, settings.namespace, settings.scheduler_lock_ttl_s,
                               me=me)
        self.jobs = {j.name: j for j in self._jobs()}
        self._job_locks = {name: threading.Lock() for name in self.jobs}
        self._stop = threading.Event()
        self.leader = False
        self.aps: BackgroundScheduler | None = None

    def _jobs(self) -> list[Job]:
        s = self.settings
        if s.status_sweep_every_s:
            st, sm = _interval(s.status_sweep_every_s)
        else:
            st = CronTrigger.from_crontab(s.status_sweep_cron, timezone=UTC)
            sm = {"type": "crontab", "value": s.status_sweep_cron}
        pt, pm = _interval(s.payment_sweep_every_s)
        bt, bm = _interval(s.balance_check_every_s)
        return [
            Job("status_sweep", st, sm, self._status_sweep),
            Job("payment_sweep", pt, pm, self._payment_sweep),
            Job("balance_check", bt, bm, self._balance_check),
        ]

    # --- the jobs
    def _status_sweep(self) -> dict[str, Any]:
        stats = sweeps.status_sweep(self.store, self.broker, self.settings)
        observability.sweep_done("status_sweep", stats.checked, stats.duration_s)
        return {"checked": stats.checked, "enqueued": stats.enqueued, "jobs": stats.jobs,
                "closed": stats.closed, "removed": stats.removed, "requeued": stats.requeued,
                "dead_lettered": stats.dead_lettered}

    def _payment_sweep(self) -> dict[str, Any]:
        return {"enqueued": int(sweeps.payment_sweep(self.broker, self.settings))}

    def _balance_check(self) -> dict[str, Any]:
        return {"accounts": ",".join(sweeps.balance_checks(self.broker, self.settings))}

    # --- firing
    def fire(self, name: str) -> bool:
        """APScheduler's entry: run the job's current fire if we lead and nobody ran it."""
        if self._stop.is_set() or not self.lock.hold():
            return False
        due = latest_due(self.jobs[name].trigger, datetime.now(UTC))
        return due is not None and self.run_once(name, _ms(due))

    def run_once(self, name: str, fire_ms: int) -> bool:
        """Run one fire of ``name`` unless its dedupe key is taken. True if it ran here."""
        job = self.jobs[name]
        with self._job_locks[name]:
            if not self.lock.claim_fire(name, fire_ms):
                return False
            started = now_ms()
            log.info("%s: firing (due %s)", name, _iso(fire_ms))
            with observability.cron_checkin(name, job.monitor):
                result: dict[str, Any] = {}
                try:
                    result = job.run()
                finally:
                    self.lock.record_run(name, fire_ms, started, now_ms(), json.dumps(result),
                                         maxlen=RUNS_MAXLEN)
            log.info("%s: done in %.2f s %s", name, (now_ms() - started) / 1000, result)
            return True

    def catch_up(self) -> list[str]:
        """Run, once each, the jobs whose latest due fire is newer than their last run."""
        ran = []
        now = datetime.now(UTC)
        for name, job in self.jobs.items():
            last = self.lock.last_fire_ms(name)
            if last is None:
                # first start ever: count from now on, nothing is owed
                due = latest_due(job.trigger, now)
                if due is not None:
                    self.lock.set_last_fire_ms(name, _ms(due))
                continue
            since = datetime.fromtimestamp(last / 1000, tz=UTC)
            due = latest_due(job.trigger, now, since=since)
            if due is not None and _ms(due) > last:
                lk = self._job_locks[name]
                if lk.locked():
                    continue  # running now; the next tick looks again
                log.info("%s: fire due %s was missed; running it once now", name, _iso(_ms(due)))
                try:
                    if self.run_once(name, _ms(due)):
                        ran.append(name)
                except Exception:
                    log.exception("%s: catch-up run failed", name)
        return ran

    def tick(self) -> bool:
        leader = self.lock.hold()
        if leader != self.leader:
            log.info("scheduler %s: %s", self.lock.me,
                     "now the leader" if leader else "no longer the leader")
            self.leader = leader
            observability.set_gauge("scheduler_leader", 1.0 if leader else 0.0)
        if leader:
            self.catch_up()
        return leader

    # --- process
    def start(self) -> None:
        self.aps = BackgroundScheduler(timezone=UTC)
        for name, job in self.jobs.items():
            self.aps.add_job(self._safe_fire, job.trigger, args=[name], id=name, name=name,
                             coalesce=True, max_instances=1, misfire_grace_time=None)
        self.aps.start()

    def _safe_fire(self, name: str) -> None:
        try:
            self.fire(name)
        except Exception:
            log.exception("%s failed", name)

    def run_forever(self) -> None:
        tick_s = max(self.settings.scheduler_lock_ttl_s / 3, 0.05)
        self.start()
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # Redis blip: keep trying; the lock expires if we cannot renew
                log.warning("scheduler tick failed", exc_info=True)
            self._stop.wait(tick_s)

    def stop(self) -> None:
        self._stop.set()
        if self.aps is not None:
            self.aps.shutdown(wait=True)
            self.aps = None
        try:
            if self.lock.release():
                log.info("scheduler %s: leader lock released", self.lock.me)
        except Exception:
            log.warning("could not release the leader lock; it expires by itself", exc_info=True)
        self.broker.close()


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def run() -> int:
    settings = get_settings()
    sched = Scheduler(settings)
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %s: stopping the scheduler", signal.Signals(signum).name)
        set_from_handler(sched._stop, done)  # the main thread may hold their locks

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.metrics_port:
        observability.register_store_collector(settings)
        observability.serve_metrics(settings.metrics_port)
    print(f"gonets scheduler: ready (instance {sched.lock.me})", flush=True)
    t = threading.Thread(target=sched.run_forever, name="gonets-scheduler", daemon=True)
    t.start()
    while not done.wait(0.5):
        if not t.is_alive():
            break
    sched.stop()
    t.join(timeout=5)
    return 0
