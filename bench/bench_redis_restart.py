"""Issue 20 part 2 figures: Redis restarted under working pools, judged by what the SMSC
sandbox accepted and where the records end.

Two workers (8 threads each) of one SMSC account on a Redis with the production overlay's
persistence (``appendonly yes``, ``appendfsync everysec``). The batch is queued first, then
Redis is stopped while the workers are sending it and started again on the same port and dir
(the issue's scenarios):

    kill      2,000 messages, Redis SIGKILLed once a third is accepted, down ~3 s
    term+kill 3,000 messages, Redis SIGTERMed at a quarter (down ~2.8 s), SIGKILLed at two
              thirds (down ~3.3 s)

Figures (each scenario's worst):

    redis_restart_lost      messages the sandbox never accepted (records Redis's AOF lost
                            count here too)
    redis_restart_stuck     records not final once the run has settled (no record changed for
                            SETTLE_S, or SETTLE_MAX_S after the last restart)
    redis_restart_resume_s  from Redis answering again to the sandbox's next accepted send

The baseline is the same scenario with dramatiq's own worker, consumer threads, broker and
Retries (``bench/stock_dramatiq_worker.py``): what the issue measured. No scheduler runs: the
workers alone must lose and strand nothing (the status sweep, hourly, would only hide it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import CONTROL, ROOT, base_env, result, sandbox_process
from core.broker import build_broker
from core.contracts import Status
from core.embedded_redis import RedisServer, free_port
from core.settings import load_settings
from core.store import Store, redis_client
from producers import Producer
from producers.sms import Queued

THREADS = 8
WORKERS = 2
SETTLE_S = float(os.environ.get("BENCH_RESTART_SETTLE_S", "20"))
SETTLE_MAX_S = float(os.environ.get("BENCH_RESTART_SETTLE_MAX_S", "180"))
CREDS = {"BENCH_SMSC_LOGIN": "gonets", "BENCH_SMSC_PASSWORD": "sandbox"}
#: (name, messages, [(signal, at share accepted, down for s)])
SCENARIOS = [
    ("kill", int(os.environ.get("BENCH_RESTART_KILL_N", "2000")),
     [(signal.SIGKILL, 1 / 3, 3.3)]),
    ("term+kill", int(os.environ.get("BENCH_RESTART_TERMKILL_N", "3000")),
     [(signal.SIGTERM, 1 / 4, 2.8), (signal.SIGKILL, 2 / 3, 3.3)]),
]


def _config(d: Path, urls: list[str]) -> Path:
    cfg = d / "bench.toml"
    cfg.write_text(f"""
