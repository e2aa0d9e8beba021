"""Issue 20.1: a provider whose answers *and* lookups fail for longer than its duplicate window
must not get a message twice (``lookup_fail_doubles``, target 0).

The operator's bad day of the issue, against the SMSC HTTP sandbox (its own process, SMSC's real
60 s duplicate window) and real worker processes on a real Redis:

* N messages are queued while every answer is lost: first the answers come ``LATE_S`` (30 s)
  late against the account's 5 s timeout, then every server takes each request and answers
  503 (``accept_then_503``); lookups fail the same way, for ``HANG_S`` (80 s) in all;
* the worker is SIGTERMed during the hang and a new one takes over;
* the faults are lifted and every message is followed to its final status.

``lookup_fail_doubles`` is what the sandbox took beyond one copy per message, printed beside
the number of messages (every message sent twice: what the issue saw, 10 of 10); the note says
how many send and status requests reached the sandbox during the hang.

``python -m bench --only lookup_fail`` (``BENCH_LOOKUP_FAIL_N``, ``BENCH_LOOKUP_FAIL_HANG_S``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import CONTROL, Worker, base_env, redis_server, result, sandbox_process
from core.broker import build_broker
from core.contracts import Status
from core.settings import load_settings
from core.store import Store, redis_client
from producers import Producer

N = int(os.environ.get("BENCH_LOOKUP_FAIL_N", "40"))
HANG_S = float(os.environ.get("BENCH_LOOKUP_FAIL_HANG_S", "80"))
LATE_S = 30.0
TIMEOUT_S = 5.0
CREDS = {"BENCH_SMSC_LOGIN": "gonets", "BENCH_SMSC_PASSWORD": "sandbox"}


def _config(d: Path, urls: list[str]) -> Path:
    cfg = d / "bench.toml"
    cfg.write_text(f"""
default_region = "BY"
[accounts.smsc]
provider = "smsc_http"
base_urls = {urls!r}
credentials = {{ login = "env:BENCH_SMSC_LOGIN", password = "env:BENCH_SMSC_PASSWORD" }}
default_sender = "Gonets"
timeout_s = {TIMEOUT_S}
options = {{ first_poll_s = 1, max_poll_interval_s = 5 }}
""".replace("'", '"'))
    return cfg


def _control(url: str, **body: Any) -> None:
    CONTROL.post(f"{url}/_sandbox/control", json=body, timeout=10).raise_for_status()


def _requests(url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = CONTROL.get(f"{url}/_sandbox/requests", timeout=30).json()
    return got


def _final(store: Store, ids: list[str], timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    final: dict[str, str] = {}
    while time.monotonic() < deadline and len(final) < len(ids):
        for i in ids:
            if i not in final:
                st = (store.find(i) or {}).get("status")
                if st and Status(st).final:
                    final[i] = st
        time.sleep(0.5)
    return final


def run() -> list[dict[str, Any]]:
    with redis_server() as rs, tempfile.TemporaryDirectory() as d, \
            sandbox_process("sandbox.smsc_http") as (_, info):
        urls = info["smsc_http"]
        env = base_env(rs.url, _config(Path(d), urls), GONETS_HEARTBEAT_TIMEOUT_S="5",
                       GONETS_MAINTENANCE_INTERVAL_S="1", GONETS_DRAIN_TIMEOUT_S="10",
                       GONETS_LOOKUP_RETRY_MAX_S="30", **CREDS)
        os.environ.update(CREDS)
        settings = load_settings(env)
        store = Store(redis_client(rs.url))
        broker = build_broker(settings)
        producer = Producer(settings, store=store, broker=broker)
        _control(urls[0], delay_s=LATE_S)  # every answer comes 30 s late: 5 s timeouts
        w1 = Worker(env, "smsc", 8)
        t0 = time.monotonic()
        ids = [producer.send_sms(f"+37529{5100000 + i}", f"lookup fail bench {i}")
               for i in range(N)]
        workers = [w1]
        try:
            time.sleep(max(0.0, HANG_S / 2 - (time.monotonic() - t0)))
            # the second half: taken at once, every answer (and lookup) a 503
            _control(urls[0], delay_s=0, down=[0, 1], down_mode="accept_then_503")
            time.sleep(max(0.0, HANG_S * 0.6 - (time.monotonic() - t0)))
            workers.remove(w1)
            w1.stop()  # SIGTERM during the hang
            workers.append(Worker(env, "smsc", 8))
            time.sleep(max(0.0, HANG_S - (time.monotonic() - t0)))
            hang = _requests(urls[0])
            _control(urls[0], down=[])
            final = _final(store, ids, timeout_s=180)
        finally:
            for w in workers:
                w.stop()
            broker.close()
        counters = CONTROL.get(f"{urls[0]}/_sandbox/counters", timeout=10).json()
        sends = sum(1 for r in hang if r.get("path") == "/sys/send.php")
        looks = sum(1 for r in hang if r.get("path") == "/sys/status.php")
        doubles = counters["accepted"] - N
        statuses = {s: list(final.values()).count(s) for s in set(final.values())}
        store.r.close()
    return [result("lookup_fail_doubles", doubles, "msgs", baseline=N, target="0",
                   note=f"{N} messages, answers and lookups lost for {HANG_S:.0f} s (30 s "
                        "late answers, then accept_then_503) past SMSC's 60 s duplicate "
                        "window, a worker SIGTERMed during it; baseline: every message sent "
                        f"twice (the issue saw 10 of 10); during the hang {sends} send and "
                        f"{looks} status requests reached SMSC; after it: {statuses}, "
                        f"{N - len(final)} not final")]


if __name__ == "__main__":
    for r in run():
        print(r)
