"""Helpers for benchmarks: real Redis, sandboxes as separate processes, real workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

from core.embedded_redis import RedisServer

ROOT = Path(__file__).resolve().parent.parent
#: the bench's own requests to a sandbox's ``/_sandbox/*`` endpoints, over one keep-alive
#: client.  ``httpx.get`` builds a client per call, TLS context included: ~33 CPU-ms each, so a
#: loop waiting on a sandbox counter every 50 ms took two thirds of a core from the 2-core
#: host the system under measure runs on (and only on the side that waits in a loop)
CONTROL = httpx.Client(timeout=30)


def result(name: str, value: float, unit: str, *, baseline: float | None = None,
           target: str | None = None, ratio: float | None = None,
           note: str | None = None) -> dict[str, Any]:
    if ratio is None and baseline:
        ratio = value / baseline
    r: dict[str, Any] = {"name": name, "value": round(value, 4), "unit": unit,
                         "baseline": None if baseline is None else round(baseline, 4),
                         "ratio": None if ratio is None else round(ratio, 4), "target": target}
    if note:
        r["note"] = note
    return r


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="gonets-bench-") as d:
        srv = RedisServer(Path(d)).start()
        try:
            yield srv
        finally:
            srv.stop()


@contextmanager
def sandbox_process(module: str, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], Any]]:
    """Run ``python -m <module> ARGS`` (a sandbox that prints one JSON line of addresses)."""
    p = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"{module} did not start")
        yield p, json.loads(line)
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def base_env(redis_url: str, config: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONETS_")}
    env.update(GONETS_REDIS_URL=redis_url, GONETS_CONFIG=str(config), PYTHONPATH=str(ROOT),
               **extra)
    return env


class Worker:
    def __init__(self, env: dict[str, str], pool: str, threads: int, *extra: str) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="gonets-bench-worker-", suffix=".log",
                                               delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "--pool", pool, "--threads",
             str(threads), *extra], env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while b"ready" not in Path(self.log.name).read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start: "
                                   + Path(self.log.name).read_text(errors="replace")[-2000:])
            time.sleep(0.05)

    def rss_mb(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self, sig: int = 15) -> None:
        stop_process(self.proc, self.log, sig)


def stop_process(proc: subprocess.Popen[bytes], log: Any, sig: int = 15) -> None:
    """Signal ``proc`` (killed after 30 s) and remove its temporary log file."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()
    os.unlink(log.name)
