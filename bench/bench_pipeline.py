"""Issue 2 figures: messages/s through the whole pipeline to the SMSC sandbox (no rate limit)
beside (a) the same number of threads calling the sandbox directly with httpx and (b) a no-op
dramatiq actor on the same Redis; worker RSS; and how long after a worker is SIGKILLed its
in-flight messages are processed by another worker (beside dramatiq's default settings)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, Worker, base_env, redis_server, result, sandbox_process
from core.broker import build_broker, enqueue
from core.settings import load_settings
from core.store import Store, redis_client
from producers import Producer

N = int(os.environ.get("BENCH_PIPELINE_N", "3000"))
THREADS = 8
CREDS = {"BENCH_SMSC_LOGIN": "gonets", "BENCH_SMSC_PASSWORD": "sandbox"}


def _config(d: Path, urls: list[str], first_poll_s: float = 600) -> Path:
    cfg = d / "bench.toml"
    cfg.write_text(f"""
default_account = "smsc"
[accounts.smsc]
provider = "smsc_http"
base_urls = ["{urls[0]}", "{urls[1]}"]
credentials = {{ login = "env:BENCH_SMSC_LOGIN", password = "env:BENCH_SMSC_PASSWORD" }}
default_sender = "Gonets"
options = {{ first_poll_s = {first_poll_s} }}
# no pacing: this bench measures the pipeline itself (bench_traffic measures the pacing)
limits = {{ rate_per_s = 1000000 }}
""")
    return cfg


def _counters(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/_sandbox/counters", timeout=10).json()


def _wait_counter(url: str, counter: str, n: int, timeout_s: float = 600) -> float:
    """Wait until the sandbox's ``counter`` reaches ``n``; returns when it did."""
    deadline = time.monotonic() + timeout_s
    while _counters(url)[counter] < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {_counters(url)[counter]} of {n} {counter}")
        time.sleep(0.05)
    return time.monotonic()


def _wait_accepted(url: str, n: int, timeout_s: float = 600) -> float:
    return _wait_counter(url, "accepted", n, timeout_s)


def direct_httpx(url: str, n: int, threads: int) -> float:
    """``threads`` threads POSTing send.php in a loop, as the provider does: messages/s."""
    per = n // threads

    def loop(t: int) -> None:
        with httpx.Client(timeout=30) as c:
            for i in range(per):
                c.post(f"{url}/sys/send.php", data={
                    "login": "gonets", "psw": "sandbox", "fmt": "1", "charset": "utf-8",
                    "phones": f"37529{5000000 + t * per + i}", "mes": f"direct {t}-{i}",
                    "id": str(900000 + t * per + i), "cost": "3", "sender": "Gonets"})

    t0 = time.monotonic()
    ts = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return per * threads / (time.monotonic() - t0)


