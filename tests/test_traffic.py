"""Each traffic rule against a real Redis, several real worker processes and the SMSC sandbox,
measured where the provider sees it (the sandbox's own receive times).

Rates are small (a few per second) so the tests stay short; the real figures (30/s, 4 × 8
workers) are measured by ``make bench`` (bench/bench_traffic.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.broker import build_broker
from core.settings import load_settings
from core.store import Store
from producers import Producer
from tests.support import control, together, wait_final, write_config
from workers.traffic.pacing import Pacer

LONG = "Long message that takes two SMS parts. " * 5  # 195 GSM characters: 2 parts


@pytest.fixture
def configure(gonets_env: dict[str, str], smsc: Any,
              store: Store) -> Iterator[Callable[..., Producer]]:
    """Rewrite the account's limits (before workers start) and return a producer using them."""
    brokers = []

    def apply(**limits: Any) -> Producer:
        lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in limits.items())
        write_config(Path(gonets_env["GONETS_CONFIG"]), smsc.urls,
                     extra=f"[accounts.smsc.limits]\n{lines}\n")
        s = load_settings(gonets_env)
        broker = build_broker(s)
        brokers.append(broker)
        return Producer(s, store=store, broker=broker)

    yield apply
    for b in brokers:
        b.close()


def accepted(smsc: Any) -> list[tuple[float, int, str]]:
    """(receive time, parts, phone) of every message the sandbox accepted, in order; the time
    is when the request reached the sandbox (its request log)."""
    with smsc.lock:
        parts = {(m.phone, str(m.id)): m.parts for m in smsc.messages.values()}
    got = []
    for item in smsc.log.items():
        p = item.get("params") or {}
        key = (p.get("phones", ""), p.get("id", ""))
        if item["path"] == "/sys/send.php" and p.get("cost") != "1" and key in parts:
            got.append((item["at"], parts.pop(key), key[0]))
    return sorted(got)


def max_parts_in_1s(arrivals: list[tuple[float, int, str]]) -> int:
    best, j, total = 0, 0, 0
    for i in range(len(arrivals)):
        total += arrivals[i][1]
        while arrivals[i][0] - arrivals[j][0] >= 1.0:
            total -= arrivals[j][1]
            j += 1
        best = max(best, total)
    return best


def start_workers(start_worker: Callable[..., Any], n: int, threads: int) -> None:
    """Start ``n`` worker processes at once (each takes a while to boot on a busy box)."""
    together(*[lambda: start_worker(threads=threads)] * n)


def statuses_seen(store: Store, msg_id: str) -> list[str]:
    return [e["status"] for e in store.history(msg_id)]


def test_pacing_holds_the_cap_across_worker_processes_counting_every_part(
        configure, store, smsc, start_worker):
    # the allowance for arrival jitter is generous: this box runs the whole suite on 2 cores
    producer = configure(rate_per_s=5, pacing_jitter_ms=100)
    ids = [producer.send_sms(f"+37529{3000000 + i}", LONG if i % 6 == 0 else f"paced {i}")
           for i in range(24)]
    start_workers(start_worker, 3, threads=4)
    assert set(wait_final(store, ids, timeout_s=60).values()) == {"delivered"}
    got = accepted(smsc)
    assert len(got) == 24 and sum(p for _, p, _ in got) == 28  # 4 long ones, 2 parts each
    assert max_parts_in_1s(got) <= 5


def test_urgent_message_goes_before_waiting_bulk(configure, store, smsc, start_worker):
    # one slot a second: long beside the time a loaded host may take to hand the code to a
    # worker, which is not what this test is about
    producer = configure(rate_per_s=1, pacing_jitter_ms=100)
    bulk = [producer.send_sms(f"+37529{4000000 + i}", f"bulk {i}") for i in range(10)]
    # 8 threads: the bulk waits for its slots in each of them and, fetched, in the queue
    start_workers(start_worker, 2, threads=4)
    while len(accepted(smsc)) < 2:
        time.sleep(0.05)
    queued_at = time.time()  # the sandbox's receive times are on this clock
    code = producer.send_sms("+375297777777", "Your code 1234", lane="urgent")
    assert wait_final(store, [code], timeout_s=30)[code] == "delivered"
    got = accepted(smsc)
    at_urgent = next(i for i, (_, _, phone) in enumerate(got) if phone == "375297777777")
    before = sum(1 for at, _, _ in got if at < queued_at)  # at the provider before it was sent
    # it overtook the bulk waiting in the queue and in the threads: after it was queued, at
    # most the send of the thread that took it up, a slot booked ahead and one in flight
    assert at_urgent - before <= 4, (before, [p for _, _, p in got][:12])
    # the bulk was still going out when the code was delivered (which bulk message is last
    # depends on which worker fetched it)
    assert [b for b in bulk if store.find(b)["status"] in ("queued", "deferred")]
    wait_final(store, bulk, timeout_s=60)
    assert max_parts_in_1s(accepted(smsc)) <= 1


