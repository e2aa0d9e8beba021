"""Issue 13 figures: pacing as the provider sees it (the sandboxes' own receive times) on a
busy host and over SMPP links that drop.

* HTTP, loaded: the traffic group's pacing run (4 worker processes x 8 threads, cap 30/s,
  ``BENCH_TRAFFIC_PACING_S`` of bulk) while two CPU-burning processes the bench starts and
  stops keep both cores busy: ``pacing_max_1s_loaded`` (the most SMS in any sliding 1000 ms
  window) and ``pacing_mean_rate_loaded``; baseline: the same run without the burners.
* SMPP: an ``smsc_smpp`` account (``MCON2``: two worker processes x 8 threads, each with its
  own bind), the sandbox dropping the link after every 50th submit, quiet and loaded:
  ``pacing_smpp_max_1s`` / ``pacing_smpp_mean_rate`` and their ``_loaded`` twins, counted
  over every submit_sm the sandbox read (resends after the drops included: the cap is on
  what reaches the provider); baseline of a loaded figure: the quiet one.

The quiet HTTP figures (``pacing_max_1s``, ``pacing_mean_rate``) stay in bench_traffic.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.bench_traffic import PACING_S, RATE, Rig, max_in_window, pacing_run
from bench.common import CONTROL, Worker, base_env, redis_server, result, sandbox_process
from core.broker import build_broker
from core.settings import load_settings
from core.store import Store, redis_client
from producers import Producer

SMPP_PROCS, SMPP_THREADS = 2, 16
DROP_EVERY = 50
BURNERS = 2


@contextmanager
def burners(n: int = BURNERS) -> Iterator[None]:
    """``n`` processes spinning on a CPU each, for as long as the block runs."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def _smpp_config(d: Path, info: dict[str, str]) -> Path:
    cfg = d / "pacing-smpp.toml"
    cfg.write_text(f"""
default_account = "smpp"
[accounts.smpp]
provider = "smsc_smpp"
smpp_host = "{info['primary']}"
smpp_backup_host = "{info['backup']}"
credentials = {{ login = "env:BENCH_SMSC_LOGIN", password = "env:BENCH_SMSC_PASSWORD" }}
default_sender = "Gonets"
timeout_s = 10
limits = {{ rate_per_s = {RATE} }}
[accounts.smpp.options]
mcon = {SMPP_PROCS}
first_poll_s = 3600
backoff_min_s = 0.05
backoff_max_s = 0.5
lease_ttl_s = 3
""")
    return cfg


def forfeited(rig: Rig, account: str) -> str:
    """The share of the booked slots that writers gave up (the run's pacing counters)."""
    c = rig.r.hgetall(f"gonets:pace:{account}:count")
    booked = int(c.get(b"booked") or 0)
    return f"{int(c.get(b'forfeited') or 0) / booked:.1%}" if booked else "-"


def smpp_run(rig: Rig, info: dict[str, str], d: Path) -> tuple[int, float, int]:
    """(most submits in a 1000 ms window, mean submits/s, links dropped)."""
    ctl = info["control"]
    rig.r.flushall()
    CONTROL.post(f"{ctl}/_sandbox/control", json={"reset": True, "drop_every_submits": DROP_EVERY},
                 timeout=30).raise_for_status()
    env = base_env(rig.redis_url, _smpp_config(d, info), BENCH_SMSC_LOGIN="gonets",
                   BENCH_SMSC_PASSWORD="sandbox", GONETS_HEARTBEAT_TIMEOUT_S="10")
    settings = load_settings(env)
    store = Store(redis_client(settings.redis_url), namespace=settings.namespace)
    broker = build_broker(settings)
    producer = Producer(settings, store=store, broker=broker)
    for i in range(int(RATE * (PACING_S + 30))):
        producer.send_sms(f"+37529{5000000 + i}", f"smpp bulk {i}")
    with ThreadPoolExecutor(SMPP_PROCS) as pool:
        workers = list(pool.map(lambda _: Worker(env, "smpp", SMPP_THREADS), range(SMPP_PROCS)))
    try:
        deadline = time.monotonic() + 60
        while not _submits(ctl) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(PACING_S + 2)
    finally:
        for w in workers:
            w.stop(9)  # the run is over; what is left is not measured
        broker.close()
    times = sorted(s["at"] for s in _submits(ctl))
    span = [t for t in times if t < times[0] + PACING_S]
    drops = CONTROL.get(f"{ctl}/_sandbox/state", timeout=30).json()["counters"].get(
        "dropped_links", 0)
    return max_in_window(span), len(span) / PACING_S, int(drops)


