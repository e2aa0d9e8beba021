"""Issue 18 figure: what Sentry tracing costs.  The pipeline of ``bench_pipeline`` (producer →
Redis → one worker × 8 threads → the SMSC sandbox, no rate limit) with every job traced
(``GONETS_SENTRY_TRACES_SAMPLE_RATE=1.0``, envelopes sent over HTTP to the local Sentry
stand-in) beside the same pipeline with tracing off (the same DSN, rate 0: errors still
reported), in the same run, alternating off/on rounds so drift on a shared host hits both.

``sentry_overhead_pct`` = (off - on) / off × 100 of messages/s; target <= 10 %.  Also: the
same at rate 0.01 (the production setting), and the worker's CPU per message, which a shared
host's noise moves less than throughput."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.bench_pipeline import CREDS, THREADS, _config, _counters, _wait_accepted
from bench.common import Worker, base_env, redis_server, result, sandbox_process
from core.broker import build_broker
from core.settings import load_settings
from producers import Producer
from tests.sentry_standin import SentryStandIn

N = int(os.environ.get("BENCH_SENTRY_N", "1500"))
ROUNDS = int(os.environ.get("BENCH_SENTRY_ROUNDS", "3"))


def pipeline(env: dict[str, str], url: str, n: int) -> tuple[float, float]:
    """``n`` messages producer → worker → sandbox: (messages/s, worker CPU ms per message)."""
    settings = load_settings(env)
    os.environ.update(CREDS)
    broker = build_broker(settings)
    producer = Producer(settings, broker=broker)
    worker = Worker(env, "smsc", THREADS)
    proc = psutil.Process(worker.proc.pid)
    base = _counters(url)["accepted"]
    try:
        run = time.time_ns()  # texts of its own: the same text within a minute is a duplicate
        cpu0 = sum(proc.cpu_times()[:2])
        t0 = time.monotonic()
        for i in range(n):
            producer.send_sms(f"+37529{1000000 + i}", f"Bench message {i} ({run})")
        t1 = _wait_accepted(url, base + n)
        cpu = sum(proc.cpu_times()[:2]) - cpu0
    finally:
        worker.stop()
        broker.close()
    return n / (t1 - t0), cpu / n * 1000


def _sends(sentry: SentryStandIn) -> int:
    return sum(1 for t in sentry.of_type("transaction") if t.get("transaction") == "send_sms")


def run() -> list[dict[str, Any]]:
    sentry = SentryStandIn()
    off: list[float] = []
    on: list[float] = []
    cpu_off: list[float] = []
    cpu_on: list[float] = []
    low: list[float] = []
    cpu_low: list[float] = []
    traced = 0
    try:
        with redis_server() as rs, sandbox_process(
                "sandbox.smsc_http", "--port", "0", "--port", "0", "--balance", "1e9") \
                as (_, info), tempfile.TemporaryDirectory() as d:
            urls = info["smsc_http"]
            env = base_env(rs.url, _config(Path(d), urls), **CREDS,
                           GONETS_SENTRY_DSN=sentry.dsn, GONETS_LOG_LEVEL="WARNING")
            pipeline(env, urls[0], min(N, 300))  # warm-up: imports, Redis, sandbox
            for _ in range(ROUNDS):
                for rate, rates, cpus in (("0", off, cpu_off), ("1.0", on, cpu_on),
                                          ("0.01", low, cpu_low)):
                    before = _sends(sentry)
                    r, c = pipeline({**env, "GONETS_SENTRY_TRACES_SAMPLE_RATE": rate},
                                    urls[0], N)
                    if rate == "1.0":
                        traced += _sends(sentry) - before
                    rates.append(r)
                    cpus.append(c)
    finally:
        sentry.stop()
    rate_off, rate_on = statistics.median(off), statistics.median(on)
    pct = (rate_off - rate_on) / rate_off * 100
    note = (f"{ROUNDS} rounds of {N} messages each way, 1 worker x {THREADS} threads, medians "
            f"(off {', '.join(f'{r:.0f}' for r in off)}; on {', '.join(f'{r:.0f}' for r in on)} "
            f"msg/s); {traced} of {ROUNDS * N} send jobs' transactions reached the stand-in")
    return [
        result("sentry_traced_msgs_per_s", rate_on, "msg/s", baseline=rate_off,
               note="tracing at 1.0 to the local Sentry stand-in; baseline: tracing off"),
        result("sentry_overhead_pct", pct, "%", baseline=0.0, target="<= 10", note=note),
        result("sentry_overhead_pct_at_0_01", (rate_off - statistics.median(low)) / rate_off
               * 100, "%", baseline=0.0,
               note="the production setting: every job recorded, 1 % (and every failure) "
                    f"sent; {statistics.median(low):.0f} msg/s, worker CPU "
                    f"{statistics.median(cpu_low):.2f} ms/msg"),
        result("sentry_worker_cpu_ms_per_msg", statistics.median(cpu_on), "ms",
               baseline=statistics.median(cpu_off),
               note="worker CPU (user+sys) per message, tracing at 1.0; baseline: off"),
    ]
