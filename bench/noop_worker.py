"""A worker with one no-op actor on the same broker settings as Gonets: the baseline for what
dramatiq and Redis alone cost per message."""

from __future__ import annotations

import signal
import sys
import threading

import dramatiq
from dramatiq import Worker

from core.broker import get_broker
from core.settings import get_settings

QUEUE = "bench.noop"


def noop(i: int) -> None:
    return None


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    broker = get_broker(get_settings(), worker=True)
    dramatiq.actor(noop, actor_name="noop", queue_name=QUEUE, broker=broker)
    worker = Worker(broker, queues={QUEUE}, worker_threads=threads)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    worker.start()
    print("noop worker ready", flush=True)
    stop.wait()
    worker.stop()


if __name__ == "__main__":
    main()
