"""What the scheduler's jobs do.  Each only reads the store and enqueues by queue and actor
name (``core.contracts``), like any producer; provider code runs in the workers.

The status sweep walks the ``nonfinal`` index (id -> next check time, ms) in batches with
``ZRANGEBYSCORE ... LIMIT`` inside one Lua script (``lua/sweep.lua``), which reads what it
needs of each record where the data is; every id it looks at leaves the due range in the same
step (its next check moves out, backing off as the message ages, or it is removed), so the
walk always ends and never holds more than one batch in memory.  Python only groups the
returned ids per account into poll jobs, ``status_sweep_batch`` ids each.

**Reconciliation** (every record ends final).  A queued or deferred message belongs to its
send job; if the job is gone (the producer died between the record and the enqueue, Redis
lost the queue but not the record, dramatiq dead-lettered the job) nothing else would ever
move it.  So the sweep also returns the queued/deferred records unchanged for
``reconcile_after_s``, and looks for a send job of each in the account's queues (waiting,
delayed, held or being processed: dramatiq keeps every unacked job in the queue's hash;
``_with_jobs``).  Whatever legitimately waits (a deferral until the flood or
pacing hold ends or the sending window opens, a paused account, a retry's backoff, a validity
that ends) waits as a delayed job, and is found.  A record with no job left gets its send job
enqueued again: the send is idempotent by id, and a record whose last attempt has an unknown
outcome (``inflight_ms``) is looked up at the provider by that job before anything is sent.
Dead letters: the sweep reads each send queue's dead-letter set (``<queue>.XQ``, where
dramatiq puts a job whose retries ran out, that passed its age limit or names an unknown
actor) from where it last stopped; a message whose job is there and has no other job ends
``failed`` with the reason (``unknown`` if an attempt's outcome is unknown: it may have been
sent), never silently.  Each is counted per account (``gonets_reconciled_total``).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from core.broker import enqueue
from core.contracts import (
    CHECK_BALANCE,
    PAYMENTS_SWEEP_QUEUE,
    POLL_STATUS_BATCH,
    SEND_SMS,
    SEND_SMS_URGENT,
    SWEEP_PENDING_PAYMENTS,
    Lane,
    Status,
    send_actor,
    send_queue,
    status_queue,
)
from core.errors import UnknownMessage
from core.facts import give_up
from core.observability.metrics import reconciled
from core.replies import maybe_text, scored, text
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
    #: queued/deferred records whose send job was gone: enqueued again
    requeued: int = 0
    #: records whose send job was dead-lettered: closed (failed, or unknown if in flight)
    dead_lettered: int = 0
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
    script = _script(store, "sweep")
    stats = SweepStats()
    pending: dict[str, list[str]] = {}  # account -> ids not yet enqueued (< batch)
    stale: dict[str, list[str]] = {}  # account -> queued/deferred ids unchanged for long
    for account in accounts:  # first: a dead-lettered job's record is closed, not requeued
        close_dead_letters(store, account, now, stats)
    args = [now, store.msg_key(""), SCAN_BATCH, settings.status_give_up_s * 1000,
            int(SWEEP_PLAN.first_s * 1000), int(SWEEP_PLAN.max_s * 1000),
            int(settings.reconcile_after_s * 1000), *accounts]
    while True:
        res = script(keys=[store.nonfinal_key], args=args)
        checked, removed, skipped = int(res[0]), int(res[1]), int(res[2])
        close = res[3].split(",") if res[3] else []
        npolls = int(res[4])
        if checked == 0:
            break
        stats.checked += checked
        stats.removed += removed
        stats.skipped += skipped
        for k, i in enumerate(range(5, len(res), 2)):
            account, ids = res[i], res[i + 1].split(",")
            if k >= npolls:  # queued/deferred and unchanged for long: looked at below
                stale.setdefault(account, []).extend(ids)
                continue
            buf = pending.setdefault(account, [])
            buf.extend(ids)
            while len(buf) >= batch:
                _enqueue(broker, account, buf[:batch], stats)
                del buf[:batch]
        for msg_id in close:
            give_up(store, msg_id, settings.status_give_up_s)
            stats.closed += 1
    for account, ids in pending.items():
        if ids:
            _enqueue(broker, account, ids, stats)
    for account, ids in stale.items():  # one look through the account's jobs per sweep
        requeue_jobless(store, broker, account, ids, now, stats)
    stats.duration_s = time.perf_counter() - t0
    return stats


def _script(store: Store, name: str) -> Any:
    """``lua/<name>.lua`` registered on the store's client (the scripts read its records)."""
    attr = f"_gonets_{name}"
    script = getattr(store, attr, None)
    if script is None:
        text = resources.files("scheduler").joinpath("lua", f"{name}.lua").read_text("utf-8")
        script = store.r.register_script(text)
        setattr(store, attr, script)
    return script


#: a send job's one argument, the message id, in dramatiq's JSON encoding of the job
_JOB_ARG = re.compile(r'"args":\["([^"]+)"')


