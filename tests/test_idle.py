"""An idle worker pool costs Redis its heartbeat and nothing else, and still takes a new job at
once: the enqueue rings its doorbell (core/doorbell.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.store import Store
from tests.support import WorkerProcess

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