default_account = "smsc"
[accounts.smsc]
provider = "smsc_http"
base_urls = ["{urls[0]}"]
credentials = {{ login = "env:BENCH_SMSC_LOGIN", password = "env:BENCH_SMSC_PASSWORD" }}
default_sender = "Gonets"
timeout_s = 5
options = {{ first_poll_s = 2, max_poll_interval_s = 4 }}
limits = {{ rate_per_s = 1000000 }}
""")
    return cfg


class _Worker:
    def __init__(self, env: dict[str, str], stock: bool, log: Path) -> None:
        cmd = ([sys.executable, "-m", "bench.stock_dramatiq_worker", "smsc", str(THREADS)]
               if stock else
               [sys.executable, "-m", "cli.main", "worker", "--pool", "smsc", "--threads",
                str(THREADS)])
        self.log = log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=self._fh,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while b"consuming" not in log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start: " + log.read_text()[-2000:])
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


def _sandbox(url: str) -> dict[str, Any]:
    return CONTROL.get(f"{url}/_sandbox/state", timeout=30).json()


def _accepted(url: str) -> int:
    return int(CONTROL.get(f"{url}/_sandbox/counters", timeout=10).json()["accepted"])


def scenario(name: str, n: int, outages: list[tuple[int, float, float]], url: str,
             stock: bool, d: Path) -> dict[str, float]:
    redis_dir = d / f"redis-{name}-{'stock' if stock else 'gonets'}"
    port = free_port()
    srv = RedisServer(redis_dir, port=port, persist=True).start()
    env = base_env(srv.url, _config(d, [url]), GONETS_HEARTBEAT_TIMEOUT_S="10",
                   GONETS_MAINTENANCE_INTERVAL_S="2", **CREDS)
    os.environ.update(CREDS)
    settings = load_settings(env)
    workers: list[_Worker] = []
    store = Store(redis_client(srv.url), namespace=settings.namespace)
    broker = build_broker(settings)
    base = _accepted(url)
    ups: list[float] = []
    try:
        producer = Producer(settings, store=store, broker=broker)
        start = 1_000_000 + (time.time_ns() // 1000) % 8_000_000  # numbers of its own
        phones = {f"37529{start + i:07d}": i for i in range(n)}
        queued = producer.send_many([{"to": f"+{p}", "text": f"restart {name} {i}"}
                                     for p, i in phones.items()])
        ids = [q.id for q in queued if isinstance(q, Queued)]
        if len(ids) != n:
            raise RuntimeError(f"only {len(ids)} of {n} messages queued: {queued[:3]}")
        workers = [_Worker(env, stock, d / f"w{k}-{name}-{stock}.log") for k in range(WORKERS)]
        for sig, share, down_s in outages:
            while _accepted(url) - base < n * share:
                time.sleep(0.05)
            assert srv.proc is not None
            srv.proc.send_signal(sig)
            srv.proc.wait(30)
            time.sleep(down_s)  # the outage itself
            srv = RedisServer(redis_dir, port=port, persist=True).start()
            ups.append(time.time())
        # settle: until every record is final, or nothing changed for SETTLE_S
        last_change, last_final = time.monotonic(), -1
        deadline = time.monotonic() + SETTLE_MAX_S
        statuses: list[Any] = []
        while time.monotonic() < deadline:
            pipe = store.r.pipeline(transaction=False)
            for i in ids:
                pipe.hget(store.msg_key(i), "status")
            statuses = pipe.execute()
            final = sum(1 for s in statuses if s and Status(s).final)
            if final != last_final:
                last_final, last_change = final, time.monotonic()
            if final == len(ids) or time.monotonic() - last_change > SETTLE_S:
                break
            time.sleep(1)
        stuck_ids = [i for i, s in zip(ids, statuses, strict=True)
                     if s is not None and not Status(s).final]
        stuck = len(stuck_ids)
        for i in stuck_ids[:10]:  # what each waits for: its record and its next status check
            rec = store.r.hgetall(store.msg_key(i))
            due = store.r.zscore(store.nonfinal_key, i)
            print(f"    stuck {i}: " + ", ".join(
                f"{k}={v}" for k, v in sorted(rec.items()) if k not in ("phone", "text"))
                + (f"; next check in {due / 1000 - time.time():.0f} s" if due else
                   "; not in the status index"), flush=True)
        state = _sandbox(url)
        sent_at: dict[str, list[float]] = {}
        for m in state["messages"]:
            if m["phone"] in phones:
                sent_at.setdefault(m["phone"], []).append(m["at"])
        lost = sum(1 for p in phones if p not in sent_at)
        doubles = sum(len(v) - 1 for v in sent_at.values())
        times = sorted(t for v in sent_at.values() for t in v)
        resume = 0.0
        for up in ups:
            after = [t for t in times if t >= up]
            resume = max(resume, (after[0] - up) if after else SETTLE_MAX_S)
        gone = sum(1 for s in statuses if s is None)
        print(f"    {name} {'stock' if stock else 'gonets'}: lost {lost} (records gone "
              f"{gone}), stuck {stuck}, doubles {doubles}, resume {resume:.1f} s", flush=True)
        return {"lost": lost, "stuck": stuck, "resume": resume, "doubles": doubles}
    finally:
        for w in workers:
            w.stop()
        broker.close()
        store.r.close()
        srv.stop()


def run() -> list[dict[str, Any]]:
    with sandbox_process("sandbox.smsc_http", "--port", "0", "--balance", "1e9") as (_, info), \
            tempfile.TemporaryDirectory(prefix="gonets-bench-restart-") as tmp:
        url = info["smsc_http"][0]
        CONTROL.post(f"{url}/_sandbox/control", json={"progress_s": [0.2, 1.0]}).raise_for_status()
        d = Path(tmp)
        ours: dict[str, dict[str, float]] = {}
        stock: dict[str, dict[str, float]] = {}
        for name, n, outages in SCENARIOS:
            ours[name] = scenario(name, n, outages, url, False, d)
            stock[name] = scenario(name, n, outages, url, True, d)

    def worst(runs: dict[str, dict[str, float]], k: str) -> float:
        return max(r[k] for r in runs.values())

    def per(runs: dict[str, dict[str, float]], k: str) -> str:
        return ", ".join(f"{n}: {r[k]:g}" for n, r in runs.items())

    note = (f"worst of: {', '.join(f'{n} ({m} msgs)' for n, m, _ in SCENARIOS)}; AOF everysec; "
            f"{WORKERS} workers x {THREADS} threads; baseline: dramatiq's own worker")
    return [
        result("redis_restart_lost", worst(ours, "lost"), "msgs",
               baseline=worst(stock, "lost"), target="0",
               note=f"{note}; Gonets {per(ours, 'lost')}; stock {per(stock, 'lost')}; "
                    f"doubles Gonets {per(ours, 'doubles')}, stock {per(stock, 'doubles')}"),
        result("redis_restart_stuck", worst(ours, "stuck"), "records",
               baseline=worst(stock, "stuck"), target="0",
               note=f"not final after settling; Gonets {per(ours, 'stuck')}; "
                    f"stock {per(stock, 'stuck')}"),
        result("redis_restart_resume_s", worst(ours, "resume"), "s",
               baseline=worst(stock, "resume"), target="<= 10",
               note=f"Redis answering again -> next accepted send; Gonets "
                    f"{per(ours, 'resume')}; stock {per(stock, 'resume')}"),
    ]
