"""An idle worker pool costs Redis its heartbeat and nothing else, and still takes a new job at
once: the enqueue rings its doorbell (core/doorbell.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from core.store import Store
from tests.support import WorkerProcess, control, poll_until, write_config

#: commands that change data
WRITES = {"set", "del", "unlink", "expire", "pexpire", "hset", "hdel", "hincrby", "zadd",
          "zrem", "zremrangebyscore", "sadd", "srem", "rpush", "lpush", "lpop", "rpop",
          "xadd", "incr", "evalsha", "eval"}


def _calls(store: Store) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): int(v["calls"])
            for k, v in store.r.info("commandstats").items()}


@pytest.mark.timeout(120)
def test_an_idle_pool_writes_only_its_heartbeat_and_a_send_wakes_it(
        gonets_env: dict[str, str], tmp_path: Path, store: Store, producer) -> None:
    # an hour between idle polls: only the doorbell can bring the message to the worker
    env = {**gonets_env, "GONETS_IDLE_POLL_S": "3600", "GONETS_MAINTENANCE_INTERVAL_S": "1"}
    w = WorkerProcess(env, "smsc", 4, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 30
        while b"consuming" not in w.log.read_bytes():
            assert w.proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(3)  # its first look at each queue, its first maintenance pass
        before = _calls(store)
        t0 = time.monotonic()
        time.sleep(4)
        after = _calls(store)
        idle_s = time.monotonic() - t0
        made = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        made["info"] -= 1  # ours
        writes = {k: n for k, n in made.items() if n and k.split("|")[0] in WRITES}
        # one heartbeat per maintenance interval (1 s), nothing else written
        assert set(writes) <= {"zadd"}, writes
        assert writes.get("zadd", 0) <= idle_s + 1
        msg_id = producer.send_sms("+375291234567", "wake up")
        deadline = time.monotonic() + 60
        while store.r.hget(store.msg_key(msg_id), "status") == "queued":
            assert time.monotonic() < deadline, "the doorbell did not wake the pool"
            time.sleep(0.05)
    finally:
        w.stop()


class _Fetches:
    """dramatiq's dispatch ``fetch`` calls Redis received, by queue, while the block runs
    (MONITOR)."""

    END = "gonets-test-end"

    def __init__(self, store: Store, dispatch_sha: str) -> None:
        self.store, self.sha = store, dispatch_sha
        self.by_queue: dict[str, int] = {}

    def __enter__(self) -> _Fetches:
        ready = threading.Event()
        self._t = threading.Thread(target=self._watch, args=(ready,), daemon=True)
        self._t.start()
        assert ready.wait(10)
        return self

    def _watch(self, ready: threading.Event) -> None:
        with self.store.r.monitor() as m:
            ready.set()
            for cmd in m.listen():
                words = cmd.get("command", "").split()
                if self.END in words:
                    return
                if len(words) > 4 and words[0].lower() == "evalsha" and words[1] == self.sha \
                        and words[4] == "fetch":
                    queue = words[6]
                    self.by_queue[queue] = self.by_queue.get(queue, 0) + 1

    def __exit__(self, *exc: object) -> None:
        self.store.r.echo(self.END)
        self._t.join(10)


@pytest.mark.timeout(120)
def test_a_busy_pool_fetches_jobs_a_few_at_a_time_and_delayed_jobs_at_its_idle_look(
        gonets_env: dict[str, str], tmp_path: Path, smsc, store: Store, producer) -> None:
    """A backlog worked through at the provider's pace: the consumer waits for its jobs' acks
    and fetches several at once (not an LLEN and a fetch per job), and the poll jobs each send
    leaves, due in ten minutes, are fetched by the delay queue's idle look, not by polling
    Redis every few milliseconds for as long as sends keep adding them."""
    write_config(Path(gonets_env["GONETS_CONFIG"]), smsc.urls, first_poll_s=600)
    control(smsc.urls[0], delay_s=0.2)  # a provider's round trip: every thread is busy
    idle_poll_s = 1.5
    w = WorkerProcess({**gonets_env, "GONETS_IDLE_POLL_S": str(idle_poll_s)}, "smsc", 8,
                      tmp_path / "worker.log")
    n = 120
    try:
        with _Fetches(store, producer.broker.scripts["dispatch"].sha) as fetches:
            t0 = time.monotonic()
            ids = [producer.send_sms(f"+37529{3000000 + i}", f"backlog {i}") for i in range(n)]
            poll_until(lambda: all(store.r.hget(store.msg_key(i), "status") == "submitted"
                                   for i in ids), timeout_s=60, what="every message submitted")
            took_s = time.monotonic() - t0
    finally:
        w.stop()
    # 8 threads, a prefetch of 16: a fetch once a quarter of it is free (4 jobs)
    assert fetches.by_queue.get("sms.smsc.bulk", 0) <= n / 3, fetches.by_queue
    # the poll jobs' queue: one idle look per idle_poll_s while the sends went on (30/s)
    assert fetches.by_queue.get("sms.smsc.status.DQ", 0) <= took_s / idle_poll_s + 2, \
        (took_s, fetches.by_queue)
