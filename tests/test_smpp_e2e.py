"""End to end over SMPP: producer → Redis → a real worker process → the SMPP sandbox on real
sockets → receipts back over the bind → the record's final status."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.store import Store, now_ms
from producers import Producer
from sandbox import smpp_smsc
from tests.support import control, together, wait_final, write_config

OPTIONS = ("lease_ttl_s = 2, backoff_min_s = 0.1, backoff_max_s = 1, response_timeout_s = 5, "
           "bind_wait_s = 10, first_poll_s = 1, max_poll_interval_s = 2")
ACCOUNT = """
[accounts.smsc_smpp]
provider = "smsc_smpp"
smpp_host = "{host}"
smpp_backup_host = "{backup}"
credentials = {{ login = "env:TEST_SMSC_LOGIN", password = "env:TEST_SMSC_PASSWORD" }}
default_sender = "Gonets"
timeout_s = 3
options = {{ """ + OPTIONS + """{extra} }}
"""


@pytest.fixture
def smpp_tls() -> bool:
    return False


@pytest.fixture
def smpp_extra() -> str:
    return ""


@pytest.fixture
def smpp(smpp_tls: bool) -> Iterator[smpp_smsc.SmppSandbox]:
    sb, http = smpp_smsc.serve("127.0.0.1", tls=smpp_tls)
    sb.control_url = http.urls()[0]  # type: ignore[attr-defined]
    yield sb
    sb.stop()
    http.stop()


@pytest.fixture
def gonets_env(gonets_env: dict[str, str], smpp: smpp_smsc.SmppSandbox, smsc: Any,
               tmp_path: Path, smpp_tls: bool, smpp_extra: str) -> dict[str, str]:
    info = smpp.info()
    host = info["tls"] if smpp_tls else info["primary"]
    extra = smpp_extra
    if smpp_tls:
        extra += f', tls = true, ca_file = "{info["ca_file"]}"'
    write_config(tmp_path / "gonets.toml", smsc.urls,
                 extra=ACCOUNT.format(host=host, backup=info["backup"],
                                      extra=(", " + extra.lstrip(", ")) if extra else ""))
    return gonets_env


def state(sb: Any) -> dict[str, Any]:
    return httpx.get(f"{sb.control_url}/_sandbox/state").json()


def messages(sb: Any) -> list[dict[str, Any]]:
    return httpx.get(f"{sb.control_url}/_sandbox/messages").json()


def send_many(producer: Producer, n: int, prefix: str, *, phones: bool = True) -> list[str]:
    return [producer.send_sms(f"+37529{1000000 + i if phones else 1000000}", f"{prefix} {i}",
                              account="smsc_smpp") for i in range(n)]


def test_latin_cyrillic_and_long_texts_are_delivered_with_receipts(
        producer: Producer, store: Store, smpp: Any,
        start_worker: Callable[..., Any]) -> None:
    w = start_worker("smsc_smpp")
    texts = ["Your code is 1234", "Ваш код 1234 — никому не сообщайте",
             "Длинное сообщение, которое не помещается в одну SMS. " * 4,
             "Prices in €: [10] {20} ~30~ " * 7]
    ids = [producer.send_sms("+375291234567", t, account="smsc_smpp") for t in texts]
    assert set(wait_final(store, ids, 30).values()) == {"delivered"}
    got = {m["text"]: m for m in messages(smpp)}
    assert sorted(got) == sorted(texts)  # each text once, exactly as written
    assert [got[t]["parts"] for t in texts] == [1, 1, 4, 2]
    assert [got[t]["data_coding"] for t in texts] == [0, 8, 8, 0]
    for i, t in zip(ids, texts, strict=True):
        rec = store.get(i)
        assert rec["provider_id"] == got[t]["id"]  # the receipt found its message
        assert rec["provider_status"] == "DELIVRD"
        assert rec["dlr_cost"] and rec["dlr_mccmnc"] == "25702"
        assert rec["parts_billed"] == str(got[t]["parts"])
    st = state(smpp)
    assert st["max_binds"] == {"gonets": 1} and st["counters"].get("kicked", 0) == 0
    assert w.stop() == 0  # SIGTERM: drains, unbinds, exits cleanly
    assert state(smpp)["counters"].get("pdu_unbind", 0) == 1


def test_undeliverable_number_keeps_the_error_meaning(
        producer: Producer, store: Store, smpp: Any,
        start_worker: Callable[..., Any]) -> None:
    control(smpp.control_url, phone_error={"375291112233": 1})
    start_worker("smsc_smpp")
    i = producer.send_sms("+375291112233", "hello", account="smsc_smpp")
    assert wait_final(store, [i], 20)[i] == "failed"
    rec = store.get(i)
    assert rec["error_code"] == "1" and rec["reason"] == "the subscriber does not exist"


def test_throttling_is_survived_with_nothing_lost(
        producer: Producer, store: Store, smpp: Any,
        start_worker: Callable[..., Any]) -> None:
    control(smpp.control_url, rate_per_s=5)
    start_worker("smsc_smpp", threads=8)
    ids = send_many(producer, 24, "throttled")
    assert set(wait_final(store, ids, 60).values()) == {"delivered"}
    st = state(smpp)
    assert st["counters"]["throttled"] > 0
    texts = [m["text"] for m in messages(smpp)]
    assert sorted(texts) == sorted(f"throttled {i}" for i in range(24))  # none lost, none twice


def test_link_drop_mid_window_loses_nothing_and_doubles_nothing(
        producer: Producer, store: Store, smpp: Any,
        start_worker: Callable[..., Any]) -> None:
    # answers take 0.3 s; the 6th submit kills the link with several taken but unanswered
    control(smpp.control_url, resp_delay_s=0.3, drop_after_submits=6)
    start_worker("smsc_smpp", threads=10)
    ids = send_many(producer, 16, "window")
    final = wait_final(store, ids, 90)
    assert set(final.values()) == {"delivered"}, final
    st = state(smpp)
    assert st["counters"]["dropped_links"] == 1
    texts = [m["text"] for m in messages(smpp)]
    assert sorted(texts) == sorted(f"window {i}" for i in range(16))  # exactly once each
    for i in ids:
        assert store.get(i)["provider_id"]  # every receipt matched its message


def test_failover_to_the_backup_host(
        producer: Producer, store: Store, smpp: Any,
        start_worker: Callable[..., Any]) -> None:
    control(smpp.control_url, down=["primary"])
    start_worker("smsc_smpp")
    ids = send_many(producer, 3, "via backup")
    assert set(wait_final(store, ids, 30).values()) == {"delivered"}
    assert state(smpp)["binds_by_listener"] == {"backup": 1}


@pytest.mark.parametrize("smpp_extra", ["mcon = 1"])
def test_mcon1_two_workers_hold_one_bind_and_the_standby_takes_over(
        producer: Producer, store: Store, smpp: Any, smpp_extra: str,
        start_worker: Callable[..., Any]) -> None:
    a, b = together(lambda: start_worker("smsc_smpp"), lambda: start_worker("smsc_smpp"))
    deadline = time.monotonic() + 15
    while b"consuming" not in a.log.read_bytes() + b.log.read_bytes():
        assert time.monotonic() < deadline, "no worker got the bind lease"
        time.sleep(0.1)
    holder, standby = (a, b) if b"consuming" in a.log.read_bytes() else (b, a)
    while b"standing by" not in standby.log.read_bytes():
        assert time.monotonic() < deadline, "the second worker neither binds nor stands by"
        time.sleep(0.1)
    assert b"consuming" not in standby.log.read_bytes()
    ids = send_many(producer, 4, "before")
    assert set(wait_final(store, ids, 30).values()) == {"delivered"}
    holder.stop(signal.SIGKILL)
    ids2 = send_many(producer, 4, "after")
    assert set(wait_final(store, ids2, 40).values()) == {"delivered"}
    assert b"consuming" in standby.log.read_bytes()
    st = state(smpp)
    assert st["max_binds"] == {"gonets": 1}  # never two binds at once
    assert st["counters"].get("kicked", 0) == 0
    assert st["counters"]["binds"] == 2


@pytest.mark.parametrize("smpp_tls", [True])
def test_tls_bind_with_a_verified_certificate(
        producer: Producer, store: Store, smpp: Any, smpp_tls: bool,
        start_worker: Callable[..., Any]) -> None:
    start_worker("smsc_smpp")
    i = producer.send_sms("+375291234567", "over TLS", account="smsc_smpp")
    assert wait_final(store, [i], 30)[i] == "delivered"
    assert state(smpp)["binds_by_listener"] == {"tls": 1}


def test_status_poll_uses_query_sm(producer: Producer, store: Store, smpp: Any,
                                   start_worker: Callable[..., Any]) -> None:
    control(smpp.control_url, hold_receipts=True)
    start_worker("smsc_smpp")
    i = producer.send_sms("+375291234567", "no receipt for me", account="smsc_smpp")
    assert wait_final(store, [i], 30)[i] == "delivered"  # learnt by query_sm polls
    assert state(smpp)["counters"]["pdu_query_sm"] >= 1
    assert state(smpp)["counters"].get("receipts_sent", 0) == 0


def test_a_retryable_receipt_is_sent_again_and_delivered(
        producer: Producer, store: Store, smpp: Any, gonets_env: dict[str, str],
        start_worker: Callable[..., Any]) -> None:
    """err 220 (the operator's queue overflowed) is resent, not left failed."""
    cfg = Path(gonets_env["GONETS_CONFIG"])
    cfg.write_text(cfg.read_text().replace("max_poll_interval_s = 2",
                                           "max_poll_interval_s = 2, retry_receipt_delay_s = 0.5")
                   + "limits = { duplicate_window_s = 1 }\n")
    control(smpp.control_url, phone_error_times={"375291112244": [220, 1]},
            duplicate_window_s=1)
    start_worker("smsc_smpp")
    i = producer.send_sms("+375291112244", "try again", account="smsc_smpp")
    assert wait_final(store, [i], 30)[i] == "delivered"
    got = [m for m in messages(smpp) if m["phone"] == "375291112244"]
    assert len(got) == 2  # sent once more after the 220, not more
    steps = [e["status"] for e in store.history(i)]
    assert steps == ["queued", "submitted", "queued", "submitted", "delivered"]
    assert store.history(i)[2]["error_code"] == "220"


def test_the_providers_flood_answer_feeds_our_flood_rule(
        producer: Producer, store: Store, smpp: Any, gonets_env: dict[str, str],
        start_worker: Callable[..., Any]) -> None:
    """err 251 (too many to one number): the message waits for the flood gap and goes again,
    and the next message to that number is held by our own flood rule meanwhile."""
    cfg = Path(gonets_env["GONETS_CONFIG"])
    cfg.write_text(cfg.read_text() + "limits = { flood_gap_s = 2, duplicate_window_s = 1 }\n")
    control(smpp.control_url, phone_error_times={"375291112255": [251, 1]},
            duplicate_window_s=1)
    start_worker("smsc_smpp")
    first = producer.send_sms("+375291112255", "one", account="smsc_smpp")
    deadline = time.monotonic() + 20
    while "deferred" not in [e["status"] for e in store.history(first)]:
        assert time.monotonic() < deadline, store.history(first)
        time.sleep(0.05)
    second = producer.send_sms("+375291112255", "two", account="smsc_smpp")
    final = wait_final(store, [first, second], 30)
    assert set(final.values()) == {"delivered"}
    assert "deferred" in [e["status"] for e in store.history(second)]  # held by our rule
    got = [m for m in messages(smpp) if m["phone"] == "375291112255"]
    assert len(got) == 3  # "one" twice (251, then again after the gap), "two" once


@pytest.mark.parametrize("smpp_extra", ["receipt_wait_s = 1"])
def test_a_lost_answer_past_the_window_without_a_receipt_ends_by_the_account_policy(
        producer: Producer, store: Store, smpp: Any, smpp_extra: str,
        start_worker: Callable[..., Any]) -> None:
    """A worker marked these in flight and was killed before its submits left (the server has
    none), and the jobs came back after SMSC's one-minute duplicate window: no receipt can be
    matched and nothing can be asked, so after ``receipt_wait_s`` the account's
    ``on_lost_answer`` ("auto") decides, instead of the records waiting hours for a receipt:
    the login code is sent again, the bulk notice ends ``unknown`` with the reason."""
    bulk = producer.send_sms("+375291000001", "lost notice", account="smsc_smpp")
    code = producer.send_sms("+375291000002", "lost code", account="smsc_smpp", lane="urgent")
    for i in (bulk, code):
        store.begin_attempt(i)
        store.update(i, inflight_ms=str(now_ms() - 120_000))
    start_worker("smsc_smpp")
    assert wait_final(store, [bulk, code], 30) == {bulk: "unknown", code: "delivered"}
    rec = store.get(bulk)
    assert rec["error_code"] == "lost_answer" and rec["lost_answer"] == "gave_up"
    assert "no receipt came within 1 s" in rec["reason"]
    assert store.get(code)["lost_answer"] == "resent"
    assert [m["text"] for m in messages(smpp)] == ["lost code"]  # the notice was never sent
