"""Redis under Sentinel: three redis-server processes (a master, two replicas) and three
Sentinels, a real worker pool and producer on ``redis+sentinel://``, the SMSC sandbox over HTTP.
The master dies mid-batch; the Sentinels promote a replica; every message reaches the sandbox
exactly once and every record ends final, with no one stepping in."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from core.broker import build_broker
from core.contracts import Status
from core.settings import load_settings
from core.store import Store
from producers import Producer
from tests.sentinel_cluster import SentinelCluster
from tests.support import WorkerProcess, free_port, poll_until

N = 150
FINAL = {s.value for s in Status if s.final}


def _statuses(store: Store, ids: list[str]) -> dict[str, str]:
    try:
        pipe = store.r.pipeline()
        for i in ids:
            pipe.hget(store.msg_key(i), "status")
        return {i: str(s) for i, s in zip(ids, pipe.execute(), strict=True)}
    except redis.RedisError as exc:
        return dict.fromkeys(ids, type(exc).__name__)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    c = SentinelCluster(tmp_path / "sentinel").start()
    yield c
    c.stop()


@pytest.mark.parametrize("how", ["failover", "kill"])
def test_a_master_failing_mid_batch_loses_nothing_and_doubles_nothing(
        how: str, cluster: SentinelCluster, gonets_env: dict[str, str], smsc: Any,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``failover``: an operator's SENTINEL FAILOVER (the master is demoted, its clients cut
    off); ``kill``: the master's process SIGKILLed (no master for ~2 s until the Sentinels agree
    it is down and promote a replica)."""
    # a Sentinel that is gone (first in the list) is skipped for the next one
    url = cluster.url.replace("://", f"://127.0.0.1:{free_port()},", 1)
    env = {**gonets_env, "GONETS_REDIS_URL": url}
    for k in ("TEST_SMSC_LOGIN", "TEST_SMSC_PASSWORD"):
        monkeypatch.setenv(k, env[k])
    settings = load_settings(env)
    store = Store.from_settings(settings)
    broker = build_broker(settings)
    worker = WorkerProcess(env, "smsc", 8, tmp_path / "worker.log")
    try:
        producer = Producer(settings, store=store, broker=broker)
        ids = [producer.send_sms(f"+37529{3000000 + i}", f"sentinel test {i}")
               for i in range(N)]
        poll_until(lambda: smsc.counters["accepted"] >= N // 4, 60, "a quarter to be sent")
        old = cluster.master_port()
        cluster.kill(old) if how == "kill" else cluster.failover()
        killed_at = time.monotonic()
        assert smsc.counters["accepted"] < N, "the batch was done before the master died"
        poll_until(lambda: cluster.master_port() != old, 30, "the Sentinels to promote a replica")
        promoted_s = time.monotonic() - killed_at

        final = _statuses(store, ids)
        deadline = time.monotonic() + 150  # generous: a loaded host is slow, not wrong
        while time.monotonic() < deadline and not all(
                s in FINAL for s in final.values()):
            time.sleep(0.5)
            final = _statuses(store, ids)
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert set(final.values()) == {"delivered"}, (
            Counter(final.values()), smsc.counters, log[-4000:],
            [store.find(i) for i, s in final.items() if s != "delivered"][:3])
        texts = Counter(m.text for m in smsc.messages.values())
        assert smsc.counters["accepted"] == N and set(texts.values()) == {1}, \
            [t for t, n in texts.items() if n > 1]
        assert worker.proc.poll() is None, "the worker died instead of reconnecting"
        if how == "failover":  # a planned switch shows nowhere: no error, no retry
            assert '"level": "error"' not in log and '"level": "critical"' not in log, log[-3000:]
        print(f"promoted after {promoted_s:.1f} s; all final after "
              f"{time.monotonic() - killed_at:.1f} s")
    finally:
        worker.stop()
        broker.close()
        store.close()
