"""Pacing checked where the bytes leave (issue 13), against a real Redis, the sandboxes on
real sockets and real worker processes: sends stalled on purpose (``GONETS_TEST_STALL`` sleeps
in the write path) and SMPP links dropped mid-window never put more than the cap into any
1000 ms window, judged from the sandbox's own receive times; every transmission (first sends,
resends after a link drop, err-220 resends, long-message parts) books a slot."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.observability.metrics import StoreCollector
from core.store import Store, redis_client
from producers import Producer
from sandbox import smpp_smsc
from tests.support import control, together, wait_final, write_config
from workers.providers import build
from workers.providers.base import Outgoing, ProviderContext
from workers.smpp.session import Session, SessionConfig, SlotMissed
from workers.traffic.pacing import Pacer

SMPP_ACCOUNT = """
[accounts.smsc_smpp]
provider = "smsc_smpp"
smpp_host = "{host}"
smpp_backup_host = "{backup}"
credentials = {{ login = "env:TEST_SMSC_LOGIN", password = "env:TEST_SMSC_PASSWORD" }}
default_sender = "Gonets"
timeout_s = 3
limits = {{ {limits} }}
[accounts.smsc_smpp.options]
lease_ttl_s = 2
backoff_min_s = 0.05
backoff_max_s = 0.5
response_timeout_s = 5
bind_wait_s = 10
first_poll_s = 30
mcon = 3
retry_receipt_delay_s = 0.5
"""
HTTP_LIMITS = "[accounts.smsc.limits]\n{limits}\n"
LONG = "Long message that takes two SMS parts. " * 5  # 195 GSM characters: 2 parts


def max_in_1s(times: list[float]) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] >= 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.fixture
def smpp() -> Iterator[Any]:
    sb, http = smpp_smsc.serve("127.0.0.1")
    sb.control_url = http.urls()[0]  # type: ignore[attr-defined]
    yield sb
    sb.stop()
    http.stop()


@pytest.fixture
def stall() -> str:
    return ""


@pytest.fixture
def limits() -> str:
    return "rate_per_s = 10, pacing_jitter_ms = 5, pacing_margin_ms = 10, duplicate_window_s = 0"


@pytest.fixture
def gonets_env(gonets_env: dict[str, str], smpp: Any, smsc: Any, tmp_path: Path,
               stall: str, limits: str) -> dict[str, str]:
    info = smpp.info()
    write_config(tmp_path / "gonets.toml", smsc.urls,
                 extra=SMPP_ACCOUNT.format(host=info["primary"], backup=info["backup"],
                                           limits=limits)
                 + HTTP_LIMITS.format(limits=limits.replace(", ", "\n")))
    if stall:
        gonets_env["GONETS_TEST_STALL"] = stall
    return gonets_env


def submits(sb: Any) -> list[dict[str, Any]]:
    return list(httpx.get(f"{sb.control_url}/_sandbox/submits").json())


def http_sends(smsc: Any) -> list[float]:
    return [item["at"] for item in smsc.log.items()
            if item["path"] == "/sys/send.php" and (item.get("params") or {}).get("cost") != "1"]


def counts(store: Store, account: str) -> dict[str, int]:
    return Pacer(store.r, store.ns).counts(account)


# --- the session thread holds each submit until its slot ------------------------------------
def test_session_writes_each_submit_at_its_slot_alone_and_drops_a_missed_one(smpp: Any) -> None:
    host, port = smpp.info()["primary"].rsplit(":", 1)
    s = Session(SessionConfig(account="t", hosts=((host, int(port)),),
                              system_id=lambda: "gonets", password=lambda: "sandbox"),
                on_deliver=lambda body, command_id: 0).start()
    try:
        assert s.wait_bound(15)
        params = [dict(source_addr="Gonets", destination_addr=f"37529100000{i}",
                       short_message=f"paced {i}".encode()) for i in range(4)]
        t0 = time.time()
        slots = [t0 + 0.3, t0 + 0.45, t0 + 0.6]
        futs = [s.request("submit_sm", p, not_before=at, late_s=0.2)
                for p, at in zip(params, slots, strict=False)]
        # its slot went by half a second ago: more than late_s, so it is never written
        missed = s.request("submit_sm", params[3], not_before=t0 - 0.5, late_s=0.2)
        assert all(f.result(10).status == 0 for f in futs)
        with pytest.raises(SlotMissed):
            missed.result(10)
        got = submits(smpp)
        assert [g["phone"] for g in got] == [p["destination_addr"] for p in params[:3]]
        for g, at in zip(got, slots, strict=True):
            assert g["at"] >= at  # never before its slot
        # one write per slot: the server reads them apart, as far apart as their slots (the
        # thread may be late for one, never early)
        assert got[1]["at"] - got[0]["at"] > 0.05 and got[2]["at"] - got[1]["at"] > 0.05
        assert s.stats.forfeits == 1
    finally:
        s.close(5)


# --- HTTP: the last check in httpx's send-headers trace -------------------------------------
def test_http_send_waits_for_its_slot_and_books_again_when_it_came_too_late(
        settings: Any, store: Store, smsc: Any) -> None:
    acct = settings.account("smsc")
    pacer = Pacer(store.r, store.ns)
    provider = build(acct, ProviderContext(settings, redis_client(settings.redis_url)))
    ticket = pacer.ticket(acct, 1, urgent=True, deadline=time.time() + 10)
    assert ticket is not None and ticket.first_at is not None
    stale = ticket.first_at
    time.sleep(max(stale - time.time(), 0) + 0.1)  # a stall: 100 ms past a 5 ms tolerance
    store.create("m1", {"account": "smsc", "phone": "375291234567", "text": "hi"},
                 next_check_ms=0)
    provider.send(Outgoing(id="m1", seq=1, phone="375291234567", text="hi", sender="Gonets",
                           parts=1, encoding="gsm7"), ticket)
    (at,) = http_sends(smsc)
    assert ticket.forfeits >= 1 and ticket.used == 1  # (a loaded host may forfeit again)
    assert at >= stale + Pacer.interval_s(acct) - 0.002  # sent at a later slot, not late
    c = counts(store, "smsc")
    assert c["forfeited"] == ticket.forfeits and c["booked"] == ticket.forfeits + 1
    provider.close()
    # what an operator sees: the scheduler's /metrics, per account
    family = next(f for f in StoreCollector(settings).collect()
                  if f.name == "gonets_pacing_slots")
    seen = {(x.labels["account"], x.labels["outcome"]): x.value for x in family.samples
            if x.name.endswith("_total")}
    assert seen[("smsc", "booked")] == c["booked"] and seen[("smsc", "forfeited")] == c["forfeited"]


def test_http_retry_on_the_backup_server_books_its_own_slot(
        settings: Any, store: Store, smsc: Any) -> None:
    control(smsc.urls[0], down=[0], down_mode="503")  # the first server answers 503: unsure
    acct = settings.account("smsc")
    provider = build(acct, ProviderContext(settings, redis_client(settings.redis_url)))
    ticket = Pacer(store.r, store.ns).ticket(acct, 1, urgent=True, deadline=time.time() + 10)
    assert ticket is not None and ticket.first_at is not None
    first = ticket.first_at
    store.create("m2", {"account": "smsc", "phone": "375291234568", "text": "hi"},
                 next_check_ms=0)
    provider.send(Outgoing(id="m2", seq=2, phone="375291234568", text="hi", sender="Gonets",
                           parts=1, encoding="gsm7"), ticket)
    provider.close()
    sends = sorted(http_sends(smsc))
    assert len(sends) == 2 and sends[0] >= first  # the 503 one, then the backup's
    # a slot of its own: one interval after the first slot.  (Not one interval after the
    # first request's arrival: a request may leave up to the jitter tolerance after its slot,
    # and the interval already leaves room for that, so the cap holds in every window.)
    assert sends[1] >= first + Pacer.interval_s(acct) - 0.002
    c = counts(store, "smsc")  # (a loaded host may forfeit a slot on the way: booked again)
    assert ticket.used == 2 and c["booked"] - c["forfeited"] == 2


# --- several worker processes, stalled sends, dropped links --------------------------------
@pytest.mark.parametrize("stall", ["0.3:40"])
def test_stalled_workers_and_dropped_links_never_exceed_the_cap_at_the_provider(
        producer: Producer, store: Store, smpp: Any, smsc: Any,
        start_worker: Callable[..., Any]) -> None:
    control(smpp.control_url, drop_every_submits=7)
    together(*[lambda: start_worker("smsc_smpp", threads=4)] * 3,
             *[lambda: start_worker("smsc", threads=4)] * 2)
    smpp_ids = [producer.send_sms(f"+37529{2000000 + i}", LONG if i % 8 == 0 else f"smpp {i}",
                                  account="smsc_smpp") for i in range(50)]
    http_ids = [producer.send_sms(f"+37529{3000000 + i}", f"http {i}", account="smsc")
                for i in range(40)]
    final = wait_final(store, smpp_ids + http_ids, timeout_s=120)
    assert set(final.values()) == {"delivered"}
    got = submits(smpp)
    assert len(got) >= 50 + 7  # 7 long ones: 2 parts; resent submits on top
    assert max_in_1s([g["at"] for g in got]) <= 10
    assert max_in_1s(http_sends(smsc)) <= 10
    # every submit the server read had a slot (resends after the drops included)
    c = counts(store, "smsc_smpp")
    assert c["booked"] - c["forfeited"] >= len(got)
    assert c["forfeited"] > 0  # the stalls did make writers give slots up
    assert counts(store, "smsc")["booked"] - counts(store, "smsc")["forfeited"] \
        >= len(http_sends(smsc))


def test_err_220_resend_books_a_slot(
        producer: Producer, store: Store, smpp: Any, start_worker: Callable[..., Any]) -> None:
    # (the resends after a dropped link are counted in the test above)
    control(smpp.control_url, phone_error_times={"375291110220": [220, 1]},
            duplicate_window_s=0)
    start_worker("smsc_smpp", threads=2)
    a = producer.send_sms("+375291110220", "queue overflow once", account="smsc_smpp")
    assert wait_final(store, [a], 60) == {a: "delivered"}
    got = submits(smpp)
    assert len(got) == 2  # sent, err 220, sent again
    c = counts(store, "smsc_smpp")
    assert c["booked"] - c["forfeited"] >= 2


# --- receipts: data_sm, answers while closing, network_error_code ---------------------------
def test_data_sm_receipt_gets_data_sm_resp_and_keeps_network_error_code(
        producer: Producer, store: Store, smpp: Any, start_worker: Callable[..., Any]) -> None:
    control(smpp.control_url, receipts_as_data_sm=True, phone_error={"375291112233": 1})
    start_worker("smsc_smpp", threads=2)
    ok = producer.send_sms("+375291234567", "hello", account="smsc_smpp")
    bad = producer.send_sms("+375291112233", "hello", account="smsc_smpp")
    assert wait_final(store, [ok, bad], 30) == {ok: "delivered", bad: "failed"}
    assert store.get(bad)["dlr_network_error_code"] == "GSM:1"
    assert store.get(ok)["dlr_network_error_code"] == "GSM:0"
    st = httpx.get(f"{smpp.control_url}/_sandbox/state").json()["counters"]
    assert st.get("receipts_acked") == 2 and not st.get("receipts_wrong_resp")


def test_receipts_arriving_as_the_worker_stops_are_applied_and_acknowledged(
        producer: Producer, store: Store, smpp: Any, start_worker: Callable[..., Any]) -> None:
    # the server holds the receipts and sends them between our unbind and its unbind_resp
    control(smpp.control_url, hold_receipts=True, receipts_on_unbind=True)
    w = start_worker("smsc_smpp", threads=4)
    ids = [producer.send_sms(f"+37529{4000000 + i}", f"closing {i}", account="smsc_smpp")
           for i in range(6)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
            store.get(i)["status"] != "submitted" for i in ids):
        time.sleep(0.05)
    assert w.stop() == 0  # SIGTERM: drains, unbinds; the receipts arrive meanwhile
    st = httpx.get(f"{smpp.control_url}/_sandbox/state").json()["counters"]
    assert st.get("receipts_sent") == 6 and st.get("receipts_acked") == 6
    assert set(wait_final(store, ids, 10).values()) == {"delivered"}
