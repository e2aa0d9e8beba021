"""A Gonets worker on dramatiq's own Redis machinery, the baseline of bench_redis_restart:

    python -m bench.stock_dramatiq_worker POOL THREADS

dramatiq's ``RedisBroker`` (its consumer acks a job whatever happened to Redis under it),
``Retries`` (a job failing on a Redis error is handed to it), ``Worker`` and consumer threads
(delayed jobs dropped after a connection error, a consumer thread ended by redis-py's
``ConnectionError`` in ``close()``) and its restart delays (3 s, 5 s): what issue 20 measured.
Everything else is Gonets as it is."""

from __future__ import annotations

import sys

import dramatiq
import dramatiq.worker as dw
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries


def main() -> int:
    pool, threads = sys.argv[1], sys.argv[2]
    import core.broker
    import workers.consumers  # sets the shorter delays (undone below)
    import workers.pool

    core.broker.GonetsRedisBroker = RedisBroker  # type: ignore[misc]
    core.broker.RedisRetries = Retries  # type: ignore[misc]
    workers.pool.Worker = dramatiq.Worker  # type: ignore[misc]
    dw.CONSUMER_RESTART_DELAY_SECS = 3.0
    dw.POST_PROCESS_MESSAGE_RETRY_DELAY_SECS = 5
    from cli.main import main as gonets

    return gonets(["worker", "--pool", pool, "--threads", threads])


if __name__ == "__main__":
    sys.exit(main())