def _submits(ctl: str) -> list[dict[str, Any]]:
    return list(CONTROL.get(f"{ctl}/_sandbox/submits", timeout=60).json())


def run() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with redis_server() as rs, \
            sandbox_process("sandbox.smsc_http", "--port", "0", "--port", "0", "--balance",
                            "1e9") as (_, http_info), \
            sandbox_process("sandbox.smpp_smsc", "--port", "0", "--backup-port", "0",
                            "--control-port", "0") as (_, smpp_info), \
            tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rig = Rig(rs.url, http_info["smsc_http"], d)
        q_max, q_rate, q_drops = smpp_run(rig, smpp_info, d)
        q_load, q_lost = os.getloadavg()[0], forfeited(rig, "smpp")
        with burners():
            h_max, h_rate = pacing_run(rig, None)
            h_load, h_lost = os.getloadavg()[0], forfeited(rig, "smsc")
            l_max, l_rate, l_drops = smpp_run(rig, smpp_info, d)
            l_load, l_lost = os.getloadavg()[0], forfeited(rig, "smpp")
        b_max, b_rate = pacing_run(rig, None)
        b_load, b_lost = os.getloadavg()[0], forfeited(rig, "smsc")
    cpus = os.cpu_count()
    print(f"  http loaded: max {h_max}/1s mean {h_rate:.2f}/s, {h_lost} slots forfeited (load "
          f"{h_load:.1f}); quiet: max {b_max}/1s mean {b_rate:.2f}/s, {b_lost} forfeited (load "
          f"{b_load:.1f})", flush=True)
    print(f"  smpp quiet: max {q_max}/1s mean {q_rate:.2f}/s, {q_drops} drops, {q_lost} "
          f"forfeited (load {q_load:.1f}); loaded: max {l_max}/1s mean {l_rate:.2f}/s, "
          f"{l_drops} drops, {l_lost} forfeited (load {l_load:.1f})", flush=True)
    burn = f"{BURNERS} CPU-burning processes on {cpus} CPUs"
    out.append(result("pacing_max_1s_loaded", h_max, "SMS", baseline=b_max, target="<= 30",
                      note=f"HTTP, 4 workers x 8 threads, cap {RATE}/s, {PACING_S:.0f} s, {burn};"
                           f" host load average {h_load:.1f} (baseline: no burners, load "
                           f"{b_load:.1f})"))
    out.append(result("pacing_mean_rate_loaded", h_rate, "SMS/s", baseline=b_rate,
                      target=">= 27", note=f"same runs as pacing_max_1s_loaded; slots "
                                           f"forfeited: {h_lost} loaded, {b_lost} baseline"))
    out.append(result("pacing_smpp_max_1s", q_max, "submits", target="<= 30",
                      note=f"smsc_smpp, {SMPP_PROCS} binds ({SMPP_PROCS} workers x "
                           f"{SMPP_THREADS} threads), cap {RATE}/s, link dropped every "
                           f"{DROP_EVERY} submits ({q_drops} drops), every submit_sm counted; "
                           f"host load average {q_load:.1f}"))
    out.append(result("pacing_smpp_mean_rate", q_rate, "submits/s", target=">= 29",
                      note=f"same run as pacing_smpp_max_1s; {q_lost} slots forfeited"))
    out.append(result("pacing_smpp_max_1s_loaded", l_max, "submits", baseline=q_max,
                      target="<= 30", note=f"as pacing_smpp_max_1s with {burn} ({l_drops} "
                                           f"drops); host load average {l_load:.1f}; baseline:"
                                           " quiet"))
    out.append(result("pacing_smpp_mean_rate_loaded", l_rate, "submits/s", baseline=q_rate,
                      target=">= 27", note=f"same run as pacing_smpp_max_1s_loaded; {l_lost} "
                                           "slots forfeited"))
    return out
