"""Issue 17 figures: failover along a route, measured at the providers.

30 messages/s flow through a route ``mts -> smsc`` (MTS REST and SMSC HTTP sandboxes as
processes, one worker pool each, a real Redis); part-way through, MTS's funds are cut to zero.

* ``failover_gap_s``: the longest gap between two deliveries (arrivals of accepted sends at
  either sandbox, as the sandboxes stamped them) from the cut until the end, beside the
  longest gap before the cut in the same run (the steady flow's own jitter); target <= 5 s.
* ``failover_doubles``: messages accepted more than once across both sandboxes (target 0),
  beside the messages sent.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import CONTROL, Worker, base_env, redis_server, result, sandbox_process
from core.broker import build_broker
from core.settings import load_settings
from core.store import Store, redis_client
from producers import Producer

RATE_PER_S = 30.0
SECONDS = float(os.environ.get("BENCH_FAILOVER_S", "24"))
CUT_AT_S = SECONDS / 3
CREDS = {"BENCH_SMSC_LOGIN": "gonets", "BENCH_SMSC_PASSWORD": "sandbox",
         "BENCH_MTS_ID": "gonets", "BENCH_MTS_SECRET": "sandbox"}


def _config(d: Path, mts_url: str, smsc_urls: list[str]) -> Path:
    cfg = d / "bench.toml"
    cfg.write_text(f"""
default_account = "mts"

[accounts.mts]
provider = "mts_rest"
base_urls = ["{mts_url}"]
default_sender = "Gonets"
credentials = {{ client_id = "env:BENCH_MTS_ID", client_secret = "env:BENCH_MTS_SECRET" }}
options = {{ first_poll_s = 600 }}

[accounts.smsc]
provider = "smsc_http"
base_urls = ["{smsc_urls[0]}", "{smsc_urls[1]}"]
credentials = {{ login = "env:BENCH_SMSC_LOGIN", password = "env:BENCH_SMSC_PASSWORD" }}
default_sender = "Gonets"
options = {{ first_poll_s = 600 }}

[[routes]]
match = {{ prefix = "375" }}
accounts = ["mts", "smsc"]
failover_after_s = 5
""")
    return cfg


def _arrivals(mts_url: str, smsc_url: str) -> list[tuple[float, str, str]]:
    """(arrival time, phone, sandbox) of every send each sandbox accepted."""
    got: list[tuple[float, str, str]] = []
    for r in CONTROL.get(f"{mts_url}/_sandbox/requests", timeout=30).json():
        if r.get("path") == "/sms/v1/messages" and r.get("message_id"):
            got.append((float(r["at"]), str((r.get("body") or {}).get("phone")), "mts"))
    for m in CONTROL.get(f"{smsc_url}/_sandbox/state", timeout=30).json()["messages"]:
        got.append((float(m["at"]), str(m["phone"]), "smsc"))
    return sorted(got)


def _longest_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def run() -> list[dict[str, Any]]:
    with redis_server() as srv, tempfile.TemporaryDirectory(prefix="gonets-bench-") as d, \
            sandbox_process("sandbox.mts_rest") as (_, mts_addr), \
            sandbox_process("sandbox.smsc_http") as (_, smsc_addr):
        mts_url, smsc_urls = mts_addr["mts_rest"][0], smsc_addr["smsc_http"]
        cfg = _config(Path(d), mts_url, smsc_urls)
        env = base_env(srv.url, cfg, **CREDS)
        os.environ.update(CREDS)
        settings = load_settings(env)
        workers = [Worker(env, "mts", 8), Worker(env, "smsc", 8)]
        broker = build_broker(settings)
        store = Store(redis_client(settings.redis_url), namespace=settings.namespace)
        producer = Producer(settings, store=store, broker=broker)
        try:
            n = int(RATE_PER_S * SECONDS)
            t0 = time.time()
            cut_at = 0.0
            ids = []
            for i in range(n):
                due = t0 + i / RATE_PER_S
                time.sleep(max(0.0, due - time.time()))
                if not cut_at and time.time() - t0 >= CUT_AT_S:
                    CONTROL.post(f"{mts_url}/_sandbox/control",
                                 json={"balance": 0}).raise_for_status()
                    cut_at = time.time()
                # a number per message: the flood rule plays no part here
                ids.append(producer.send_sms(f"+37529{2000000 + i}", f"failover bench {i}"))
            deadline = time.monotonic() + 120
            while True:
                arrivals = _arrivals(mts_url, smsc_urls[0])
                if len({p for _, p, _ in arrivals}) >= n or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            for w in workers:
                w.stop()
            broker.close()
            store.r.close()
    phones = [p for _, p, _ in arrivals]
    doubles = len(phones) - len(set(phones))
    before = [t for t, _, _ in arrivals if t < cut_at]
    after = [t for t, _, _ in arrivals if t >= cut_at]
    via_smsc = sum(1 for _, _, where in arrivals if where == "smsc")
    gap_after = _longest_gap(([before[-1]] if before else []) + after)
    gap_before = _longest_gap(before)
    missing = n - len(set(phones))
    note = (f"{n} messages at {RATE_PER_S:g}/s, MTS funds cut at {CUT_AT_S:g} s; "
            f"{len(before)} delivered before the cut, {len(after)} after "
            f"({via_smsc} through SMSC); "
            f"{missing} not delivered")
    return [
        result("failover_gap_s", gap_after, "s", baseline=gap_before, target="<= 5",
               note=note + "; baseline: the longest gap before the cut"),
        result("failover_doubles", float(doubles), "msgs", baseline=float(n), target="0",
               note="accepted more than once across both sandboxes; baseline: messages sent"),
    ]
