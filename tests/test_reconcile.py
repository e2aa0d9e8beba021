"""Reconciliation (issue 14, "a record without a job stays queued forever"): the status sweep
finds queued/deferred messages whose send job is gone and enqueues it again, and closes the
ones whose job dramatiq dead-lettered, with the reason; a message whose job is alive (here:
delayed for a minute) is left alone."""

from __future__ import annotations

from typing import Any

import prometheus_client

from core.broker import build_broker, enqueue
from core.contracts import Lane, Status, send_actor, send_queue
from core.settings import Settings
from core.store import Store, now_ms
from producers import Producer
from scheduler import sweeps
from tests.support import poll_until, wait_final


def _reconciled(action: str) -> float:
    v = prometheus_client.REGISTRY.get_sample_value(
        "gonets_reconciled_total", {"account": "smsc", "action": action})
    return v or 0.0


def _record(store: Store, phone: str, text: str, **extra: str) -> str:
    """A record as the producer writes it, without its send job (a producer killed between
    the two)."""
    msg_id = f"{now_ms():x}{phone[-4:]}"
    store.create(msg_id, {"account": "smsc", "provider": "smsc_http", "lane": "bulk",
                          "kind": "transactional", "phone": phone, "text": text,
                          "sender": "Gonets", "encoding": "gsm7", "parts": 1, **extra},
                 next_check_ms=now_ms() + 1000)
    return msg_id


def test_sweep_requeues_jobless_records_and_closes_dead_lettered_ones(
        settings: Settings, store: Store, smsc: Any, start_worker: Any) -> None:
    settings = settings.model_copy(update={"reconcile_after_s": 1.0})
    broker = build_broker(settings)
    producer = Producer(settings, store=store, broker=broker)
    bulk = send_queue("smsc", Lane.BULK)
    before = {a: _reconciled(a) for a in ("requeued", "failed", "unknown")}
    try:
        # Redis lost the queue but not the records: one queued, one deferred
        lost_queued = producer.send_sms("+375291110001", "lost job 1")
        lost_deferred = producer.send_sms("+375291110002", "lost job 2")
        store.transition(lost_deferred, Status.DEFERRED, reason="flood rule: wait 30 s")
        broker.flush(bulk)
        # the producer died between the record and the enqueue
        no_job = _record(store, "375291110003", "never enqueued")
        # a job that is alive: delayed for a minute (a deferral); must be left alone
        alive = _record(store, "375291110004", "deferred a minute")
        enqueue(broker, bulk, send_actor(Lane.BULK), alive, delay_ms=60_000)
        # jobs dramatiq dead-letters when a worker takes them (past their age limit); the
        # second's last attempt has an unknown outcome
        dead = _record(store, "375291110005", "dead-lettered")
        dead_inflight = _record(store, "375291110006", "dead-lettered in flight",
                                inflight_ms=str(now_ms()), seq="990001", attempts="1")
        for msg_id in (dead, dead_inflight):
            enqueue(broker, bulk, send_actor(Lane.BULK), msg_id, max_age=1)
        start_worker(threads=2)
        poll_until(lambda: store.r.zcard(store.keys.queue_dead_letters(bulk)) >= 2, 30,
                   "both jobs dead-lettered")
        assert store.get(dead)["status"] == "queued"  # nothing moved it: until the sweep

        # one sweep once the threshold has passed does it all
        stats = sweeps.status_sweep(store, broker, settings, now=now_ms() + 1500)
        assert stats.requeued == 3 and stats.dead_lettered == 2, stats

        final = wait_final(store, [lost_queued, lost_deferred, no_job], timeout_s=60)
        assert set(final.values()) == {"delivered"}
        assert smsc.counters["accepted"] == 3  # each sent once
        for msg_id in (lost_queued, lost_deferred, no_job):
            assert store.get(msg_id)["reconciled"] == "1"
        d = store.get(dead)
        assert d["status"] == "failed" and "dead-lettered" in d["reason"], d
        di = store.get(dead_inflight)
        assert di["status"] == "unknown" and "may have been sent" in di["reason"], di
        a = store.get(alive)
        assert a["status"] == "queued" and "reconciled" not in a
        assert _reconciled("requeued") - before["requeued"] == 3
        assert _reconciled("failed") - before["failed"] == 1
        assert _reconciled("unknown") - before["unknown"] == 1

        # the next sweep finds nothing more to do: dead letters are read once, the live job
        # is still there
        again = sweeps.status_sweep(store, broker, settings, now=now_ms() + 3000)
        assert again.requeued == 0 and again.dead_lettered == 0, again
    finally:
        broker.close()
