"""``gonets worker --pool NAME``: the dramatiq worker for one account's queues.

SIGTERM (and Ctrl-C) stop taking new work, let in-flight jobs finish (up to
``drain_timeout_s``; unfinished ones are requeued by dramatiq, never lost), then exit.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading

from dramatiq import Worker

from core.broker import get_broker
from core.contracts import pool_queues
from core.errors import ConfigError
from core.settings import Settings, get_settings

log = logging.getLogger("gonets.worker")


def queues_for(settings: Settings, pool: str) -> list[str]:
    account = settings.account(pool)
    if account.provider == "bepaid":
        raise ConfigError(f"{pool} is a payments account; its pool is not an SMS pool yet")
    return pool_queues(account.name)


def run_pool(pool: str, *, threads: int = 8, processes: int = 1) -> int:
    if processes > 1:
        return _supervise(pool, threads, processes)
    settings = get_settings()
    queues = queues_for(settings, pool)
    broker = get_broker(settings, worker=True)
    from workers import actors

    actors.register(broker)
    for q in queues:
        broker.declare_queue(q)
    worker = Worker(broker, queues=set(queues), worker_threads=threads)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %s: draining in-flight work", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.start()
    log.info("worker pool=%s pid=%s threads=%s queues=%s", pool, os.getpid(), threads, queues)
    print(f"gonets worker: pool {pool} ready (pid {os.getpid()}, {threads} threads)", flush=True)
    stop.wait()
    worker.stop(timeout=int(settings.drain_timeout_s * 1000))
    broker.close()
    from workers.runtime import get_runtime

    get_runtime().close()
    log.info("worker pool=%s stopped", pool)
    return 0


def _supervise(pool: str, threads: int, processes: int) -> int:
    """Run ``processes`` single-process workers and pass signals on to them."""
    cmd = [sys.executable, "-m", "cli.main", "worker", "--pool", pool, "--threads", str(threads)]
    children = [subprocess.Popen(cmd) for _ in range(processes)]

    def forward(signum: int, frame: object) -> None:
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [c.wait() for c in children]
    return max(codes)