def _with_jobs(store: Store, account: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` have a send job in ``account``'s queues: waiting, fetched by a worker,
    being processed (``<queue>.msgs``) or delayed (``<queue>.DQ.msgs``); dramatiq keeps a job
    in these hashes from its enqueue until it is acked.

    Read with HSCAN, a page at a time (Redis is never blocked for long), so not in one instant:
    a job that moves between the two hashes while they are read (a delayed one whose time came,
    a retry) writes its new copy before the old one goes, and the delayed hashes are read
    before and after the others, so a job is missed only if it moves three times during the
    read. What that would cost: a second send job for the message, which finds it sent."""
    wanted = set(ids)
    found: set[str] = set()
    queues = [send_queue(account, lane) for lane in Lane]
    delayed = [store.keys.delayed_messages(q) for q in queues]
    for key in [*delayed, *(store.keys.queue_messages(q) for q in queues), *delayed]:
        for _, data in store.r.hscan_iter(key, count=1000):
            m = _JOB_ARG.search(text(data))
            if m and m.group(1) in wanted:
                found.add(m.group(1))
                if len(found) == len(wanted):
                    return found
    return found


def _jobless(store: Store, account: str, ids: list[str], now: int,
             mark: bool) -> list[tuple[str, str, str]]:
    """(id, lane, inflight_ms) of the queued/deferred ``ids`` with no send job left."""
    with_jobs = _with_jobs(store, account, ids)
    left = [i for i in ids if i not in with_jobs]
    if not left:
        return []
    res = _script(store, "jobless")(args=[store.msg_key(""), now, "mark" if mark else "look",
                                          *left])
    return [(res[i], res[i + 1], res[i + 2]) for i in range(0, len(res), 3)]


def requeue_jobless(store: Store, broker: Any, account: str, ids: list[str], now: int,
                    stats: SweepStats) -> int:
    """Enqueue the send job again of every one of ``ids`` that has none (an unknown outcome is
    looked up by that job before anything is sent). Returns how many."""
    found = _jobless(store, account, ids, now, mark=True)
    for msg_id, lane, inflight in found:
        lane = lane or Lane.BULK.value
        enqueue(broker, send_queue(account, lane), send_actor(lane), msg_id)
        log.warning("message %s (account %s): no send job left for it (%s); its send job is "
                    "enqueued again", msg_id, account,
                    "outcome of its last attempt unknown: it is looked up first" if inflight
                    else "it was never sent")
    if found:
        stats.requeued += len(found)
        reconciled(account, "requeued", len(found))
    return len(found)


def close_dead_letters(store: Store, account: str, now: int, stats: SweepStats) -> int:
    """Close the messages whose send job dramatiq dead-lettered since the last sweep and that
    have no other job: ``failed`` with the reason, ``unknown`` if an attempt's outcome is
    unknown. Returns how many were closed."""
    closed = 0
    for lane in Lane:
        q = send_queue(account, lane)
        seen_key = store.keys.dead_letters_seen(q)
        since = maybe_text(store.r.get(seen_key)) or "0"
        entries = scored(store.r.zrangebyscore(store.keys.queue_dead_letters(q), f"({since}",
                                               "+inf", withscores=True))
        if not entries:
            continue
        jobs = store.r.hmget(store.keys.queue_dead_letter_messages(q),
                             [e[0] for e in entries])
        why: dict[str, str] = {}
        for data in jobs:
            job = _decode(data)
            if job and job.get("actor_name") in (SEND_SMS, SEND_SMS_URGENT) and job["args"]:
                why[str(job["args"][0])] = _dead_letter_reason(job)
        for msg_id, _, inflight in _jobless(store, account, list(why), now, mark=False):
            status = Status.UNKNOWN if inflight else Status.FAILED
            reason = why[msg_id] + ("; the outcome of its last attempt is unknown: it may "
                                    "have been sent" if inflight else "")
            try:
                t = store.transition(msg_id, status, reason=reason, inflight_ms="")
            except UnknownMessage:
                continue
            if t.changed:
                closed += 1
                reconciled(account, status.value)
                log.error("message %s (account %s): %s", msg_id, account, reason)
        store.r.set(seen_key, str(int(max(score for _, score in entries))))
    stats.dead_lettered += closed
    return closed


def _decode(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        job = json.loads(data)
    except ValueError:
        return None
    return job if isinstance(job, dict) and isinstance(job.get("args"), list) else None


def _dead_letter_reason(job: dict[str, Any]) -> str:
    """Why dramatiq gave the job up, from what it left in the job's options."""
    opts = job.get("options") or {}
    retries = opts.get("retries")
    tb = str(opts.get("traceback") or "").strip().splitlines()
    if tb:
        return (f"its send job was given up after {retries} tries (dead-lettered): "
                f"{tb[-1].strip()}")[:300]
    return ("its send job was given up (dead-lettered) before it ran: it passed its age "
            "limit or names an actor no worker has")


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
