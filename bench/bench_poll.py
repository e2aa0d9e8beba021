"""Issue 15 figure: status polls per second through one worker process (8 threads) against the
SMSC sandbox, as the scheduler's sweep enqueues them (``poll_status_batch`` jobs of
``status_sweep_batch`` ids), and the Redis round trips each poll costs.

N messages are sent through the pipeline first (the sandbox knows them; the worker's own poll
chain is set an hour out); then the poll jobs are enqueued and timed until the sandbox has
answered N status requests.  Baseline: the same number of status requests made directly with
httpx from the same number of threads.  Round trips: requests Redis read (INFO stats
``total_reads_processed``: a pipeline is one) per poll; the commands sent (MONITOR) beside.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.bench_api import Commands
from bench.bench_pipeline import CREDS, _config, _counters, _wait_accepted, _wait_counter
from bench.common import Worker, base_env, redis_server, result, sandbox_process
from core.broker import build_broker, enqueue
from core.contracts import POLL_STATUS_BATCH, status_queue
from core.settings import load_settings
from producers import Producer

N = int(os.environ.get("BENCH_POLL_N", "4000"))
THREADS = 8


def direct(url: str, ids: list[tuple[str, str]], threads: int) -> tuple[float, float]:
    """Requests/s, and CPU-ms per request of this process."""
    per = len(ids) // threads

    def loop(t: int) -> None:
        with httpx.Client(timeout=30) as c:
            for seq, phone in ids[t * per:(t + 1) * per]:
                c.get(f"{url}/sys/status.php", params={
                    "login": "gonets", "psw": "sandbox", "fmt": "3", "charset": "utf-8",
                    "phone": phone, "id": seq})

    t0, c0 = time.monotonic(), time.process_time()
    ts = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    n = per * threads
    return n / (time.monotonic() - t0), (time.process_time() - c0) / n * 1000


def _reads(producer: Producer) -> int:
    """Client requests Redis has read so far (each round trip of each client is one)."""
    return int(producer.store.r.info("stats")["total_reads_processed"])


def run() -> list[dict[str, Any]]:
    with redis_server() as rs, sandbox_process("sandbox.smsc_http", "--port", "0", "--port",
                                               "0", "--balance", "1e9") as (_, info), \
            tempfile.TemporaryDirectory() as d:
        urls = info["smsc_http"]
        env = base_env(rs.url, _config(Path(d), urls, first_poll_s=3600), **CREDS)
        os.environ.update(CREDS)
        settings = load_settings(env)
        broker = build_broker(settings)
        producer = Producer(settings, broker=broker)
        run_id = time.time_ns()
        got = producer.send_many([{"to": f"+37529{2000000 + i}", "text": f"poll {i} ({run_id})"}
                                  for i in range(N)])
        ids = [g.id for g in got if not isinstance(g, Exception)]
        worker = Worker(env, "smsc", THREADS)
        try:
            _wait_accepted(urls[0], N)
            recs = [producer.store.get(i) for i in ids]
            pairs = [(r["seq"], r["phone"]) for r in recs]
            baseline, base_cpu = direct(urls[0], pairs, THREADS)
            base = _counters(urls[0])["status"]
            batch = settings.status_sweep_batch
            spy = None
            if os.environ.get("BENCH_POLL_SPY"):  # py-spy record of the worker (profiling)
                import subprocess
                import sys
                spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record",
                                        "-p", str(worker.proc.pid), "-o",
                                        os.environ["BENCH_POLL_SPY"], "-f", "raw", "-r", "100",
                                        "--nonblocking", "--gil"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)
            proc = psutil.Process(worker.proc.pid)
            with Commands(rs.url) as c:
                reads0 = _reads(producer)
                cpu0 = sum(proc.cpu_times()[:2])
                t0 = time.monotonic()
                for k in range(0, len(ids), batch):
                    enqueue(broker, status_queue("smsc"), POLL_STATUS_BATCH, "smsc",
                            ids[k:k + batch])
                t1 = _wait_counter(urls[0], "status", base + len(ids))
                time.sleep(0.5)  # the last answers' writes
                cpu = sum(proc.cpu_times()[:2]) - cpu0
                reads = _reads(producer) - reads0 - 1  # the INFO that read it
            rss = worker.rss_mb()
            if spy is not None:
                spy.send_signal(2)
                spy.wait(60)
        finally:
            worker.stop()
            broker.close()
    rate = len(ids) / (t1 - t0)
    return [
        result("poll_msgs_per_s", rate, "msg/s", baseline=baseline, target=">= 300",
               note=f"{len(ids)} polls, 1 worker x {THREADS} threads, jobs of {batch} ids; "
                    f"worker CPU {cpu / len(ids) * 1000:.2f} ms/poll (its Redis reads and "
                    f"writes included); baseline: direct httpx status requests only, same "
                    f"threads, {base_cpu:.2f} CPU-ms/request; worker RSS {rss:.0f} MB; load "
                    f"{os.getloadavg()[0]:.1f}"),
        result("redis_roundtrips_per_poll", reads / len(ids), "calls",
               note="requests Redis read per poll, enqueue and the worker's heartbeat included "
                    "(INFO stats total_reads_processed: a pipeline is one); "
                    f"{c.top / len(ids):.2f} commands sent per poll (MONITOR), "
                    f"{c.all / len(ids):.1f} run, scripts' included (INFO commandstats)"),
    ]


if __name__ == "__main__":
    for r in run():
        print(r)
