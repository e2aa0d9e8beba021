"""The SMPP session and provider in this process, against the sandbox on real sockets and the
test Redis: link upkeep, bad PDUs, receipts racing their answers, leases, drain, TLS."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.errors import AccountProblem
from core.settings import load_settings
from core.store import Store, redis_client
from sandbox import smpp_smsc
from tests.support import control, poll_until
from workers.providers import build
from workers.providers.base import Outgoing, ProviderContext
from workers.runtime import Runtime
from workers.smpp.lease import bind_lease
from workers.smpp.provider import SmppProvider
from workers.smpp.receipt import Receipt

PHONE = "375291234567"


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[Any]:
    sb, http = smpp_smsc.serve("127.0.0.1", tls="tls" in request.node.name)
    sb.control_url = http.urls()[0]
    yield sb
    sb.stop()
    http.stop()


@pytest.fixture
def store(redis_url: str) -> Iterator[Store]:
    """The message records the providers' receipts end up on (through a worker runtime)."""
    s = Store(redis_client(redis_url))
    yield s
    s.r.close()


@pytest.fixture
def make(sandbox: Any, redis_url: str, tmp_path: Path, store: Store,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., SmppProvider]]:
    monkeypatch.setenv("T_LOGIN", "gonets")
    monkeypatch.setenv("T_PASSWORD", "sandbox")
    made: list[SmppProvider] = []

    def make(host: str | None = None, password: str = "T_PASSWORD",
             provider: str = "smsc_smpp", bound: bool = True, **opts: Any) -> SmppProvider:
        info = sandbox.info()
        o = {"backoff_min_s": 0.1, "backoff_max_s": 0.5, "response_timeout_s": 3,
             "bind_wait_s": 10, **opts}
        options = ", ".join(f"{k} = {json.dumps(v)}" for k, v in o.items())
        cfg = tmp_path / f"g{len(made)}.toml"
        cfg.write_text(f"""
[accounts.acct]
provider = "{provider}"
smpp_host = "{host or info['primary']}"
smpp_backup_host = "{info['backup']}"
credentials = {{ login = "env:T_LOGIN", password = "env:{password}" }}
options = {{ {options} }}
""")
        s = load_settings({"GONETS_CONFIG": str(cfg), "GONETS_REDIS_URL": redis_url,
                           "GONETS_DRAIN_TIMEOUT_S": "10"})
        # a worker's runtime: the provider hands receipts to its outcomes module
        rt = Runtime(s, store)
        p = build(s.accounts[0], ProviderContext(s, redis_client(redis_url), facts=rt.outcomes))
        assert isinstance(p, SmppProvider)
        made.append(p.start())
        if bound:  # a loaded machine may take a while; the tests are not about that
            assert p.session.wait_bound(15)
        return p

    yield make
    for p in made:
        p.close()


def deliver_sm_body(sm: bytes, *, esm: int, data_coding: int) -> bytes:
    """A deliver_sm body from PHONE to "Gonets" (SMPP v3.4 §4.6.1)."""
    return (b"\x00\x01\x01" + PHONE.encode() + b"\x00\x05\x00Gonets\x00"
            + bytes((esm, 0, 0)) + b"\x00\x00" + bytes((0, 0, data_coding, 0, len(sm))) + sm)


def state(sb: Any) -> dict[str, Any]:
    return httpx.get(f"{sb.control_url}/_sandbox/state").json()


def out(p: SmppProvider, n: int, text: str = "hello", **kw: Any) -> Outgoing:
    Store(p.ctx.redis).create(f"m{n}", {"account": "acct", "phone": kw.get("phone", PHONE),
                                        "text": text}, next_check_ms=0)
    return Outgoing(id=f"m{n}", seq=n, phone=kw.pop("phone", PHONE), text=text,
                    sender="Gonets", parts=1, encoding="gsm7", **kw)


def test_enquire_link_keeps_an_idle_link(make: Callable[..., SmppProvider], sandbox: Any) -> None:
    p = make(enquire_link_s=0.3)
    assert p.session.wait_bound(5)
    poll_until(lambda: state(sandbox)["counters"].get("pdu_enquire_link", 0) >= 3, 5)
    assert p.session.stats.binds == 1 and p.is_alive()


