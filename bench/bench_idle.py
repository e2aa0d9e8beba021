"""Issue 15 idle figures: what ``make run`` (``gonets run``: Redis, the sandboxes, a worker pool
per account, the scheduler, the HTTP API, the callbacks dispatcher) costs with nothing to do.

Over ``BENCH_IDLE_S`` seconds (60) after it is up and settled: the CPU of its whole process
tree in % of one core (Redis included), the commands its Redis ran per second (INFO
commandstats, scripts' commands included), the write commands among them, and the append-only
file's growth.  MONITOR over a few seconds names who sends what (the note lists the top
commands).  The host's load average is in the note: on a shared host the CPU figure is
inflated by contention.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import redis

from bench.common import ROOT, result

IDLE_S = float(os.environ.get("BENCH_IDLE_S", "60"))
SETTLE_S = float(os.environ.get("BENCH_IDLE_SETTLE_S", "15"))

#: commands that change data (what an idle cluster should not do but for heartbeats)
WRITES = {"set", "setex", "psetex", "del", "unlink", "expire", "pexpire", "hset", "hdel",
          "hincrby", "hmset", "zadd", "zrem", "zremrangebyscore", "sadd", "srem", "rpush",
          "lpush", "lpop", "rpop", "lrem", "ltrim", "xadd", "xtrim", "incr", "incrby",
          "getdel", "rename", "smove", "zpopmin", "brpoplpush", "lmove", "blmove"}


def _tree_cpu(p: psutil.Process) -> float:
    total = 0.0
    for q in [p, *p.children(recursive=True)]:
        try:
            t = q.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _stats(r: redis.Redis) -> Counter[str]:
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"])
                    for k, v in r.info("commandstats").items()})


def _sample_monitor(url: str, seconds: float) -> Counter[str]:
    """Top-level commands (not scripts' own) by name (a script's by its first key)."""
    seen: Counter[str] = Counter()
    end = "gonets-bench-idle-end"
    r = redis.Redis.from_url(url, decode_responses=True)

    def stop() -> None:
        time.sleep(seconds)
        r2 = redis.Redis.from_url(url)
        r2.echo(end)
        r2.close()

    threading.Thread(target=stop, daemon=True).start()
    with r.monitor() as m:
        for cmd in m.listen():
            text = cmd.get("command", "")
            if end in text:
                break
            if cmd.get("client_type") == "lua":
                continue
            parts = text.split()
            name = parts[0].lower() if parts else "?"
            if name == "evalsha" and len(parts) > 3:
                name = f"evalsha {parts[3]}"  # the first key says which script
            seen[re.sub(r"[0-9a-f-]{16,}", "<id>", name)] += 1
    r.close()
    return seen


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="gonets-bench-idle-") as d:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GONETS_")}
        env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        log = Path(d) / "run.log"
        with open(log, "wb") as out:
            p = subprocess.Popen([sys.executable, "-m", "cli.main", "run"], cwd=d, env=env,
                                 stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            url = None
            while url is None:
                m = re.search(r"GONETS_REDIS_URL=(\S+)", _run_file(Path(d)))
                url = m.group(1) if m else None
                if p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gonets run did not start: "
                                       + log.read_text(errors="replace")[-3000:])
                time.sleep(0.5)
            time.sleep(SETTLE_S)
            r = redis.Redis.from_url(url, decode_responses=True)
            proc = psutil.Process(p.pid)
            n_procs = 1 + len(proc.children(recursive=True))
            aof = next(Path(d).rglob("*.aof*"), None)
            aof_dir = aof.parent if aof is not None else None
            size0 = _dir_size(aof_dir)
            s0, c0, t0 = _stats(r), _tree_cpu(proc), time.monotonic()
            time.sleep(IDLE_S)
            s1, c1, t1 = _stats(r), _tree_cpu(proc), time.monotonic()
            size1 = _dir_size(aof_dir)
            sample = _sample_monitor(url, min(10.0, IDLE_S))
            r.close()
        finally:
            p.terminate()
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    wall = t1 - t0
    calls = s1 - s0
    calls.pop("info", None)  # this bench's own
    writes = sum(n for k, n in calls.items() if k.split("|")[0] in WRITES)
    top = ", ".join(f"{k} {n / min(10.0, IDLE_S):.1f}/s" for k, n in sample.most_common(6))
    load = os.getloadavg()[0]
    return [
        result("idle_cpu_pct", (c1 - c0) / wall * 100, "% core", target="<= 5",
               note=f"make run's {n_procs} processes over {wall:.0f} s idle; host load "
                    f"{load:.1f}"),
        result("idle_redis_cmds_per_s", sum(calls.values()) / wall, "cmd/s", target="<= 50",
               note=f"scripts' commands included; top-level by sender: {top}"),
        result("idle_redis_writes_per_s", writes / wall, "cmd/s",
               note="write commands (heartbeats included)"),
        result("idle_aof_growth_kb_per_min", (size1 - size0) / 1024 / wall * 60, "kB/min",
               note="append-only file growth while idle"),
    ]


def _run_file(d: Path) -> str:
    """``gonets run``'s run file (cli/runfile.py), once written: it names its Redis."""
    try:
        return (d / ".gonets" / "run.env").read_text(errors="replace")
    except OSError:
        return ""


def _dir_size(d: Path | None) -> int:
    if d is None:
        return 0
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


if __name__ == "__main__":
    for r in run():
        print(r)
