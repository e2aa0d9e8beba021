"""MTS Belarus SMS Pro end to end: a real worker process, the MTS sandbox, a real Redis.

Every claim is read off the sandbox's request log (what MTS would have received) or the
store (what a Gonets user sees)."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import httpx
import pytest

from core import usage
from core.errors import AccountProblem
from producers.consent import record_consent
from tests.support import control, poll_until, together, wait_final, write_config
from workers.providers.base import Outgoing, ProviderContext
from workers.providers.mts_rest import MtsRest

MTS_ACCOUNT = """
[accounts.mts]
provider = "mts_rest"
base_urls = ["{url}"]
default_sender = "Gonets"
timeout_s = 5

[accounts.mts.credentials]
client_id = "env:TEST_MTS_CLIENT_ID"
client_secret = "env:TEST_MTS_CLIENT_SECRET"

[accounts.mts.options]
first_poll_s = 0.3
max_poll_interval_s = 1
slow_down_delay_s = 0.3
retry_delay_s = 0.3
"""


@pytest.fixture
def gonets_env(gonets_env: dict[str, str], tmp_path: Any, smsc: Any, mts: Any,
               monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    cfg = write_config(tmp_path / "gonets.toml", smsc.urls,
                       extra=MTS_ACCOUNT.format(url=mts.url))
    monkeypatch.setenv("TEST_MTS_CLIENT_ID", "gonets")
    monkeypatch.setenv("TEST_MTS_CLIENT_SECRET", "sandbox")
    return dict(gonets_env, GONETS_CONFIG=str(cfg), TEST_MTS_CLIENT_ID="gonets",
                TEST_MTS_CLIENT_SECRET="sandbox")


def sends(mts: Any, phone: str | None = None) -> list[dict[str, Any]]:
    return [r for r in mts.log.items() if r["path"] == "/sms/v1/messages"
            and (phone is None or (r.get("body") or {}).get("phone") == phone)]


def tokens(mts: Any) -> list[dict[str, Any]]:
    return [r for r in mts.log.items() if r["path"] == "/oauth/token"]


def test_delivered_with_validity_by_kind_and_unknown_polled_again(
        producer, store, mts, start_worker):
    control(mts.url, unknown_polls=1)  # the first status request of each message: UNKNOWN
    start_worker("mts", threads=4)
    code = producer.send_sms("+375291000001", "Your code 1234", account="mts", lane="urgent")
    record_consent(producer, "+375291000002", source="test: web form")
    promo = producer.send_sms("+375291000002", "Sale!", account="mts", kind="promotional")
    own = producer.send_sms("+375291000003", "Order shipped", account="mts", validity=30)
    ids = [code, promo, own]
    assert set(wait_final(store, ids, timeout_s=30).values()) == {"delivered"}
    bodies = {r["body"]["phone"]: r["body"] for r in sends(mts)}
    assert bodies["375291000001"] == {"phone": "375291000001", "text": "Your code 1234",
                                      "sender": "Gonets", "validity": 10}
    assert bodies["375291000002"]["validity"] == 1440
    assert bodies["375291000003"]["validity"] == 30
    for i in ids:
        assert store.events_for([i])[i] == ["queued", "submitted", "delivered"]
        rec = store.get(i)
        assert rec["provider_status"] == "DELIVERED" and rec["provider_id"]
    # UNKNOWN kept the message non-final and it was asked again
    polls = [r for r in mts.log.items() if r["path"].endswith(
        f"/{store.get(code)['provider_id']}/status")]
    assert next(p["status"] for p in polls) == "UNKNOWN" and polls[-1]["status"] == "DELIVERED"
    assert store.get(promo)["kind"] == "promotional" and store.get(code)["kind"] == \
        "transactional"
    # billed and reported apart
    totals: dict[str, int] = {}
    for kinds in usage.report(store, "mts", days=2).values():
        for kind, n in kinds.items():
            totals[kind] = totals.get(kind, 0) + n["messages"]
    assert totals == {"transactional": 2, "promotional": 1}
    assert mts.counters["accepted"] == 3


def test_codes_1_5_unknown_and_5xx_each_get_their_documented_action(
        producer, store, mts, start_worker):
    control(mts.url, force_code=[5, 2])
    start_worker("mts", threads=2)
    # 5: requeued with the delay hint, never lost
    msg = producer.send_sms("+375291000021", "limited", account="mts")
    assert wait_final(store, [msg])[msg] == "delivered"
    attempts = sends(mts, "375291000021")
    assert [a.get("error_code") for a in attempts] == [5, 5, None]
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(attempts)]
    assert min(gaps) >= 0.25  # requeued with the delay hint, not hammered
    assert store.get(msg)["attempts"] == "3"
    # 5xx (slow, then a 503): retried, sent once
    control(mts.url, fail_5xx=[503, 1], delay_s=0.2)
    after_503 = producer.send_sms("+375291000061", "after a 503", account="mts")
    assert wait_final(store, [after_503])[after_503] == "delivered"
    control(mts.url, delay_s=0)
    # 1: rejected; an unknown code: failed with the raw code; neither retried
    control(mts.url, phone_code={"375291000011": 1, "375291000012": 77})
    bad = producer.send_sms("+375291000011", "x", account="mts")
    odd = producer.send_sms("+375291000012", "y", account="mts")
    assert wait_final(store, [bad, odd]) == {bad: "rejected", odd: "failed"}
    assert store.get(bad)["error_code"] == "1"
    assert store.get(odd)["error_code"] == "77"
    assert len(sends(mts, "375291000011")) == len(sends(mts, "375291000012")) == 1
    assert mts.counters["accepted"] == 2


@pytest.mark.parametrize("shape, spelling", [("code_200", "padded"), ("code_ok", "float"),
                                             ("messages", "text")])
def test_any_plausible_answer_shape_and_code_spelling_is_read_alike(
        producer, store, mts, start_worker, shape, spelling):
    control(mts.url, answer_shape=shape, code_spelling=spelling, force_code=[5, 1])
    start_worker("mts", threads=2)
    # "limit exceeded" however it is written: requeued, then taken and delivered
    msg = producer.send_sms("+375291000031", "shapes", account="mts")
    assert wait_final(store, [msg], timeout_s=30)[msg] == "delivered"
    assert [a.get("error_code") for a in sends(mts, "375291000031")] == [5, None]
    assert store.get(msg)["provider_id"] == sends(mts, "375291000031")[-1]["message_id"]


def test_an_answer_with_an_id_and_an_unknown_code_keeps_the_message_and_polls_it(
        producer, store, mts, start_worker):
    control(mts.url, raw_answer=['{"code": "QUEUED", "message_id": "{id}"}', 1])
    start_worker("mts", threads=2)
    msg = producer.send_sms("+375291000032", "odd answer", account="mts")
    assert wait_final(store, [msg], timeout_s=30)[msg] == "delivered"
    assert len(sends(mts, "375291000032")) == 1  # taken once, followed by its id


def test_unregistered_sender_fails_messages_alerts_once_and_pauses_the_pool(
        producer, store, mts, start_worker):
    control(mts.url, senders=["SomeoneElse"])
    w = start_worker("mts", threads=4)
    ids = [producer.send_sms(f"+37529100003{i}", "hi", account="mts") for i in range(3)]
    poll_until(lambda: store.r.exists(store.key("pause", "mts")), 20, what="the pool to pause")
    assert store.r.exists(store.key("alert", "mts", "sender"))
    final = wait_final(store, ids, timeout_s=30)
    assert set(final.values()) == {"failed"}
    assert {store.get(i)["error_code"] for i in ids} == {"10"}
    assert w.log.read_text().count("account mts paused") == 1  # one alert, not one per message


def test_no_funds_pauses_the_pool_keeps_the_message_and_resumes(
        producer, store, mts, start_worker):
    control(mts.url, balance=0)
    start_worker("mts", threads=2)
    msg = producer.send_sms("+375291000041", "waits for money", account="mts")
    poll_until(lambda: store.r.exists(store.key("alert", "mts", "no_funds")), 20,
               what="the no-funds alert")
    assert store.r.exists(store.key("pause", "mts"))
    # after the pause (2 s) it is tried again, and kept again
    poll_until(lambda: int(store.get(msg)["attempts"]) >= 2, 20, what="a second attempt")
    assert store.get(msg)["status"] == "queued"
    control(mts.url, balance=100)
    assert wait_final(store, [msg], timeout_s=30)[msg] == "delivered"
    assert not store.r.exists(store.key("pause", "mts"))
    assert mts.counters["accepted"] == 1


def test_401_gets_a_new_token_and_exactly_one_retry(producer, store, mts, start_worker):
    start_worker("mts", threads=2)
    first = producer.send_sms("+375291000051", "one", account="mts")
    wait_final(store, [first])
    assert len(tokens(mts)) == 1
    control(mts.url, expire_tokens=True)  # the cached token is now dead at MTS
    second = producer.send_sms("+375291000052", "two", account="mts")
    assert wait_final(store, [second])[second] == "delivered"
    assert [r["http"] for r in sends(mts, "375291000052")] == [401, 200]
    assert len(tokens(mts)) == 2

    control(mts.url, force_401=100)  # even a fresh token is refused
    third = producer.send_sms("+375291000053", "three", account="mts")
    poll_until(lambda: store.r.exists(store.key("alert", "mts", "credentials")), 20,
               what="the credentials alert")
    assert [r["http"] for r in sends(mts, "375291000053")] == [401, 401]  # once, no recursion
    assert len(tokens(mts)) == 3
    assert store.get(third)["status"] == "queued"  # kept
    control(mts.url, force_401=0)
    assert wait_final(store, [third], timeout_s=30)[third] == "delivered"


def test_two_worker_processes_share_one_token_request(
        producer, store, mts, start_worker):
    together(lambda: start_worker("mts", threads=8), lambda: start_worker("mts", threads=8))
    ids = [producer.send_sms(f"+37529{2000000 + i}", f"bulk {i}", account="mts")
           for i in range(120)]  # 4 s at the account's 30/s: both processes send many
    final = wait_final(store, ids, timeout_s=120)
    assert set(final.values()) == {"delivered"}
    assert mts.counters["accepted"] == 120
    assert len(tokens(mts)) == 1
    assert mts.counters["unauthorized"] == 0


# --- the token cache in one process, many threads (no worker needed) --------------------


def _providers(settings: Any, store: Any, n: int) -> list[MtsRest]:
    ctx = ProviderContext(settings, store.r)
    return [MtsRest(settings.account("mts"), ctx) for _ in range(n)]


def _msg(i: int) -> Outgoing:
    return Outgoing(id=f"t{i}", seq=i, phone=f"37529{3000000 + i}", text="t", sender="Gonets",
                    parts=1, encoding="gsm7")


def test_sixteen_cold_threads_fetch_one_token(settings, store, mts):
    provs = _providers(settings, store, 4)  # four "processes", four threads each
    start = threading.Barrier(16)
    errors: list[BaseException] = []

    def go(i: int) -> None:
        start.wait()
        try:
            provs[i % 4].send(_msg(i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(tokens(mts)) == 1 and mts.counters["accepted"] == 16
    for p in provs:
        p.close()


def test_token_is_refreshed_before_it_expires_without_a_401(settings, store, mts):
    control(mts.url, token_ttl_s=4)  # kept 3 s, refreshed 1 s before it would expire
    provs = _providers(settings, store, 2)
    stop = time.monotonic() + 4.5
    n = [0]

    def go(k: int) -> None:
        while time.monotonic() < stop:
            n[0] += 1
            provs[k % 2].send(_msg(n[0]))
            time.sleep(0.02)

    threads = [threading.Thread(target=go, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = tokens(mts)
    assert mts.counters["unauthorized"] == 0  # refreshed a little before expiry
    assert len(got) >= 2
    assert all(b["at"] - a["at"] > 2.5 for a, b in itertools.pairwise(got))  # one refresh each time
    for p in provs:
        p.close()


def test_bad_credentials_are_an_account_problem(settings, store, mts, monkeypatch):
    monkeypatch.setenv("TEST_MTS_CLIENT_SECRET", "wrong")
    (p,) = _providers(settings, store, 1)
    with pytest.raises(AccountProblem) as err:
        p.send(_msg(1))
    assert err.value.alert == "credentials"
    assert httpx.get(f"{mts.url}/_sandbox/state").json()["counters"]["accepted"] == 0
    p.close()


def test_promotional_without_consent_is_refused_before_anything_is_queued(producer, store):
    from core.errors import InvalidInput

    with pytest.raises(InvalidInput) as err:
        producer.send_sms("+375291000071", "Sale!", account="mts", kind="promotional")
    assert err.value.field == "to" and "consent" in err.value.reason
    assert not list(store.r.scan_iter(store.key("msg", "*")))
    assert producer.broker.do_qsize("sms.mts.bulk") == 0
    # the transactional path is unaffected
    assert producer.send_sms("+375291000071", "Receipt", account="mts")