def test_unanswered_enquire_link_means_a_dead_link(make: Callable[..., SmppProvider],
                                                   sandbox: Any) -> None:
    control(sandbox.control_url, mute_enquire_link=True)
    p = make(enquire_link_s=0.2, response_timeout_s=0.5)
    assert p.session.wait_bound(5)
    poll_until(lambda: p.session.stats.binds >= 2, 10)  # declared dead, bound again
    control(sandbox.control_url, mute_enquire_link=False)
    assert p.send(out(p, 1)).provider_id


def test_server_idle_drop_is_followed_by_a_new_bind(make: Callable[..., SmppProvider],
                                                    sandbox: Any) -> None:
    control(sandbox.control_url, idle_timeout_s=0.4)
    p = make(enquire_link_s=30)
    assert p.session.wait_bound(5)
    poll_until(lambda: state(sandbox)["counters"].get("idle_drops", 0) >= 1, 5)
    control(sandbox.control_url, idle_timeout_s=120)
    assert p.send(out(p, 1)).provider_id
    assert p.session.stats.binds >= 2


def test_malformed_and_unknown_pdus_never_kill_the_session(
        make: Callable[..., SmppProvider], sandbox: Any) -> None:
    p = make()
    assert p.session.wait_bound(5)
    bad = ["00", "0001" * 3, "00" * 40 + "ff", ""]
    control(sandbox.control_url, inject_deliver_sm=bad)
    poll_until(lambda: state(sandbox)["counters"].get("pdu_deliver_sm_resp", 0) >= len(bad), 5)
    assert p.is_alive() and p.session.bound and p.session.stats.binds == 1
    assert p.send(out(p, 1)).provider_id


def test_incoming_message_is_stored_as_an_event(make: Callable[..., SmppProvider],
                                                sandbox: Any) -> None:
    p = make()
    assert p.session.wait_bound(5)
    body = deliver_sm_body("Да".encode("utf-16-be"), esm=0, data_coding=8)
    control(sandbox.control_url, inject_deliver_sm=[body.hex()])
    events = poll_until(lambda: p.ctx.redis.xrange("gonets:smpp:incoming"), 5)
    assert events[0][1]["text"] == "Да" and events[0][1]["from"] == PHONE


def test_a_receipt_before_its_answer_is_kept_and_applied(
        make: Callable[..., SmppProvider], store: Store) -> None:
    p = make()
    o = out(p, 7)
    store.transition("m7", "submitted")
    p.receipts.on_receipt(Receipt(message_id="00A1B2", stat="DELIVRD", err=0), phone=PHONE)
    assert store.get("m7")["status"] == "submitted"  # nobody knows the id yet
    p.receipts.remember(o.id, ["a1b2"])  # the answer, in another case, arrives
    rec = store.get("m7")
    assert rec["status"] == "delivered" and rec["provider_id"] == "00A1B2"


def test_hex_answers_and_decimal_receipts_meet(make: Callable[..., SmppProvider],
                                               store: Store, sandbox: Any) -> None:
    control(sandbox.control_url, id_format="hex")
    p = make()
    sub = p.send(out(p, 1))
    assert sub.provider_id == "186A1"  # 100001 written in hex
    store.transition("m1", "submitted")
    poll_until(lambda: store.get("m1")["status"] == "delivered", 5)


def test_a_receipt_overtaking_its_answer_never_lands_on_the_message_its_id_reads_as_in_hex(
        make: Callable[..., SmppProvider], store: Store, sandbox: Any) -> None:
    # a new account's small decimal ids: message 16's receipt is slow to come
    control(sandbox.control_url, next_id=16, receipt_delay_s=30)
    p = make()
    assert p.send(out(p, 16, phone="375291110016")).provider_id == "16"
    store.transition("m16", "submitted")
    # message 22 fails, and its receipt comes before its submit_sm_resp ("22" = 0x16)
    control(sandbox.control_url, next_id=22, receipt_delay_s=0, resp_delay_s=1.0,
            phone_error={"375291110022": 1})
    assert p.send(out(p, 22, phone="375291110022")).provider_id == "22"
    poll_until(lambda: store.get("m22")["status"] == "failed", 10, "message 22's own receipt")
    assert store.get("m22")["provider_id"] == "22"
    assert store.get("m16")["status"] == "submitted"  # untouched by a receipt not its own


