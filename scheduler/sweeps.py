"""What the scheduler's jobs do.  Each only reads the store and enqueues by queue and actor
name (``core.contracts``), like any producer; provider code runs in the workers.

The status sweep walks the ``nonfinal`` index (id -> next check time, ms) in batches with
``ZRANGEBYSCORE ... LIMIT``; one pipelined ``HMGET`` per batch reads what it needs of each
record; every id it looks at leaves the due range in the same pass (its next check moves
out, backing off as the message ages, or it is removed), so the walk always ends and never
holds more than one batch in memory.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from core.broker import enqueue
from core.contracts import (
    CHECK_BALANCE,
    PAYMENTS_SWEEP_QUEUE,
    POLL_STATUS_BATCH,
    SWEEP_PENDING_PAYMENTS,
    Status,
    status_queue,
)
from core.settings import Settings
from core.store import Store, now_ms

log = logging.getLogger("gonets.scheduler")

#: a message is checked again after about its age, within these bounds (seconds)
MIN_RECHECK_S = 10 * 60
MAX_RECHECK_S = 6 * 3600
_FIELDS = ("account", "status", "submitted_ms", "created_ms")


def recheck_after_s(age_s: float) -> float:
    """Back off as a message ages: young ones are asked about often, old ones rarely."""
    return min(max(age_s, MIN_RECHECK_S), MAX_RECHECK_S)


@dataclass
class SweepStats:
    checked: int = 0
    enqueued: int = 0
    jobs: int = 0
    closed: int = 0
    removed: int = 0
    skipped: int = 0
    duration_s: float = 0.0
    per_account: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def status_sweep(store: Store, broker: Any, settings: Settings, *, now: int | None = None,
                 batch: int | None = None) -> SweepStats:
    """Enqueue a status poll for every submitted message due for a check, ``batch`` ids per
    job on its account's status queue; close as ``unknown`` those older than the provider can
    answer for (``status_give_up_s``)."""
    t0 = time.perf_counter()
    now = now_ms() if now is None else now
    batch = batch or settings.status_sweep_batch
    give_up_ms = settings.status_give_up_s * 1000
    accounts = {a.name for a in settings.accounts if a.provider != "bepaid"}
    stats = SweepStats()
    r = store.r
    key = store.nonfinal_key
    pending: dict[str, list[str]] = {}  # account -> ids not yet enqueued (< batch)
    while True:
        items = r.zrangebyscore(key, "-inf", now, start=0, num=batch)
        if not items:
            break
        pipe = r.pipeline(transaction=False)
        for msg_id in items:
            pipe.hmget(store.msg_key(msg_id), _FIELDS)
        rows = pipe.execute()
        later: dict[str, int] = {}
        gone: list[str] = []
        close: list[str] = []
        for msg_id, (account, status, submitted, created) in zip(items, rows):
            stats.checked += 1
            if status is None or Status(status).final:
                gone.append(msg_id)
                continue
            age_ms = now - int(submitted or created or now)
            if account not in accounts:
                # its account left the configuration: keep it, look again much later
                later[msg_id] = now + MAX_RECHECK_S * 1000
                stats.skipped += 1
                continue
            if status == Status.SUBMITTED and age_ms > give_up_ms:
                close.append(msg_id)
                continue
            later[msg_id] = now + int(recheck_after_s(age_ms / 1000) * 1000)
            if status == Status.SUBMITTED:
                ids = pending.setdefault(account, [])
                ids.append(msg_id)
                if len(ids) >= batch:
                    _enqueue(broker, account, ids, stats)
                    pending[account] = []
            else:
                stats.skipped += 1  # queued or deferred: its send job owns it
        pipe = r.pipeline(transaction=False)
        if later:
            pipe.zadd(key, later, xx=True)  # xx: a record that became final meanwhile stays out
        if gone or close:
            pipe.zrem(key, *gone, *close)
        pipe.execute()
        stats.removed += len(gone)
        for msg_id in close:
            hours = settings.status_give_up_s / 3600
            store.transition(msg_id, Status.UNKNOWN,
                             reason=f"no final status from the provider within {hours:g} h")
            stats.closed += 1
    for account, ids in pending.items():
        if ids:
            _enqueue(broker, account, ids, stats)
    stats.duration_s = time.perf_counter() - t0
    return stats


def _enqueue(broker: Any, account: str, ids: list[str], stats: SweepStats) -> None:
    enqueue(broker, status_queue(account), POLL_STATUS_BATCH, account, list(ids))
    stats.jobs += 1
    stats.enqueued += len(ids)
    stats.per_account[account] = stats.per_account.get(account, 0) + len(ids)


def balance_checks(broker: Any, settings: Settings) -> list[str]:
    """Enqueue ``check_balance`` for every SMS account with a ``limits.min_balance``."""
    done = []
    for a in settings.accounts:
        if a.provider != "bepaid" and a.limits.min_balance is not None:
            enqueue(broker, status_queue(a.name), CHECK_BALANCE, a.name)
            done.append(a.name)
    return done


def payment_sweep(broker: Any, settings: Settings) -> bool:
    """Enqueue the pending-payment sweep when a payments account is configured."""
    if not any(a.provider == "bepaid" for a in settings.accounts):
        return False
    enqueue(broker, PAYMENTS_SWEEP_QUEUE, SWEEP_PENDING_PAYMENTS)
    return True
