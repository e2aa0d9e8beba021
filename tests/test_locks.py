"""core/locks.py on a real Redis: a holder's key is deleted or extended only by that holder,
under contention and after expiry; leases expire when their holder stops renewing."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from core.locks import Lease, locks_for, new_token
from core.store import redis_client
from tests.support import poll_until


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis_client(redis_url)
    yield client
    client.close()


def test_an_expired_holder_cannot_delete_or_extend_the_next_holders_lock(r: redis.Redis):
    locks = locks_for(r)
    a, b = new_token(), new_token()
    assert locks.take("t:lock", a, 0.1)
    assert not locks.take("t:lock", b, 0.1)  # held: nobody else takes it
    poll_until(lambda: r.get("t:lock") is None, 10, every_s=0.01)  # a stalled past its ttl
    assert locks.take("t:lock", b, 30)
    assert not locks.release("t:lock", a)  # a wakes up and lets go of what it no longer has
    assert not locks.renew("t:lock", a, 30)
    assert locks.holder("t:lock") == b and r.pttl("t:lock") > 25_000
    assert locks.renew("t:lock", b, 60) and r.pttl("t:lock") > 55_000
    assert locks.release("t:lock", b) and r.get("t:lock") is None
    assert not locks.release("t:lock", b)  # a second release changes nothing


def test_owner_checked_delete_under_contention(r: redis.Redis):
    """Eight threads take turns on one lock while four stale holders keep releasing with
    their old tokens: at most one holder at a time, every holder finds its lock intact until
    it lets go, and each release by the holder succeeds."""
    locks = locks_for(r)
    key = "t:contended"
    active = 0
    most = 0
    problems: list[str] = []
    stale_tokens: list[str] = []
    guard = threading.Lock()
    stop = threading.Event()

    def worker() -> None:
        nonlocal active, most
        done = 0
        while done < 40:
            me = new_token()
            if not locks.take(key, me, 30):
                time.sleep(random.random() / 1000)
                continue
            with guard:
                active += 1
                most = max(most, active)
            for _ in range(3):  # stale releases run meanwhile; the lock must stay ours
                if locks.holder(key) != me:
                    problems.append("a holder's lock was taken from it")
                time.sleep(random.random() / 2000)
            with guard:
                active -= 1
            if not locks.release(key, me):
                problems.append("the holder could not release its own lock")
            with guard:
                stale_tokens.append(me)  # from now on a stale holder's token
            done += 1

    def stale() -> None:
        while not stop.is_set():
            with guard:
                old = random.choice(stale_tokens) if stale_tokens else "never-held"
            locks.release(key, old)

    staleness = [threading.Thread(target=stale) for _ in range(4)]
    workers = [threading.Thread(target=worker) for _ in range(8)]
    for t in staleness + workers:
        t.start()
    for t in workers:
        t.join(60)
    stop.set()
    for t in staleness:
        t.join(10)
    assert problems == []
    assert most == 1
    assert len(stale_tokens) == 8 * 40
    assert r.get(key) is None


def test_wait_take_waits_for_the_holder_and_gives_up_at_its_limit(r: redis.Redis):
    locks = locks_for(r)
    holder = new_token()
    assert locks.take("t:wait", holder, 30)
    t0 = time.monotonic()
    assert not locks.wait_take("t:wait", new_token(), 30, wait_s=0.2)
    assert time.monotonic() - t0 >= 0.2
    threading.Timer(0.1, locks.release, ("t:wait", holder)).start()
    waiter = new_token()
    assert locks.wait_take("t:wait", waiter, 30, wait_s=10)
    assert locks.holder("t:wait") == waiter


def test_a_lease_is_kept_while_renewed_and_frees_itself_when_its_holder_stops(
        r: redis.Redis):
    a = Lease(r, ["t:lease"], ttl_s=0.3)
    b = Lease(r, ["t:lease"], ttl_s=0.3)
    assert a.acquire() and a.held and a.slot == "t:lease"
    assert not b.acquire() and not b.held
    until = time.monotonic() + 0.9  # three ttls: renewing keeps it
    while time.monotonic() < until:
        assert a.renew()
        assert not b.acquire()
        time.sleep(a.renew_every_s / 3)
    assert a.acquire()  # acquiring what it holds keeps it
    # a stopped renewing: the lease frees itself, b takes it
    poll_until(b.acquire, 10, every_s=0.01)
    assert not a.renew() and not a.held  # a knows it lost it
    assert not a.acquire()
    assert not a.release()  # and cannot give back b's
    assert b.holders() == {"t:lease": b.token}
    assert b.release() and r.get("t:lease") is None


def test_a_holder_keeps_its_slot_and_never_takes_two(r: redis.Redis):
    slots = [f"t:slot:{i}" for i in range(1, 4)]
    a, b, c = Lease(r, slots, 30), Lease(r, slots, 30), Lease(r, slots, 30)
    assert a.acquire() and b.acquire() and c.acquire()
    assert len({a.slot, b.slot, c.slot}) == 3
    assert not Lease(r, slots, 30).acquire()  # three slots, three holders
    r.delete(a.slot)  # the first slot frees up
    for _ in range(3):
        assert c.acquire() and c.slot == slots[2]  # c keeps its own, takes no second
    assert r.get(slots[0]) is None
    assert a.acquire() and a.slot == slots[0]