def test_hex_ids_are_learned_from_the_server(make: Callable[..., SmppProvider], store: Store,
                                             sandbox: Any) -> None:
    control(sandbox.control_url, id_format="hex", next_id=0x1A)
    p = make()
    assert p.send(out(p, 1)).provider_id == "1A"  # a letter: this server writes hex
    store.transition("m1", "submitted")
    poll_until(lambda: store.get("m1")["status"] == "delivered", 5)
    control(sandbox.control_url, next_id=0x20)
    assert p.send(out(p, 2, "again")).provider_id == "20"  # 32 in hex; its receipt: 32
    store.transition("m2", "submitted")
    poll_until(lambda: store.get("m2")["status"] == "delivered", 5)
    assert store.r.get("gonets:smpp:idfmt:acct:submit") == "hex"
    assert not store.r.exists("gonets:smpp:idfmt:acct:receipt")  # receipts stay decimal


def test_configured_hex_ids_on_both_sides(make: Callable[..., SmppProvider], store: Store,
                                          sandbox: Any) -> None:
    control(sandbox.control_url, id_format="hex_all", next_id=0x10)
    p = make(submit_id_format="hex", receipt_id_format="hex")
    assert p.send(out(p, 1)).provider_id == "10"
    store.transition("m1", "submitted")
    poll_until(lambda: store.get("m1")["status"] == "delivered", 5)
    assert p.receipts.provider_ids("m1") == ["10"]


def test_a_receipt_with_non_ascii_digits_is_taken_not_refused_forever(
        make: Callable[..., SmppProvider], sandbox: Any) -> None:
    p = make()
    assert p.session.wait_bound(5)
    text = "id:12\u00b2 sub:001 dlvrd:000 stat:UNDELIV err:\u00b2\u00b3".encode("latin-1")
    body = deliver_sm_body(text, esm=0x04, data_coding=0)
    control(sandbox.control_url, inject_deliver_sm=[body.hex()])
    counters = poll_until(lambda: (c := state(sandbox)["counters"]).get("injected_acked", 0)
                          + c.get("injected_refused", 0) and c, 5, "the receipt's answer")
    assert counters.get("injected_acked") == 1 and not counters.get("injected_refused")
    assert p.is_alive() and p.session.stats.binds == 1


def test_drain_on_close_answers_the_window_then_unbinds(
        make: Callable[..., SmppProvider], sandbox: Any) -> None:
    control(sandbox.control_url, resp_delay_s=0.3)
    p = make()
    assert p.session.wait_bound(5)
    futs = [p.session.request("submit_sm", params) for n in range(10)
            for params in p.submit_params(out(p, n, f"drain {n}"))]
    p.close()
    assert all(f.result(0).status == 0 for f in futs)
    assert state(sandbox)["counters"].get("pdu_unbind", 0) == 1
    assert p.ctx.redis.keys("gonets:smpp:lease:*") == []  # lease given back


