"""MTS Money end to end: real Redis, a real ``payments`` worker process, the bePaid sandbox and
the webhook receiver, all over real sockets."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from core.errors import InvalidInput
from core.payment_store import PaymentStore
from core.payments import PaymentStatus
from core.settings import load_settings
from tests.support import (
    BEPAID_SECRET,
    BEPAID_SHOP_ID,
    ROOT,
    control,
    serve_asgi,
    wait_status,
)

SHOP_ID, SECRET = BEPAID_SHOP_ID, BEPAID_SECRET
FINAL = {s.value for s in PaymentStatus if s.final}


def statuses(ps: PaymentStore, pay_id: str) -> list[str]:
    return [e["status"] for e in ps.history(pay_id)]


# --- the document's test numbers -----------------------------------------------------------


def test_each_test_number_reaches_its_final_status_through_the_webhook(
        payments, bepaid, webhooks, pay_worker):
    pay_worker()
    ps = payments.ps
    checks = {p: payments.check_mts_money(p) for p in
              ("375295222222", "+375 29 511-11-11", "375444111111", "375290000000")}
    results = {p: payments.check_result(c, wait_s=20)["result"] for p, c in checks.items()}
    assert results == {"375295222222": "active", "+375 29 511-11-11": "must_accept_terms",
                       "375444111111": "invalid_phone", "375290000000": "active"}

    ok = payments.pay_mts_money("375295222222", 1050, description="Order 1",
                                check_id=checks["375295222222"])
    inactive = payments.pay_mts_money("375295111111", 200, description="Order 2",
                                      customer_answer="accept")
    declined = payments.pay_mts_money("375295111111", 300, description="Order 3",
                                      customer_answer="decline")
    invalid = payments.pay_mts_money("375444111111", 400, description="Order 4")
    broke = payments.pay_mts_money("375290000000", 500, description="Order 5")
    final = wait_status(ps, [ok, inactive, declined, invalid, broke])
    assert final == {ok: "successful", inactive: "failed", declined: "declined",
                     invalid: "rejected", broke: "failed"}

    # every status change is an event; the final one came by webhook
    for pay_id in (ok, inactive, broke):
        assert statuses(ps, pay_id) == ["queued", "pending", ps.payment(pay_id)["status"]]
        rec = ps.payment(pay_id)
        assert rec["source"] == "webhook" and rec["uid"]
    assert "Insufficient funds" in ps.payment(broke)["reason"]
    assert ps.payment(ok)["confirm_agreement"] == "already_accepted"
    assert ps.payment(inactive)["confirm_agreement"] == "accept"
    assert statuses(ps, declined) == ["queued", "declined"]
    assert statuses(ps, invalid) == ["queued", "rejected"]

    # exactly one transaction per created payment; a decline and an invalid number none
    state = httpx.get(f"{bepaid.url}/_sandbox/state").json()
    assert {t: len(v) for t, v in state["by_tracking_id"].items()} == {ok: 1, inactive: 1,
                                                                       broke: 1}
    assert state["counters"]["charged_minor"] == 1050
    sent = [x for x in bepaid.log.items() if x["path"] == "/beyag/payments"]
    assert '"confirm_agreement": "decline"' not in str(sent)


def test_bad_payment_input_is_refused_before_anything_is_queued(payments):
    for kwargs, field in [
        ({"phone": "375295222222", "amount": 10.5}, "amount"),
        ({"phone": "375295222222", "amount": 0}, "amount"),
        ({"phone": "375295222222", "amount": True}, "amount"),
        ({"phone": "375295222222", "amount": 100, "currency": "USD"}, "currency"),
        ({"phone": "375295222222", "amount": 100, "currency": "byn"}, "currency"),
        ({"phone": "79161234567", "amount": 100}, "phone"),
        ({"phone": "375295222222", "amount": 100, "customer_answer": "maybe"},
         "customer_answer"),
        ({"phone": "375295222222", "amount": 100, "return_url": "ftp://x"}, "return_url"),
    ]:
        with pytest.raises(InvalidInput) as err:
            payments.pay_mts_money(description="x", **kwargs)
        assert err.value.field == field, kwargs
    assert not list(payments.store.r.scan_iter(payments.store.key("pay", "*")))


def test_the_producer_reads_the_account_options_with_the_workers_model(tmp_path, redis_url):
    # one model for bePaid's options: a typo the worker would refuse is refused here too,
    # naming the key, and nothing is queued (it used to be read as a raw table)
    from core.broker import build_broker
    from core.errors import ConfigError
    from core.store import Store, redis_client
    from producers.payments import Payments
    from tests.support import bepaid_config

    cfg = bepaid_config(tmp_path / "gonets.toml", "http://127.0.0.1:1", "http://127.0.0.1:1")
    cfg.write_text(cfg.read_text().replace("test = true", "test = \"sometimes\""))
    settings = load_settings({"GONETS_CONFIG": str(cfg), "GONETS_REDIS_URL": redis_url})
    broker = build_broker(settings)
    store = Store(redis_client(redis_url))
    try:
        with pytest.raises(ConfigError, match=r"accounts\.bepaid\.options\.test"):
            Payments(settings, store=store, broker=broker).pay_mts_money(
                "375295222222", 100, description="x")
        assert not list(store.r.scan_iter(store.key("pay", "*")))
    finally:
        broker.close()
        store.r.close()


# --- never a double charge -----------------------------------------------------------------


def test_lost_answers_after_bepaid_recorded_the_payment_never_charge_twice(
        payments, bepaid, webhooks, pay_worker):
    # four payments, four faults: 503 before recording, 500 after recording, the connection
    # dropped after recording, and an answer slower than the client's timeout; no webhooks,
    # so what Gonets learns it learns by looking the payments up
    control(bepaid.url, fail_before_create=1, fail_after_create=1, drop_after_create=1,
            timeout_after_create=1, timeout_sleep_s=1.5, lose_webhooks=True)
    pay_worker()
    ps = payments.ps
    ids = [payments.pay_mts_money("375295222222", 100 + i, description=f"fault {i}")
           for i in range(4)]
    wait_status(ps, ids, {"pending", "successful"}, timeout_s=45)
    time.sleep(0.6)  # past pending_lookup_after_s
    payments.sweep_pending_payments()
    final = wait_status(ps, ids, timeout_s=30)
    assert set(final.values()) == {"successful"}
    state = httpx.get(f"{bepaid.url}/_sandbox/state").json()
    assert state["faults"] == {"fail_before_create": 0, "fail_after_create": 0,
                               "drop_after_create": 0, "timeout_after_create": 0}
    # exactly one transaction at bePaid per payment, each charged once
    assert {t: len(v) for t, v in state["by_tracking_id"].items()} == {i: 1 for i in ids}
    assert state["counters"]["charged_minor"] == sum(100 + i for i in range(4))
    # five payment requests reached bePaid: the 503 one was sent again (bePaid had no record
    # of it, as the lookup by tracking_id showed); the other three were found, not resent
    assert state["counters"]["payment"] == 5
    assert sorted(int(ps.payment(i)["attempts"]) for i in ids) == [1, 1, 1, 2]
    looked_up = {x["path"].rsplit("/", 1)[1] for x in bepaid.log.items()
                 if "/tracking_id/" in x["path"]}
    assert looked_up == set(ids)
    for i in ids:
        assert statuses(ps, i)[0] == "queued" and statuses(ps, i)[-1] == "successful"
        assert ps.payment(i)["source"] == "lookup"


def test_a_payment_answer_too_deeply_nested_to_read_is_looked_up_not_resent(
        payments, bepaid, webhooks, pay_worker):
    # bePaid records the payment and answers with JSON no reader can nest: the outcome is
    # unknown, so the worker looks the payment up by tracking_id instead of paying again
    control(bepaid.url, nested_after_create=1)
    worker = pay_worker()
    pay_id = payments.pay_mts_money("375295222222", 250, description="nested answer")
    final = wait_status(payments.ps, [pay_id], timeout_s=30)
    assert final == {pay_id: "successful"}
    assert bepaid.counters["payment"] == 1 and len(bepaid.transactions_for(pay_id)) == 1
    assert payments.ps.payment(pay_id)["attempts"] == "1"
    log = worker.log.read_text(errors="replace")
    assert "RecursionError" not in log and "Traceback" not in log  # an answer, not a crash


def test_a_lost_webhook_is_finished_by_the_pending_sweep(payments, bepaid, webhooks,
                                                         pay_worker):
    control(bepaid.url, lose_webhooks=True)
    pay_worker()
    pay_id = payments.pay_mts_money("375295222222", 700, description="no webhook")
    wait_status(payments.ps, [pay_id], {"pending"})
    time.sleep(1.2)  # longer than progress_s (bePaid has the final status) and the threshold
    assert payments.ps.payment(pay_id)["status"] == "pending"  # nobody told us
    from scheduler.sweeps import payment_sweep

    assert payment_sweep(payments.broker, payments.settings)  # what the scheduler's timer does
    assert wait_status(payments.ps, [pay_id])[pay_id] == "successful"
    rec = payments.ps.payment(pay_id)
    assert rec["source"] == "lookup"
    assert statuses(payments.ps, pay_id) == ["queued", "pending", "successful"]
    assert not payments.ps.due("bepaid", now=int(time.time() * 1000) + 10**9)


def test_worker_killed_while_bepaid_holds_the_request_charges_once(
        payments, bepaid, webhooks, pay_worker):
    import signal

    # bePaid records the payment, then sits on the answer; the worker dies meanwhile
    control(bepaid.url, timeout_after_create=1, timeout_sleep_s=3, lose_webhooks=True)
    w1 = pay_worker()
    pay_id = payments.pay_mts_money("375295222222", 4200, description="kill -9")
    deadline = time.monotonic() + 20
    while bepaid.counters["created"] < 1:
        assert time.monotonic() < deadline, "the payment never reached bePaid"
        time.sleep(0.01)
    w1.stop(signal.SIGKILL)
    assert payments.ps.payment(pay_id)["status"] == "queued"
    assert payments.ps.payment(pay_id)["inflight_ms"]  # sent, outcome unknown
    pay_worker()  # dramatiq brings the job back once the dead worker's heartbeat is stale
    wait_status(payments.ps, [pay_id], {"pending", "successful"}, timeout_s=40)
    assert bepaid.counters["payment"] == 1  # looked up, never sent again
    assert len(bepaid.transactions_for(pay_id)) == 1
    assert payments.ps.payment(pay_id)["source"] == "lookup"


# --- the webhook receiver ------------------------------------------------------------------


def test_webhook_wrong_credentials_401_replay_and_late_pending_change_nothing(
        payments, bepaid, webhooks, pay_worker, caplog):
    pay_worker()
    pay_id = payments.pay_mts_money("375295222222", 900, description="replays")
    wait_status(payments.ps, [pay_id], {"successful"})
    ps = payments.ps
    before = ps.history(pay_id)
    uid = ps.payment(pay_id)["uid"]
    tx = httpx.get(f"{bepaid.url}/beyag/transactions/{uid}", auth=(SHOP_ID, SECRET)).json()
    url = f"{webhooks}/v1/webhooks/bepaid/bepaid"

    late = {"transaction": {**tx["transaction"], "status": "failed"}}
    with caplog.at_level(logging.WARNING, logger="gonets.webhooks.bepaid"):
        r = httpx.post(url, json=late, auth=(SHOP_ID, "wrong-secret"))
        assert r.status_code == 401
        r = httpx.post(url, json=late)
        assert r.status_code == 401
    refused = [m for m in caplog.messages if "refused" in m]
    assert len(refused) == 2 and SECRET not in caplog.text and "wrong-secret" not in caplog.text

    r = httpx.post(url, json=tx, auth=(SHOP_ID, SECRET))  # the same notification again
    assert r.status_code == 200 and r.json() == {"status": "successful", "changed": False}
    pending = {"transaction": {**tx["transaction"], "status": "pending"}}
    r = httpx.post(url, json=pending, auth=(SHOP_ID, SECRET))  # a late pending
    assert r.status_code == 200 and r.json()["status"] == "successful"
    r = httpx.post(url, json=late, auth=(SHOP_ID, SECRET))  # a late, contradicting final
    assert r.json()["status"] == "successful"
    other = {"transaction": {**tx["transaction"], "amount": 1}}
    assert httpx.post(url, json=other, auth=(SHOP_ID, SECRET)).status_code == 422
    for body in (b"", b"{", b"[]", b'{"transaction": 5}', b'{"transaction": {"uid": 1}}',
                 "\udcff".encode("utf-8", "surrogatepass")):
        r = httpx.post(url, content=body, auth=(SHOP_ID, SECRET))
        assert r.status_code == 400, body
    assert ps.history(pay_id) == before
    assert ps.payment(pay_id)["status"] == "successful"
    assert httpx.post(f"{webhooks}/v1/webhooks/bepaid/nosuch", json=tx,
                      auth=(SHOP_ID, SECRET)).status_code == 404


# --- the command line and `make run` -------------------------------------------------------


def test_cli_checks_pays_and_shows_a_payment(pay_env, bepaid, webhooks, pay_worker, payments):
    import json
    import subprocess
    import sys

    pay_worker()

    def gonets(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "cli.main", "pay", *args], env=pay_env,
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert json.loads(gonets("check", "--phone", "+375295111111"))["result"] == \
        "must_accept_terms"
    pay_id = gonets("create", "--phone", "+375295222222", "--amount", "1050",
                    "--description", "CLI order").strip()
    wait_status(payments.ps, [pay_id], {"successful"})
    shown = gonets("status", pay_id)
    assert "successful" in shown and "1050 BYN" in shown and "375295222222" not in shown


def test_make_run_config_has_a_payments_pool():
    from cli.run import SANDBOX_CONFIG, sandbox_env
    from core.payments import payments_pool_queues
    from sandbox.__main__ import STARTERS
    from workers.pool import queues_for

    info: dict[str, object] = {name: ["http://a", "http://b"] for name in STARTERS}
    info["bepaid"] = "http://c"  # one address, as its starter reports it
    info["smpp_smsc"] = {"primary": "127.0.0.1:1", "backup": "127.0.0.1:2",
                         "tls": "127.0.0.1:3", "ca_file": "/ca.pem", "control": "http://d"}
    env = {**sandbox_env(info), "GONETS_SANDBOX_WEBHOOKS_URL": "http://127.0.0.1:8089"}
    settings = load_settings({"GONETS_CONFIG": str(ROOT / SANDBOX_CONFIG), **env})
    assert queues_for(settings, "bepaid") == payments_pool_queues("bepaid")
    assert settings.account("bepaid").options["notification_url"] == \
        "http://127.0.0.1:8089/v1/webhooks/bepaid/bepaid"


# --- over the HTTP API ----------------------------------------------------------------------


def test_http_api_takes_a_payment_and_receives_its_webhook(
        pay_settings, payments, bepaid, hook_socket, pay_worker):
    from producers.http.app import create_app
    from producers.http.auth import SCOPES, Tokens

    token = Tokens(payments.store.r, pay_settings.namespace).create("shop", SCOPES).token
    pay_worker()
    # the API serves on the address the account's notification_url names
    with serve_asgi(create_app(pay_settings, store=payments.store), hook_socket) as url, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                         timeout=30) as c:
        r = c.post("/v1/payments/mts-money/check", json={"phone": "+375295111111",
                                                         "wait_s": 15})
        assert r.status_code == 200 and r.json()["result"] == "must_accept_terms"
        r = c.post("/v1/payments/mts-money", json={
            "phone": "+375295111111", "amount": 2500, "description": "via the API",
            "customer_answer": "accept", "check_id": r.json()["id"]})
        assert r.status_code == 202
        pay_id = r.json()["id"]
        wait_status(payments.ps, [pay_id])
        body = c.get(f"/v1/payments/{pay_id}").json()
    assert body["status"] == "failed" and body["amount"] == 2500
    assert [h["status"] for h in body["history"]] == ["queued", "pending", "failed"]
    rec = payments.ps.payment(pay_id)
    assert rec["source"] == "webhook" and rec["producer"] == "shop"
    assert rec["check_result"] == "must_accept_terms"  # the API's check was reused
    assert bepaid.counters["check"] == 1