def test_flood_rule_holds_the_extra_messages_and_sends_them_after_the_gap(
        configure, store, smsc, start_worker):
    producer = configure(rate_per_s=20, flood_max_messages=3, flood_gap_s=2)
    ids = [producer.send_sms("+375291110000", f"flood {i}") for i in range(5)]
    other = producer.send_sms("+375291110001", "another subscriber")
    start_workers(start_worker, 2, threads=4)
    final = wait_final(store, [*ids, other], timeout_s=60)
    assert set(final.values()) == {"delivered"}  # held, never dropped
    to_one = [t for t, _, phone in accepted(smsc) if phone == "375291110000"]
    assert len(to_one) == 5
    assert to_one[2] - to_one[0] < 1.0  # the first burst went at once
    assert to_one[3] - to_one[2] >= 2.0  # the 4th waited for a gap of flood_gap_s
    held = [i for i in ids if "deferred" in statuses_seen(store, i)]
    assert len(held) == 2
    assert "flood rule" in store.history(held[0])[1]["reason"]
    other_at = next(t for t, _, phone in accepted(smsc) if phone == "375291110001")
    assert other_at < to_one[3]  # another number is not held


def test_duplicate_within_the_window_returns_the_first_id_and_is_sent_once(
        configure, store, smsc, start_worker):
    producer = configure(duplicate_window_s=1.5)
    first = producer.send_sms("+375292220000", "Your order has shipped")
    again = producer.send_sms("375292220000", "Your order has shipped")  # same number, other form
    other_sender = producer.send_sms("+375292220000", "Your order has shipped", sender="Shop")
    keyed = producer.send_sms("+375292220001", "first text", idempotency_key="order-7")
    keyed_again = producer.send_sms("+375292220001", "second text", idempotency_key="order-7")
    assert again == first and keyed_again == keyed and other_sender != first
    time.sleep(1.6)
    later = producer.send_sms("+375292220000", "Your order has shipped")
    assert later != first  # the window is over: a new message
    start_workers(start_worker, 2, threads=2)
    ids = [first, other_sender, keyed, later]
    assert set(wait_final(store, ids, timeout_s=30).values()) == {"delivered"}
    assert smsc.counters["accepted"] == 4


def test_validity_ending_while_waiting_behind_the_rate_expires_and_is_not_sent(
        configure, store, smsc, start_worker):
    producer = configure(rate_per_s=2)
    # one thread per worker: a job read before its validity is shortened below keeps its
    # one-minute validity, so at most two can slip through that way
    start_workers(start_worker, 2, threads=1)
    ids = [producer.send_sms(f"+37529{5000000 + i}", f"valid briefly {i}", validity=1)
           for i in range(10)]
    # a one-minute validity is the shortest a producer takes; shorten it on the records so
    # the test need not wait a minute
    ends = int(time.time() * 1000) + 2000
    for i in ids:
        store.update(i, expires_ms=ends)
    final = wait_final(store, ids, timeout_s=30)
    delivered = [i for i in ids if final[i] == "delivered"]
    expired = [i for i in ids if final[i] == "expired"]
    assert len(delivered) + len(expired) == 10 and delivered and len(expired) >= 3
    assert smsc.counters["accepted"] == len(delivered)  # the expired ones never went
    sent_seqs = {m.id for m in smsc.messages.values()}
    assert not any(int(store.get(i).get("seq") or 0) in sent_seqs for i in expired)
    assert all(e["at_ms"] >= ends for i in expired for e in store.history(i)
               if e["status"] == "expired")


def test_provider_throttle_slows_the_account_for_all_workers_and_loses_nothing(
        configure, store, smsc, start_worker, settings):
    producer = configure(rate_per_s=10)
    control(smsc.urls[0], throttle_per_s=4)
    ids = [producer.send_sms(f"+37529{6000000 + i}", f"throttled {i}") for i in range(24)]
    start_workers(start_worker, 2, threads=4)
    final = wait_final(store, ids, timeout_s=90)
    assert set(final.values()) == {"delivered"}  # requeued, never failed
    assert smsc.counters["throttled"] > 0
    assert smsc.counters["accepted"] == 24  # nothing sent twice
    assert Pacer(store.r, store.ns).factor("smsc") < 1.0  # the rate was lowered, shared in Redis
    slowed = [i for i in ids if any("slow down" in e.get("reason", "") for e in store.history(i))]
    assert slowed and all(int(store.get(i)["attempts"]) >= 2 for i in slowed)


def test_sending_window_holds_bulk_until_it_opens_but_not_an_urgent_code(
        configure, store, smsc, start_worker):
    opens = datetime.now(UTC) + timedelta(seconds=12)  # workers boot slowly on CI
    closes = opens + timedelta(hours=1)
    producer = configure(send_window=f"{opens:%H:%M:%S}-{closes:%H:%M:%S}", timezone="UTC")
    start_workers(start_worker, 2, threads=2)
    bulk = producer.send_sms("+375293330000", "Your order ships today")
    code = producer.send_sms("+375293330001", "Your code 5678", lane="urgent")
    assert wait_final(store, [code], timeout_s=20)[code] == "delivered"
    assert wait_final(store, [bulk], timeout_s=30)[bulk] == "delivered"
    held = [e for e in store.history(bulk) if e["status"] == "deferred"]
    assert held and "sending window" in held[0]["reason"]
    sent_at = {phone: t for t, _, phone in accepted(smsc)}
    assert sent_at["375293330001"] < opens.timestamp()  # the code did not wait
    assert sent_at["375293330000"] >= int(opens.timestamp())  # the window's second has come
