"""Lost answers where the provider cannot be asked "did you take message X?" (issue 14): MTS
REST and SMS2. The sandbox takes the send and drops the connection; the account's
``on_lost_answer`` decides (resend, give up, or auto: urgent transactional resent, the rest
given up), and SMS2's ``message duplication`` answer to such a resend means the first copy
went. Real worker processes, real Redis, the sandboxes over sockets; each claim is read off the
sandbox (what the provider took) and the record (what a user sees)."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import AlreadyAccepted, NoLookup, Permanent
from producers.http.sms import record_out
from tests.support import control, wait_final, write_config
from workers.outcomes import lost_answer_policy
from workers.providers.base import Outgoing, ProviderContext
from workers.providers.mts_rest import MtsRest
from workers.providers.sms2_http import Sms2Http

ACCOUNTS = """
[accounts.mts]
provider = "mts_rest"
base_urls = ["{mts}"]
default_sender = "Gonets"
timeout_s = 5
credentials = {{ client_id = "env:TEST_MTS_CLIENT_ID", client_secret = "env:TEST_MTS_SECRET" }}
options = {{ first_poll_s = 0.3, retry_delay_s = 0.3, on_lost_answer = "{policy}" }}

[accounts.sms2]
provider = "sms2_http"
base_urls = ["{sms2}"]
default_sender = "Gonets"
timeout_s = 5
credentials = {{ user = "env:TEST_SMS2_USER", password = "env:TEST_SMS2_PASS" }}
options = {{ first_poll_s = 0.3, retry_delay_s = 0.3, on_lost_answer = "{policy}" }}
"""
SECRETS = {"TEST_MTS_CLIENT_ID": "gonets", "TEST_MTS_SECRET": "sandbox",
           "TEST_SMS2_USER": "gonets", "TEST_SMS2_PASS": "sandbox"}


@pytest.fixture(params=["auto", "resend", "give_up"])
def policy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gonets_env(gonets_env: dict[str, str], tmp_path: Any, smsc: Any, mts: Any, sms2: Any,
               policy: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    cfg = write_config(tmp_path / "gonets.toml", smsc.urls, extra=ACCOUNTS.format(
        mts=mts.url, sms2=sms2.url, policy=policy))
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    return dict(gonets_env, GONETS_CONFIG=str(cfg), GONETS_LOOKUP_RETRY_S="0.2", **SECRETS)


def _send_both(producer: Any, account: str, phone: str) -> tuple[str, str]:
    """An urgent login code and a bulk promotional-style notice, both answers lost."""
    code = producer.send_sms(f"+{phone}1", "Your code 4321", account=account, lane="urgent")
    bulk = producer.send_sms(f"+{phone}2", "Sale today", account=account)
    return code, bulk


def _taken(app: Any, phone: str) -> int:
    """Copies of the message to ``phone`` the sandbox took."""
    return sum(1 for m in app.messages.values() if m.phone == phone)


#: policy -> what becomes of the (urgent code, bulk notice) whose answers were lost
MTS_EXPECTED = {
    "auto": (("delivered", "resent", 2), ("unknown", "gave_up", 1)),
    "resend": (("delivered", "resent", 2), ("delivered", "resent", 2)),
    "give_up": (("unknown", "gave_up", 1), ("unknown", "gave_up", 1)),
}


def test_mts_lost_answer_follows_the_account_policy(producer, store, mts, policy,
                                                    start_worker):
    control(mts.url, lose_answers=2)
    start_worker("mts", threads=2)
    ids = _send_both(producer, "mts", "37529555000")
    final = wait_final(store, list(ids), timeout_s=30)
    for msg_id, phone, (status, what, copies) in zip(
            ids, ("375295550001", "375295550002"), MTS_EXPECTED[policy], strict=True):
        rec = store.get(msg_id)
        assert (final[msg_id], rec["lost_answer"], _taken(mts, phone)) == (status, what,
                                                                           copies), rec
        assert record_out(rec)["lost_answer"] == what  # what GET /v1/sms/<id> shows
        if status == "unknown":
            assert rec["error_code"] == "lost_answer"
            assert f"on_lost_answer = {policy}" in rec["reason"]
            assert "MTS cannot be asked" in rec["reason"]
    assert mts.lose_answers == 0


#: SMS2 refuses the resend within its duplicate window: the first copy went (never rejected)
SMS2_EXPECTED = {
    "auto": (("unknown", "first_copy_taken"), ("unknown", "gave_up")),
    "resend": (("unknown", "first_copy_taken"), ("unknown", "first_copy_taken")),
    "give_up": (("unknown", "gave_up"), ("unknown", "gave_up")),
}


def test_sms2_lost_answer_follows_the_account_policy(producer, store, sms2, policy,
                                                     start_worker):
    control(sms2.url, lose_answers=2)
    start_worker("sms2", threads=2)
    ids = _send_both(producer, "sms2", "7916555000")
    final = wait_final(store, list(ids), timeout_s=30)
    for msg_id, phone, (status, what) in zip(ids, ("79165550001", "79165550002"),
                                             SMS2_EXPECTED[policy], strict=True):
        rec = store.get(msg_id)
        assert (final[msg_id], rec["lost_answer"], _taken(sms2, phone)) == (status, what, 1)
        assert rec["error_code"] == "lost_answer"
        if what == "first_copy_taken":
            assert rec["provider_status"] == "message duplication"
            assert "SMS2 took the first copy" in rec["reason"]
            assert rec["status"] != "rejected"


@pytest.mark.parametrize("policy", ["resend"])
def test_sms2_resend_after_its_duplicate_window_is_a_second_copy(producer, store, sms2,
                                                                 policy, start_worker):
    """What "resend" costs: past SMS2's duplicate window the resend is a second copy (the
    policy a user chooses for codes, where a missing one is worse than two)."""
    control(sms2.url, lose_answers=1, duplicate_window_s=0.05)
    start_worker("sms2", threads=1)
    msg_id = producer.send_sms("+79165550009", "Your code 9876", account="sms2")
    assert wait_final(store, [msg_id], timeout_s=30)[msg_id] == "delivered"
    assert _taken(sms2, "79165550009") == 2
    assert store.get(msg_id)["lost_answer"] == "resent"


# --- pieces ----------------------------------------------------------------------------------

@pytest.mark.parametrize("configured, lane, kind, want", [
    ("auto", "urgent", "transactional", "resend"),
    ("auto", "urgent", "promotional", "give_up"),
    ("auto", "bulk", "transactional", "give_up"),
    ("auto", "bulk", "promotional", "give_up"),
    ("resend", "bulk", "promotional", "resend"),
    ("give_up", "urgent", "transactional", "give_up"),
])
def test_auto_resends_urgent_transactional_only(configured, lane, kind, want) -> None:
    assert lost_answer_policy(configured, {"lane": lane, "kind": kind}) == want


@pytest.mark.parametrize("policy", ["auto"])
def test_sms2_duplication_means_taken_only_for_a_resend_after_a_lost_answer(
        settings, sms2, policy) -> None:
    gate = Sms2Http(settings.account("sms2"))
    first = Outgoing(id="a", seq=1, phone="79165550010", text="same text", sender="Gonets",
                     parts=1, encoding="gsm7")
    try:
        gate.send(first)
        # a new message that happens to repeat one: refused as a duplicate, rejected
        with pytest.raises(Permanent) as refused:
            gate.send(Outgoing(**{**first.__dict__, "id": "b"}))
        assert refused.value.rejected and refused.value.code == "message duplication"
        # the same message sent again after its answer was lost: the first copy went
        with pytest.raises(AlreadyAccepted):
            gate.send(Outgoing(**{**first.__dict__, "inflight_ms": 1}))
    finally:
        gate.close()


@pytest.mark.parametrize("policy", ["give_up"])
def test_mts_lookup_says_it_cannot_be_asked_without_an_id(settings, store, mts,
                                                          policy) -> None:
    api = MtsRest(settings.account("mts"), ProviderContext(settings, store.r))
    msg = Outgoing(id="a", seq=1, phone="375295550011", text="t", sender="Gonets", parts=1,
                   encoding="gsm7", inflight_ms=1)
    try:
        with pytest.raises(NoLookup) as cannot:
            api.lookup(msg)
        assert cannot.value.on_lost_answer == "give_up"
        # with an id MTS can be asked, and "no such message" is an answer: not found
        assert api.lookup(Outgoing(**{**msg.__dict__, "provider_id": "nope"})) is None
    finally:
        api.close()
