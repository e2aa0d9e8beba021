"""What the scheduler's jobs do.  Each only reads the store and enqueues by queue and actor
name (``core.contracts``), like any producer; provider code runs in the workers.

The status sweep walks the ``nonfinal`` index (id -> next check time, ms) in batches with
``ZRANGEBYSCORE ... LIMIT`` inside one Lua script (``lua/sweep.lua``), which reads what it
needs of each record where the data is; every id it looks at leaves the due range in the same
step (its next check moves out, backing off as the message ages, or it is removed), so the
walk always ends and never holds more than one batch in memory.  Python only groups the
returned ids per account into poll jobs, ``status_sweep_batch`` ids each.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from core.broker import enqueue
from core.contracts import (
    CHECK_BALANCE,
    PAYMENTS_SWEEP_QUEUE,
    POLL_STATUS_BATCH,
    SWEEP_PENDING_PAYMENTS,
    status_queue,
)
from core.facts import give_up
from core.settings import Settings
from core.store import Store
from core.timing import CheckPlan, now_ms

log = logging.getLogger("gonets.scheduler")

#: when the sweep checks a message again (``core.timing``'s one formula: after as long as it
#: has lived so far, within these bounds), handed to ``lua/sweep.lua`` as its parameters
SWEEP_PLAN = CheckPlan(first_s=10 * 60, max_s=6 * 3600)
MIN_RECHECK_S = SWEEP_PLAN.first_s
MAX_RECHECK_S = SWEEP_PLAN.max_s
#: ids one run of ``lua/sweep.lua`` takes from the index (a few ms of Redis time)
SCAN_BATCH = 5000


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


def status_sweep(store: Store, broker: Any, settings: Settings, *, now: int | None = None,
                 batch: int | None = None) -> SweepStats:
    """Enqueue a status poll for every submitted message due for a check, ``batch`` ids per
    job on its account's status queue; close as ``unknown`` those older than the provider can
    answer for (``status_give_up_s``)."""
    t0 = time.perf_counter()
    now = now_ms() if now is None else now
    batch = batch or settings.status_sweep_batch
    accounts = sorted(a.name for a in settings.sms_accounts())
    script = _script(store)
    stats = SweepStats()
    pending: dict[str, list[str]] = {}  # account -> ids not yet enqueued (< batch)
    args = [now, store.msg_key(""), SCAN_BATCH, settings.status_give_up_s * 1000,
            int(SWEEP_PLAN.first_s * 1000), int(SWEEP_PLAN.max_s * 1000), *accounts]
    while True:
        res = script(keys=[store.nonfinal_key], args=args)
        checked, removed, skipped = int(res[0]), int(res[1]), int(res[2])
        close = res[3].split(",") if res[3] else []
        if checked == 0:
            break
        stats.checked += checked
        stats.removed += removed
        stats.skipped += skipped
        for i in range(4, len(res), 2):
            account, ids = res[i], res[i + 1]
            buf = pending.setdefault(account, [])
            buf.extend(ids.split(","))
            while len(buf) >= batch:
                _enqueue(broker, account, buf[:batch], stats)
                del buf[:batch]
        for msg_id in close:
            give_up(store, msg_id, settings.status_give_up_s)
            stats.closed += 1
    for account, ids in pending.items():
        if ids:
            _enqueue(broker, account, ids, stats)
    stats.duration_s = time.perf_counter() - t0
    return stats


def _script(store: Store) -> Any:
    script = getattr(store, "_gonets_sweep", None)
    if script is None:
        text = resources.files("scheduler").joinpath("lua", "sweep.lua").read_text("utf-8")
        script = store.r.register_script(text)  # sweep.lua reads the store's records
        store._gonets_sweep = script  # type: ignore[attr-defined]
    return script


def _enqueue(broker: Any, account: str, ids: list[str], stats: SweepStats) -> None:
    enqueue(broker, status_queue(account), POLL_STATUS_BATCH, account, list(ids))
    stats.jobs += 1
    stats.enqueued += len(ids)
    stats.per_account[account] = stats.per_account.get(account, 0) + len(ids)


def balance_checks(broker: Any, settings: Settings) -> list[str]:
    """Enqueue ``check_balance`` for every SMS account with a ``limits.min_balance``."""
    done = []
    for a in settings.sms_accounts():
        if a.limits.min_balance is not None:
            enqueue(broker, status_queue(a.name), CHECK_BALANCE, a.name)
            done.append(a.name)
    return done


def payment_sweep(broker: Any, settings: Settings) -> bool:
    """Enqueue the pending-payment sweep when a payments account is configured."""
    if not settings.payment_accounts():
        return False
    enqueue(broker, PAYMENTS_SWEEP_QUEUE, SWEEP_PENDING_PAYMENTS)
    return True
