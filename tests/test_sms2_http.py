"""SMS2 HTTP gate end to end (a real worker process, the SMS2 sandbox, a real Redis), the
phone-base/campaign/MMS API against the sandbox, and the ``gonets sms2`` commands."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from core.errors import AccountProblem, InvalidInput, OutcomeUnknown, Permanent
from tests.support import ROOT, control, wait_final, write_config
from workers.providers.base import Outgoing
from workers.providers.sms2_http import SEND_ERRORS, Sms2Http

SMS2_ACCOUNT = """
[accounts.sms2]
provider = "sms2_http"
base_urls = ["{url}"]
credentials = {{ user = "env:TEST_SMS2_USER", password = "env:TEST_SMS2_PASS" }}
default_sender = "Gonets"
timeout_s = 5
options = {{ first_poll_s = 0.3, max_poll_interval_s = 1, retry_delay_s = 0.3 }}
"""
PNG = b"\x89PNG\r\n\x1a\n" + bytes(2000)


@pytest.fixture
def gonets_env(gonets_env: dict[str, str], tmp_path: Any, smsc: Any, sms2: Any,
               monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    cfg = write_config(tmp_path / "gonets.toml", smsc.urls,
                       extra=SMS2_ACCOUNT.format(url=sms2.url))
    monkeypatch.setenv("TEST_SMS2_USER", "gonets")
    monkeypatch.setenv("TEST_SMS2_PASS", "sandbox")
    return dict(gonets_env, GONETS_CONFIG=str(cfg), TEST_SMS2_USER="gonets",
                TEST_SMS2_PASS="sandbox")


@pytest.fixture
def gate(settings: Any) -> Iterator[Sms2Http]:
    p = Sms2Http(settings.account("sms2"))
    yield p
    p.close()


def sends(sms2: Any) -> list[dict[str, Any]]:
    return [r for r in sms2.log.items() if r["path"] == "/sms.cgi"]


def _msg(phone: str = "79161234567", text: str = "Тест", **kw: Any) -> Outgoing:
    return Outgoing(id="t", seq=1, phone=phone, text=text, sender=kw.pop("sender", "Gonets"),
                    parts=1, encoding="ucs2", **kw)


# --- end to end through a worker ----------------------------------------------------------


def test_cyrillic_flash_sms_is_sent_in_cp1251_and_delivered(producer, store, sms2,
                                                            start_worker):
    start_worker("sms2", threads=2)
    text = "Ваш заказ №15 собран. Код 4321"
    msg = producer.send_sms("+79161234567", text, account="sms2", options={"flash": True})
    assert wait_final(store, [msg], timeout_s=30)[msg] == "delivered"
    (req,) = sends(sms2)
    assert req["params"]["message"] == text and req["params"]["flash"] == "1"
    assert req["params"]["phone"] == "79161234567" and req["params"]["from"] == "Gonets"
    assert "message=%C2%E0%F8" in req["raw_body"]  # "Ваш" in Windows-1251, not UTF-8
    rec = store.get(msg)
    assert rec["provider_status"] == "delivered" and rec["provider_id"] == "27461"
    assert store.events_for([msg])[msg] == ["queued", "submitted", "delivered"]


def test_each_outcome_is_mapped_and_an_unreadable_answer_loses_nothing(
        producer, store, sms2, start_worker):
    control(sms2.url, final_status={"79161234001": "not_delivered"},
            blacklist=["79161234002"], force_answer=["<html>proxy error</html>", 1])
    start_worker("sms2", threads=1)
    # an unreadable answer is a lost answer; an urgent code is resent (on_lost_answer "auto")
    kept = producer.send_sms("+79161234003", "kept", account="sms2", lane="urgent")
    assert wait_final(store, [kept], timeout_s=30)[kept] == "delivered"
    assert sms2.counters["accepted"] == 1 and len(sends(sms2)) == 2  # retried, sent once
    nd = producer.send_sms("+79161234001", "a", account="sms2")
    bl = producer.send_sms("+79161234002", "b", account="sms2")
    assert wait_final(store, [nd, bl], timeout_s=30) == {nd: "failed", bl: "rejected"}
    assert store.get(nd)["provider_status"] == "not_delivered"
    assert store.get(bl)["error_code"] == "phone blacklisted"
    control(sms2.url, force_error=["quota of the day reached", 1])
    odd = producer.send_sms("+79161234004", "odd", account="sms2")
    assert wait_final(store, [odd], timeout_s=30)[odd] == "failed"
    assert store.get(odd)["error_code"] == "quota of the day reached"  # kept raw


def test_credit_null_pauses_keeps_and_resumes(producer, store, sms2, start_worker):
    control(sms2.url, balance=0)
    start_worker("sms2", threads=2)
    msg = producer.send_sms("+79161234005", "waits", account="sms2")
    deadline = time.monotonic() + 20
    while not store.r.exists(store.key("alert", "sms2", "no_funds")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert store.r.exists(store.key("pause", "sms2"))
    assert store.get(msg)["status"] == "queued"
    control(sms2.url, balance=100)
    assert wait_final(store, [msg], timeout_s=30)[msg] == "delivered"
    assert sms2.counters["accepted"] == 1


def test_unsupported_sender_fails_the_message_and_alerts(producer, store, sms2, start_worker):
    control(sms2.url, senders=["Other"])
    start_worker("sms2", threads=2)
    msg = producer.send_sms("+79161234006", "x", account="sms2")
    assert wait_final(store, [msg], timeout_s=30)[msg] == "failed"
    assert store.get(msg)["error_code"] == "unsupported sender"
    assert store.r.exists(store.key("alert", "sms2", "sender"))


# --- the producer refuses what the gate would refuse ---------------------------------------


@pytest.mark.parametrize("to,text,sender,field,words", [
    ("+79161234567", "Привет 😀", None, "text", "Windows-1251"),
    ("+79161234567", "Пpивет", None, "text", "mix Latin and Cyrillic"),  # Latin "p"
    ("+79161234567", "я" * 269, None, "text", "268"),
    ("+79161234567", "ok", "AB", "sender", "3–11"),
    ("+79161234567", "ok", "Магазин", "sender", "Latin"),
    ("+79161234567", "ok", "12345", "sender", "Latin"),
    ("+375291234567", "ok", None, "to", "starting with 7"),
])
def test_producer_refuses_what_the_gate_refuses(producer, store, to, text, sender, field, words):
    with pytest.raises(InvalidInput) as err:
        producer.send_sms(to, text, sender=sender, account="sms2")
    assert err.value.field == field and words in err.value.reason
    assert not list(store.r.scan_iter(store.key("msg", "*")))
    assert producer.broker.do_qsize("sms.sms2.bulk") == 0


def test_producer_accepts_268_cyrillic_characters_and_latin_words_beside_cyrillic(producer):
    assert producer.send_sms("+79161234567", "я" * 268, account="sms2")
    assert producer.send_sms("+79161234567", "Заказ SHOP-15 готов, iPhone 15", account="sms2")


# --- every documented sms.cgi error line, through the provider ----------------------------


@pytest.mark.parametrize("line", sorted(SEND_ERRORS))
def test_each_send_error_line_maps_to_its_documented_action(gate, sms2, line):
    control(sms2.url, force_error=[line, 1])
    cls, kw = SEND_ERRORS[line]
    with pytest.raises(cls) as err:
        gate.send(_msg())
    assert err.value.code == line
    if cls is AccountProblem:
        assert err.value.alert == kw["alert"]
    elif cls is Permanent:
        assert err.value.rejected == kw.get("rejected", False)
        assert err.value.alert == kw.get("alert")


def test_gate_checks_behind_the_producer(gate, sms2):
    with pytest.raises(Permanent):
        gate.send(_msg(text="Пpивет"))
    assert sends(sms2) == []  # never sent what the gate refuses
    control(sms2.url, fail_5xx=[502, 1])
    with pytest.raises(Exception) as err:
        gate.send(_msg())
    assert not isinstance(err.value, (Permanent, OutcomeUnknown))  # plain retry later


def test_wrong_password_is_an_account_problem(settings, sms2, monkeypatch):
    monkeypatch.setenv("TEST_SMS2_PASS", "wrong")
    p = Sms2Http(settings.account("sms2"))
    with pytest.raises(AccountProblem) as err:
        p.send(_msg())
    assert err.value.alert == "credentials"
    with pytest.raises(AccountProblem):
        p.send_mms("79161234567", "s", "t", PNG)
    p.close()


# --- balance, bases, campaigns, MMS --------------------------------------------------------


def test_credit_info_is_parsed(gate, sms2):
    control(sms2.url, balance=5006.75, overdraft=-10000)
    c = gate.credit()
    assert (str(c.balance), str(c.overdraft)) == ("5006.75", "-10000.00")
    assert str(gate.balance().amount) == "5006.75"


def test_phone_bases_and_campaigns(gate, sms2):
    assert [(b.name, b.phones_total) for b in gate.list_bases()] == [("clients", 0), ("vip", 2)]
    gate.add_phone("clients", "79160000001")
    res = gate.add_phones("clients", ["79160000002", "79160000003", "1728376", "79160000001"])
    assert res.added == 2 and res.errors == ["1728376", "79160000001"]
    assert gate.has_phone("clients", "79160000002") is True
    assert gate.has_phone("clients", "79169999999") is False
    assert gate.get_base("clients") == ["79160000001", "79160000002", "79160000003"]
    gate.remove_phone("clients", "79160000003")
    assert gate.get_base("clients") == ["79160000001", "79160000002"]
    gate.start_multicast(["clients", "vip"], "Скидка 10% до пятницы", "Shop",
                         datetime.datetime(2026, 12, 1, 9, 30))
    assert sms2.campaigns == [{"bases": ["clients", "vip"], "message": "Скидка 10% до пятницы",
                               "from": "Shop", "start_at": "2026-12-01 09:30"}]
    for call, code in ((lambda: gate.add_phone("vip", "79160000004"), "base is protected"),
                       (lambda: gate.add_phone("nope", "79160000004"), "wrong base"),
                       (lambda: gate.add_phone("clients", "79160000001"),
                        "can't add phone number"),
                       (lambda: gate.remove_phone("clients", "79160000009"),
                        "can't remove phone number")):
        with pytest.raises(Permanent) as err:
            call()
        assert err.value.code == code
    with pytest.raises(InvalidInput):
        gate.start_multicast(["clients"], "Пpивет", "Shop")  # refused before sending


def test_mms_is_sent_with_md5_hash_and_size_checked_first(gate, sms2):
    mms_id = gate.send_mms("79161234567", "Новинка", "Смотрите!", PNG)
    assert mms_id == str(sms2.mms[0]["id"])
    assert sms2.mms[0]["subject"] == "Новинка" and sms2.mms[0]["picture_bytes"] == len(PNG)
    with pytest.raises(InvalidInput) as err:
        gate.send_mms("79161234567", "big", "x", PNG + bytes(300 * 1024))
    assert err.value.field == "picture" and "300 KB" in err.value.reason
    with pytest.raises(InvalidInput):
        gate.send_mms("79161234567", "jpeg", "x", b"\xff\xd8\xff\xe0" + bytes(100))
    assert sms2.counters["mms"] == 1  # neither refused MMS reached the gate


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_gonets_sms2_commands(gonets_env, sms2, tmp_path):
    phones = tmp_path / "phones.txt"
    phones.write_text("+79160000011\n79160000012\nbad\n", encoding="utf-8")
    out = _cli(gonets_env, "sms2", "add-batch", "--base", "clients", "--file", str(phones))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"added": 2, "errors": ["bad"]}
    out = _cli(gonets_env, "sms2", "multicast", "--bases", "clients", "--text", "Акция",
               "--sender", "Shop", "--start-at", "2026-12-24 18:00")
    assert out.returncode == 0 and out.stdout.strip() == "Success", out.stderr
    assert sms2.campaigns[0]["start_at"] == "2026-12-24 18:00"

