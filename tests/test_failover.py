"""Failover along a route, end to end: two real worker pools (MTS REST and SMSC HTTP), both
sandboxes over sockets, a real Redis. Every "sent once" is read off the sandboxes' own
message tables (what the providers accepted), never off Gonets' records alone."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings, load_settings
from core.store import Store
from producers import Producer
from tests.support import (
    WorkerProcess,
    control,
    poll_until,
    together,
    wait_final,
    write_config,
)

MTS_ACCOUNT = """
[accounts.mts]
provider = "mts_rest"
base_urls = ["{url}"]
default_sender = "Gonets"
timeout_s = 3
options = {{ first_poll_s = 0.3, max_poll_interval_s = 1, retry_delay_s = 0.3 }}

[accounts.mts.credentials]
client_id = "env:TEST_MTS_CLIENT_ID"
client_secret = "env:TEST_MTS_CLIENT_SECRET"

[[routes]]
match = {{ prefix = "375" }}
accounts = {order}
failover_after_s = 1
"""


Route = Callable[[list[str]], tuple[Settings, Producer]]


@pytest.fixture
def route(gonets_env: dict[str, str], smsc: Any, mts: Any, store: Store,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Route]:
    """Configure the route ``375 -> order`` and return the settings and a producer."""
    made: list[Producer] = []

    def configure(order: list[str]) -> tuple[Settings, Producer]:
        write_config(Path(gonets_env["GONETS_CONFIG"]), smsc.urls,
                     extra=MTS_ACCOUNT.format(url=mts.url, order=json.dumps(order)))
        for k, v in (("TEST_MTS_CLIENT_ID", "gonets"), ("TEST_MTS_CLIENT_SECRET", "sandbox")):
            gonets_env[k] = v
            monkeypatch.setenv(k, v)
        for k in ("TEST_SMSC_LOGIN", "TEST_SMSC_PASSWORD"):
            monkeypatch.setenv(k, gonets_env[k])
        s = load_settings(gonets_env)
        p = Producer(s, store=store)
        made.append(p)
        return s, p

    yield configure
    for p in made:
        p.broker.close()


def accepted(smsc: Any, mts: Any) -> tuple[Counter[str], Counter[str]]:
    """Phones each sandbox accepted a message for (what the providers would deliver)."""
    return (Counter(m.phone for m in list(smsc.messages.values())),
            Counter(m.phone for m in list(mts.messages.values())))


def alerts(w: WorkerProcess, kind: str) -> int:
    n = 0
    for line in w.log.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        n += isinstance(rec, dict) and rec.get("alert") == kind
    return n


def test_out_of_funds_mid_batch_the_rest_go_through_the_next_account_once(
        route, smsc, mts, store, start_worker) -> None:
    _, p = route(["mts", "smsc"])
    workers = together(lambda: start_worker("mts", threads=4),
                       lambda: start_worker("smsc", threads=4))
    # a permanent rejection (MTS code 1: invalid phone) is closed where it happened
    control(mts.url, phone_code={"375291000099": 1})
    bad = p.send_sms("+375291000099", "for a number MTS refuses")
    assert wait_final(store, [bad], timeout_s=30)[bad] == "rejected"
    assert store.get(bad)["account"] == "mts" and "tried" not in store.get(bad)
    # funds for 4 messages, then none: the batch runs out in the middle
    control(mts.url, balance=0.2)
    phones = [f"+3752910001{i:02d}" for i in range(12)]
    ids = [p.send_sms(ph, f"batch message {i}") for i, ph in enumerate(phones)]
    assert set(wait_final(store, ids, timeout_s=60).values()) == {"delivered"}
    at_smsc, at_mts = accepted(smsc, mts)
    digits = [ph.lstrip("+") for ph in phones]
    # every message reached exactly one provider, once
    assert all(at_smsc[d] + at_mts[d] == 1 for d in digits), (at_smsc, at_mts)
    assert sum(at_mts[d] for d in digits) == 4 and sum(at_smsc[d] for d in digits) == 8
    assert "375291000099" not in at_smsc  # the rejected one never went to the next account
    for i in ids:
        rec = store.get(i)
        d = rec["phone"]
        assert rec["account"] == ("mts" if at_mts[d] else "smsc")
        if rec["account"] == "smsc":  # the record says where it was tried and why it moved
            tried = json.loads(rec["tried"])
            assert [t["account"] for t in tried] == ["mts"]
            assert tried[0]["reason"] == "no_funds"
            moved = [e for e in store.history(i) if e.get("moved_from")]
            assert moved and moved[0]["account"] == "smsc"
            submitted = [e for e in store.history(i) if e["status"] == "submitted"]
            assert submitted[0]["account"] == "smsc"
    # one alert for the incident, one for the route: not one per message
    assert alerts(workers[0], "no_funds") == 1
    assert alerts(workers[0], "failover") == 1
    assert int(store.r.hget(store.keys.failovers(), "mts+smsc|mts|no_funds") or 0) == 8


def test_unreachable_past_failover_after_s_then_back_after_recovery(
        route, smsc, mts, store, start_worker, receiver, gonets_env) -> None:
    from producers.http.auth import Tokens
    from producers.http.callbacks import Dispatcher

    gonets_env["GONETS_ACCOUNT_PAUSE_S"] = "5"  # long enough to see new messages skip MTS
    settings, p = route(["mts", "smsc"])
    tokens = Tokens(store.r, store.ns)
    tokens.create("shop", "send,read")
    tokens.set_private_callbacks("shop", True)  # the receiver is on this host
    together(lambda: start_worker("mts", threads=2), lambda: start_worker("smsc", threads=2))
    control(mts.url, fail_5xx=[503, 1_000_000])  # MTS answers nothing but 503
    first = p.send_sms("+375291000201", "while MTS is down", producer="shop",
                       callback_url=receiver.url, allow_private_callback=True)
    poll_until(lambda: store.get(first)["account"] == "smsc", 30, "the move to SMSC")
    # MTS is paused: a new message goes straight to SMSC
    second = p.send_sms("+375291000202", "MTS still down")
    assert store.get(second)["account"] == "smsc"
    assert set(wait_final(store, [first, second], timeout_s=30).values()) == {"delivered"}
    rec = store.get(first)
    tried = json.loads(rec["tried"])
    assert [t["reason"] for t in tried] == ["unreachable"]
    # it was tried on MTS for at least failover_after_s before it moved
    mts_tries = [r["at"] for r in mts.log.items() if r.get("http") == 503
                 or r.get("path") == "/oauth/token"]
    assert mts_tries and tried[0]["at_ms"] / 1000 - mts_tries[0] >= 0.9
    # MTS recovers; once its pause is over, new messages go to it again
    control(mts.url, fail_5xx=[503, 0])
    poll_until(lambda: not store.r.exists(store.keys.pause("mts")), 10, "the pause to end")
    third = p.send_sms("+375291000203", "MTS is back")
    assert store.get(third)["account"] == "mts"
    assert wait_final(store, [third], timeout_s=30)[third] == "delivered"
    at_smsc, at_mts = accepted(smsc, mts)
    assert at_mts == Counter({"375291000203": 1})
    assert at_smsc == Counter({"375291000201": 1, "375291000202": 1})
    # the send that worked closed the incident
    poll_until(lambda: not store.r.exists(store.keys.incident("mts")), 10,
               "the incident to close")
    assert not store.r.exists(store.keys.unreach("mts"))
    # the callbacks say which account took the moved message
    d = Dispatcher(settings, threads=2)
    t = d.start_thread()
    try:
        poll_until(lambda: "delivered" in receiver.statuses(first), 30, "the callbacks")
    finally:
        d.stop()
        t.join(10)
    took = [r["json"] for r in receiver.received if r["json"]["status"] == "submitted"]
    assert [c.get("account") for c in took] == ["smsc"]


def test_a_lost_answer_is_never_sent_through_the_next_account(
        route, smsc, mts, store, start_worker, gonets_env) -> None:
    # a pause longer than the retry delay: the lost message's job comes back while SMSC is
    # paused, where a message with nothing in flight would move on
    gonets_env.update(GONETS_ACCOUNT_PAUSE_S="7", GONETS_LOOKUP_RETRY_S="1")
    _, p = route(["smsc", "mts"])
    together(lambda: start_worker("smsc", threads=2), lambda: start_worker("mts", threads=2))
    # SMSC takes the message but the answer never comes back (nor to the lookups)
    control(smsc.urls[0], down=[0, 1], down_mode="accept_then_drop")
    lost = p.send_sms("+375291000301", "answer lost")
    # SMSC fails long enough to be paused: new messages go to MTS meanwhile
    poll_until(lambda: store.r.exists(store.keys.pause("smsc")), 30, "SMSC to be paused")
    other = p.send_sms("+375291000302", "while SMSC is failing")
    assert store.get(other)["account"] == "mts"
    assert wait_final(store, [other], timeout_s=30)[other] == "delivered"
    rec = poll_until(lambda: "paused" in (r := store.get(lost)).get("waiting_reason", "")
                     and r, 30, "the lost message's job to find SMSC paused")
    assert rec["account"] == "smsc" and rec.get("inflight_ms") and "tried" not in rec
    # SMSC answers again: the lookup finds the message it took, nothing is sent again
    control(smsc.urls[0], down=[])
    assert wait_final(store, [lost], timeout_s=30)[lost] == "delivered"
    at_smsc, at_mts = accepted(smsc, mts)
    assert at_smsc == Counter({"375291000301": 1})
    assert at_mts == Counter({"375291000302": 1})
    assert store.get(lost)["account"] == "smsc"