def pipeline(env: dict[str, str], url: str, n: int) -> tuple[float, float]:
    """send_sms → Redis → worker → sandbox: messages/s until the sandbox accepted all; RSS."""
    settings = load_settings(env)
    os.environ.update(CREDS)
    broker = build_broker(settings)
    producer = Producer(settings, broker=broker)
    worker = Worker(env, "smsc", THREADS)
    base = _counters(url)["accepted"]
    peak = [worker.rss_mb()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            peak[0] = max(peak[0], worker.rss_mb())

    threading.Thread(target=sample, daemon=True).start()
    try:
        run = time.time_ns()  # texts of its own: the same text within a minute is a duplicate
        t0 = time.monotonic()
        for i in range(n):
            producer.send_sms(f"+37529{1000000 + i}", f"Bench message {i} ({run})")
        t1 = _wait_accepted(url, base + n)
    finally:
        stop.set()
        worker.stop()
        broker.close()
    return n / (t1 - t0), peak[0]


def noop(env: dict[str, str], n: int) -> float:
    settings = load_settings(env)
    broker = build_broker(settings)
    log = tempfile.NamedTemporaryFile(delete=False)
    p = subprocess.Popen([sys.executable, "-m", "bench.noop_worker", str(THREADS)], env=env,
                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        while b"ready" not in Path(log.name).read_bytes():
            time.sleep(0.05)
        t0 = time.monotonic()
        for i in range(n):
            enqueue(broker, "bench.noop", "noop", i)
        while broker.do_qsize("bench.noop") > 0:
            time.sleep(0.02)
        return n / (time.monotonic() - t0)
    finally:
        p.terminate()
        p.wait(30)
        broker.close()
        os.unlink(log.name)


def kill_recovery(env: dict[str, str], url: str, *, cap_s: float) -> float:
    """Seconds from SIGKILL of a worker holding in-flight sends until another worker has
    handed every one of them to the provider."""
    settings = load_settings(env)
    broker = build_broker(settings)
    producer = Producer(settings, broker=broker)
    store = Store(redis_client(settings.redis_url), namespace=settings.namespace)
    httpx.post(f"{url}/_sandbox/control", json={"delay_s": 30.0}).raise_for_status()
    a = Worker(env, "smsc", 4)
    run = time.time_ns()  # a text of its own: the same text within a minute is a duplicate
    ids = [producer.send_sms(f"+37544{3000000 + i}", f"kill {i} ({run})") for i in range(4)]
    deadline = time.monotonic() + 30
    while not all(store.r.hget(store.msg_key(i), "inflight_ms") for i in ids):
        if time.monotonic() > deadline:
            a.stop()
            raise RuntimeError("messages never went in flight")
        time.sleep(0.01)
    b = Worker(env, "smsc", 4)
    a.stop(signal.SIGKILL)
    killed = time.monotonic()
    httpx.post(f"{url}/_sandbox/control", json={"delay_s": 0.0}).raise_for_status()
    try:
        while True:
            sts = [store.r.hget(store.msg_key(i), "status") for i in ids]
            if all(s in ("submitted", "delivered") for s in sts):
                return time.monotonic() - killed
            if time.monotonic() - killed > cap_s:
                return cap_s
            time.sleep(0.1)
    finally:
        b.stop()
        broker.close()


def run() -> list[dict[str, Any]]:
    out = []
    with redis_server() as rs, sandbox_process("sandbox.smsc_http", "--port", "0", "--port",
                                               "0", "--balance", "1e9") as (_, info), \
            tempfile.TemporaryDirectory() as d:
        urls = info["smsc_http"]
        env = base_env(rs.url, _config(Path(d), urls), **CREDS)
        direct = direct_httpx(urls[0], N, THREADS)
        rate, rss = pipeline(env, urls[0], N)
        noop_rate = noop(env, N)
        out.append(result("pipeline_msgs_per_s", rate, "msg/s", baseline=direct,
                          note=f"{N} messages, 1 worker x {THREADS} threads; baseline: "
                               "direct httpx, same threads"))
        out.append(result("pipeline_vs_httpx", rate / direct, "ratio", baseline=1.0,
                          ratio=rate / direct, target=">= 0.9"))
        out.append(result("pipeline_vs_noop", rate / noop_rate, "ratio", baseline=1.0,
                          ratio=rate / noop_rate,
                          note=f"no-op dramatiq actor: {noop_rate:.0f} msg/s"))
        out.append(result("worker_rss_mb", rss, "MB", target="<= 120",
                          note="peak RSS of the worker process during the pipeline run"))
        tuned = kill_recovery(env, urls[0], cap_s=120)
        cap = float(os.environ.get("BENCH_KILL_BASELINE_CAP_S", "90"))
        default_env = {**env, "GONETS_HEARTBEAT_TIMEOUT_S": "60",
                       "GONETS_MAINTENANCE_INTERVAL_S": "86400"}
        baseline = kill_recovery(default_env, urls[0], cap_s=cap)
        out.append(result("kill_recovery_s", tuned, "s", baseline=baseline, target="<= 30",
                          note="baseline: dramatiq's 60 s heartbeat and random maintenance"
                               + (f", capped at {cap:.0f} s (not recovered by then)"
                                  if baseline >= cap else "")))
    return out
