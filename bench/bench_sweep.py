"""The status sweep over 1,000,000 non-final messages (issue 7): every due poll enqueued within
60 s, under 200 MB.

A fresh redis-server holds 1,000,000 submitted records (made server-side by a Lua loop, so
filling it costs the bench process nothing) and their ``nonfinal`` index, all due.  Two child
processes then run against it, each timed on its own with its own peak memory (``VmHWM`` of
its own address space: ``ru_maxrss`` is carried across exec, and a child that subprocess starts
with vfork reports the bench process's peak, 236 MB after the other benches, instead of its own):

    baseline  read the whole index from Redis in batches (ZRANGE by rank), nothing else
    sweep     ``scheduler.sweeps.status_sweep``: read the index and records, move every next
              check time, enqueue the poll jobs (500 ids each) on the account's status queue

``python -m bench --only sweep`` (or ``python -m bench.bench_sweep [N]``).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
N = 1_000_000
BATCH = 500
TARGET_S = 60.0
TARGET_MB = 200.0

_FILL = """
local n0, n1, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = n0, n1 - 1 do
    local id = string.format("bench%027d", i)
    redis.call("hset", KEYS[1] .. id, "id", id, "account", "smsc", "provider", "smsc_http",
               "status", "submitted", "status_rank", "1", "phone", "375290000000",
               "created_ms", now - 3600000, "submitted_ms", now - 3600000, "seq", i)
    redis.call("zadd", KEYS[2], now - 60000 + (i % 1000), id)
end
return n1 - n0
"""


def _fill(url: str, n: int) -> float:
    import redis

    r = redis.Redis.from_url(url, socket_timeout=300)
    fill = r.register_script(_FILL)
    now = int(time.time() * 1000)
    t0 = time.perf_counter()
    step = 10_000
    for start in range(0, n, step):
        fill(keys=["gonets:msg:", "gonets:nonfinal"], args=[start, min(start + step, n), now])
    r.close()
    return time.perf_counter() - t0


def _peak_mb() -> float:
    """This process's own peak resident memory since its exec (Linux: VmHWM)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: macOS counts bytes
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _child(mode: str, url: str, n: int) -> dict[str, Any]:
    """Runs in a fresh process: one measured pass, then its time and peak memory."""
    import redis

    from core.broker import build_broker
    from core.settings import Settings
    from core.store import Store, redis_client

    settings = Settings.model_validate({
        "redis_url": url,
        "accounts": [{"name": "smsc", "provider": "smsc_http", "base_urls": ["http://x"]}]})
    out: dict[str, Any] = {"mode": mode}
    if mode == "read":
        r = redis.Redis.from_url(url, decode_responses=True)
        t0 = time.perf_counter()
        seen = 0
        while True:
            ids = r.zrange("gonets:nonfinal", seen, seen + BATCH - 1)
            if not ids:
                break
            seen += len(ids)
        out.update(seconds=time.perf_counter() - t0, count=seen)
    else:
        from scheduler import sweeps

        store = Store(redis_client(url))
        broker = build_broker(settings)
        t0 = time.perf_counter()
        stats = sweeps.status_sweep(store, broker, settings, batch=BATCH)
        out.update(seconds=time.perf_counter() - t0, count=stats.enqueued, jobs=stats.jobs,
                   checked=stats.checked)
        due = store.r.zcount("gonets:nonfinal", "-inf", int(time.time() * 1000))
        queued = store.r.hlen(f"{broker.namespace}:sms.smsc.status.msgs")
        out.update(still_due=due, jobs_in_queue=queued)
        broker.close()
    out["peak_mb"] = _peak_mb()
    return out


def _run_child(mode: str, url: str, n: int) -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-m", "bench.bench_sweep", "--child", mode, url, str(n)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def run(n: int = N) -> list[dict[str, Any]]:
    from core.embedded_redis import RedisServer

    with tempfile.TemporaryDirectory() as tmp:
        srv = RedisServer(Path(tmp)).start()
        try:
            fill_s = _fill(srv.url, n)
            base = _run_child("read", srv.url, n)
            sweep = _run_child("sweep", srv.url, n)
        finally:
            srv.stop()
    assert base["count"] == n, base
    assert sweep["count"] == n and sweep["still_due"] == 0, sweep
    assert sweep["jobs_in_queue"] == sweep["jobs"], sweep
    print(f"sweep bench: filled {n} records in {fill_s:.1f} s; read index {base['seconds']:.2f} s "
          f"({base['peak_mb']:.0f} MB); sweep {sweep['seconds']:.2f} s "
          f"({sweep['peak_mb']:.0f} MB), {sweep['jobs']} jobs", file=sys.stderr)
    return [
        {"name": "sweep_1m_s", "value": round(sweep["seconds"], 2), "unit": "s",
         "baseline": round(base["seconds"], 2),
         "ratio": round(sweep["seconds"] / base["seconds"], 2), "target": f"<= {TARGET_S:g}"},
        {"name": "sweep_1m_mb", "value": round(sweep["peak_mb"], 1), "unit": "MB",
         "baseline": round(base["peak_mb"], 1),
         "ratio": round(sweep["peak_mb"] / base["peak_mb"], 2), "target": f"<= {TARGET_MB:g}"},
    ]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    else:
        for row in run(int(sys.argv[1]) if len(sys.argv) > 1 else N):
            print(json.dumps(row))
