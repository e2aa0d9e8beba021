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

from core.broker import get_broker
from core.contracts import pool_queues
from core.observability.tracing import note_status, set_record_reader
from core.payments import payments_pool_queues
from core.provider_options import check_account_options
from core.settings import Settings, get_settings
from core.signals import set_from_handler
from core.store import set_transition_listener
from workers import health
from workers.consumers import Worker  # dramatiq's, with consumers that survive Redis outages

log = logging.getLogger("gonets.worker")


def queues_for(settings: Settings, pool: str) -> list[str]:
    account = settings.account(pool)
    check_account_options(account)  # a bad options table stops the pool at start, naming it
    if account.kind == "payments":  # the payments pool (MTS Money): workers/payments.py
        return payments_pool_queues(account.name)
    return pool_queues(account.name)


def run_pool(pool: str, *, threads: int = 8, processes: int = 1,
             health_port: int | None = None) -> int:
    if processes > 1:
        return _supervise(pool, threads, processes, health_port)
    settings = get_settings()
    queues = queues_for(settings, pool)
    broker = get_broker(settings, worker=True)
    from workers import actors, payments
    from workers.runtime import record_outcome

    actors.register(broker)
    payments.register(broker)
    set_record_reader(record_outcome)  # the outcome tag of each job's trace reads its record
    set_transition_listener(note_status)  # ... unless the job itself just moved it
    for q in queues:
        broker.declare_queue(q)
    # a message on a quiet queue is picked up at once: its enqueue rings the consumers'
    # doorbell (core/doorbell.py), so idle threads wake once a second (dramatiq's default)
    worker = Worker(broker, queues=set(queues), worker_threads=threads, worker_timeout=1000)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %s: draining in-flight work", signal.Signals(signum).name)
        health.set_draining()
        set_from_handler(stop)  # not stop.set(): the main thread may hold its lock

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    from workers.runtime import get_runtime

    account = settings.account(pool)
    # built now: a bad account stops the pool at start, naming the key
    rt = get_runtime()
    rt.pool = account.name  # a send job of a message that moved on is passed to its pool
    provider = rt.provider(account) if account.kind == "sms" else rt.payment_provider(account)
    consuming = threading.Event()
    health_server = _start_health(health_port, settings.redis_url, provider, worker, consuming)
    # a provider that binds (SMPP) may have to stand by until it holds a bind lease: the
    # pool takes no job of its account before then (and stays healthy meanwhile)
    wait_turn = getattr(provider, "wait_turn", None)
    print(f"gonets worker: pool {pool} ready (pid {os.getpid()}, {threads} threads)", flush=True)
    if wait_turn is not None and not wait_turn(stop):
        broker.close()
        if health_server is not None:
            health_server.stop()
        get_runtime().close()
        return 0
    worker.start()
    consuming.set()
    log.info("worker pool=%s pid=%s threads=%s queues=%s", pool, os.getpid(), threads, queues)
    print(f"gonets worker: pool {pool} consuming", flush=True)
    stop.wait()
    worker.stop(timeout=int(settings.drain_timeout_s * 1000))
    broker.close()
    if health_server is not None:
        health_server.stop()
    get_runtime().close()
    log.info("worker pool=%s stopped", pool)
    return 0


def _start_health(port: int | None, redis_url: str, provider: object, worker: Worker,
                  consuming: threading.Event) -> health.HealthServer | None:
    """``--health-port``: /healthz and /readyz fail when Redis or the worker threads are dead
    (checked once the worker consumes: a process standing by for an SMPP bind lease has none
    running, and is healthy) or the provider's own session is (``is_alive()``, SMPP)."""
    if port is None:
        return None
    health.register_check("redis", health.redis_check(redis_url))
    threads_alive = health.dramatiq_check(worker)
    health.register_check("dramatiq", lambda: threads_alive() if consuming.is_set() else None)
    is_alive = getattr(provider, "is_alive", None)
    if is_alive is not None:
        health.register_check("smpp", lambda: None if is_alive() else "SMPP session dead")
    return health.HealthServer(port).start()


def _supervise(pool: str, threads: int, processes: int, health_port: int | None = None) -> int:
    """Run ``processes`` single-process workers and pass signals on to them.  With a health
    port, the supervisor answers it: healthy while every child runs and Redis answers."""
    cmd = [sys.executable, "-m", "cli.main", "worker", "--pool", pool, "--threads", str(threads)]
    children = [subprocess.Popen(cmd) for _ in range(processes)]
    if health_port is not None:
        health.register_check("redis", health.redis_check(get_settings().redis_url))
        health.register_check("children", lambda: (
            None if all(c.poll() is None for c in children) else "a worker process has exited"))
        health.HealthServer(health_port).start()

    def forward(signum: int, frame: object) -> None:
        health.set_draining()
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [c.wait() for c in children]
    return 0 if all(c == 0 for c in codes) else 1  # a killed child (-9) is a failure too