def test_bad_password_is_an_account_problem(make: Callable[..., SmppProvider],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_WRONG", "nope")
    p = make(password="T_WRONG", bound=False)
    poll_until(lambda: p.session.bind_error is not None, 5)
    with pytest.raises(AccountProblem) as e:
        p.send(out(p, 1))
    assert e.value.alert == "credentials" and e.value.code == "0x0e"


def test_tls_refuses_an_unverified_certificate(make: Callable[..., SmppProvider],
                                               sandbox: Any) -> None:
    p = make(tls=True, host=sandbox.info()["tls"], bound=False)
    poll_until(lambda: state(sandbox)["counters"].get("tls_failures", 0) >= 1, 5)
    assert not p.session.bound


def test_hlr_result_lands_on_the_record(make: Callable[..., SmppProvider], store: Store) -> None:
    p = make()
    o = out(p, 3, "check", options={"type": "hlr"})
    p.send(o)
    store.transition("m3", "submitted")
    rec = poll_until(lambda: (r := store.get("m3"))["status"] == "delivered" and r, 5)
    assert rec["hlr_mcc"] == "257" and rec["hlr_net"] == "MTS Belarus"
    assert rec["dlr_message_type"] == "hlr"


def test_typed_messages_reach_smsc_as_its_text_conventions(
        make: Callable[..., SmppProvider], sandbox: Any) -> None:
    p = make()
    p.send(out(p, 1, "Hi", options={"type": "mail", "subject": "Order", "comment": "crm#1"}))
    p.send(out(p, 2, "123456", options={"type": "tgm"}))
    texts = [m["text"] for m in httpx.get(f"{sandbox.control_url}/_sandbox/messages").json()]
    assert texts == ["__MAIL__: Hi\nsubj:Order\n~~~\ncrm#1", "__TGM__: 123456"]
    from core.errors import Permanent

    with pytest.raises(Permanent):
        p.send(out(p, 3, "12ab", options={"type": "tgm"}))
    with pytest.raises(Permanent):
        p.send(out(p, 4, "__HLR__"))  # a caller cannot smuggle control markers in


def test_lease_slots_expire_and_are_never_shared(redis_url: str) -> None:
    r = redis_client(redis_url)
    a = bind_lease(r, namespace="t", login="x", slots=2, ttl_s=1)
    b = bind_lease(r, namespace="t", login="x", slots=2, ttl_s=1)
    c = bind_lease(r, namespace="t", login="x", slots=2, ttl_s=1)
    assert a.acquire() and b.acquire() and not c.acquire()
    assert a.slot != b.slot
    time.sleep(1.2)  # a and b stopped renewing: their slots free themselves
    assert c.acquire()
    assert not a.renew() and not a.held  # a lost its slot and knows it
    b.release()
    c.release()


def test_failover_mid_run_moves_to_the_backup(make: Callable[..., SmppProvider],
                                              sandbox: Any) -> None:
    p = make()
    control(sandbox.control_url, down=["primary"])  # primary dies with our link on it
    poll_until(lambda: state(sandbox)["binds_by_listener"] == {"backup": 1}, 10)
    assert p.send(out(p, 1)).provider_id


def test_a_lost_lease_unbinds_and_stands_by(make: Callable[..., SmppProvider],
                                            sandbox: Any) -> None:
    p = make(mcon=1, lease_ttl_s=1)
    assert p.lease.slot is not None
    p.ctx.redis.set(p.lease.slot, "someone-else")  # taken over (e.g. after a partition)
    poll_until(lambda: p.session.standing_by and not p.session.bound, 5)
    assert state(sandbox)["counters"].get("pdu_unbind", 0) == 1
    from core.errors import RetryLater

    with pytest.raises(RetryLater):  # its jobs go back to the queue for the holder
        p.send(out(p, 1))
    p.ctx.redis.delete("gonets:smpp:lease:gonets:1")
    poll_until(lambda: p.session.bound, 10)  # the slot is free again: it binds


def test_insufficient_funds_receipt_pauses_the_account(
        make: Callable[..., SmppProvider], store: Store, sandbox: Any) -> None:
    p = make()
    control(sandbox.control_url, phone_error={PHONE: 224})
    p.send(out(p, 1))
    rec = poll_until(lambda: (r := store.get("m1"))["status"] == "failed" and r, 5)
    assert rec["error_code"] == "224" and rec["reason"] == "insufficient funds"
    assert Runtime(p.ctx.settings, store).pause_left_s("acct") > 0


def test_throttled_parts_of_a_long_message_follow_within_the_minute(
        make: Callable[..., SmppProvider], sandbox: Any) -> None:
    control(sandbox.control_url, rate_per_s=2)
    p = make()
    sub = p.send(out(p, 1, "Ж" * 250))  # 4 parts; the server takes 2 a second
    assert sub.parts == 4 and sub.provider_id
    msgs = httpx.get(f"{sandbox.control_url}/_sandbox/messages").json()
    assert [(m["parts"], m["got_parts"]) for m in msgs] == [(4, 4)]  # one message, whole
    assert state(sandbox)["counters"]["throttled"] >= 1
