"""MTS Money over the HTTP API with callbacks: a real payments worker, the bePaid sandbox, the
API on a real socket (it also receives bePaid's notifications) and the callbacks dispatcher."""

from __future__ import annotations

import httpx

from core.payment_store import PaymentStore
from producers.http.auth import Tokens
from producers.http.callbacks import Backoff, Dispatcher, verify
from producers.http.models import CheckOut, PaymentOut
from tests.support import poll_until, serve_asgi, wait_status


def test_payment_over_the_api_sends_signed_callbacks_in_order_and_is_private(
        pay_settings, payments, bepaid, hook_socket, pay_worker, receiver):
    from producers.http.app import create_app

    tokens = Tokens(payments.store.r, pay_settings.namespace)
    shop = tokens.create("shop", "pay")
    tokens.set_private_callbacks("shop", True)  # the receiver is on this host
    other = tokens.create("other", "pay,read")
    pay_worker()
    d = Dispatcher(pay_settings, backoff=Backoff(first_s=0.1, max_s=0.5), threads=2)
    t = d.start_thread()
    try:
        with serve_asgi(create_app(pay_settings, store=payments.store), hook_socket) as url, \
                httpx.Client(base_url=url, timeout=30,
                             headers={"Authorization": f"Bearer {shop.token}"}) as c, \
                httpx.Client(base_url=url, timeout=30,
                             headers={"Authorization": f"Bearer {other.token}"}) as o:
            chk = c.post("/v1/payments/mts-money/check", json={"phone": "+375295111111",
                                                               "wait_s": 15})
            assert chk.status_code == 200, chk.text
            CheckOut.model_validate(chk.json())
            check_id = chk.json()["id"]
            assert o.get(f"/v1/payments/mts-money/check/{check_id}").status_code == 404
            assert o.post("/v1/payments/mts-money", json={
                "phone": "+375295111111", "amount": 100, "description": "not mine",
                "check_id": check_id}).status_code == 404
            r = c.post("/v1/payments/mts-money", json={
                "phone": "+375295111111", "amount": 2500, "description": "order 9",
                "customer_answer": "accept", "check_id": check_id,
                "callback_url": receiver.url}, headers={"Idempotency-Key": "order-9"})
            assert r.status_code == 202, r.text
            pay_id = r.json()["id"]
            again = c.post("/v1/payments/mts-money", json={
                "phone": "+375295111111", "amount": 2500, "description": "order 9",
                "customer_answer": "accept", "check_id": check_id,
                "callback_url": receiver.url}, headers={"Idempotency-Key": "order-9"})
            assert again.json()["id"] == pay_id
            wait_status(payments.ps, [pay_id])
            got = c.get(f"/v1/payments/{pay_id}")
            PaymentOut.model_validate(got.json())
            assert o.get(f"/v1/payments/{pay_id}").status_code == 404
            history = [h["status"] for h in got.json()["history"]]
            poll_until(lambda: receiver.statuses(pay_id) == history, 30, "payment callbacks")
    finally:
        d.stop()
        t.join(10)
    assert history[0] == "queued" and history[-1] == got.json()["status"]
    secret = tokens.callback_secret("shop")
    assert secret is not None
    for rec in receiver.received:
        assert rec["json"]["type"] == "payment.status"
        assert verify(secret, rec["body"], rec["headers"]["X-Gonets-Signature"])
    assert PaymentStore(payments.store).payment(pay_id)["producer"] == "shop"
