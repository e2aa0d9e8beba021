"""Tenants are isolated (issue #14, "Isolation and traceability"): duplicate windows and
idempotency keys count per producer, over a real Redis, the HTTP API, the SMSC sandbox and a
real worker."""

from __future__ import annotations

import subprocess
import sys

import httpx

from producers.http.callbacks import Dispatcher
from producers.http.models import BatchOut
from tests.support import poll_until, wait_final

SAME = {"to": "+375294440000", "text": "Your order 17 has shipped"}


def test_two_producers_sending_the_same_get_their_own_messages_and_callbacks(
        api, client, tokens, store, smsc, start_worker, api_settings, receiver):
    other = tokens.create("other-shop", "send,read")
    a = client.post("/v1/sms", json={**SAME, "callback_url": receiver.url})
    assert a.status_code == 202 and "gonets-duplicate-of" not in a.headers
    with httpx.Client(base_url=api.url, timeout=30,
                      headers={"Authorization": f"Bearer {other.token}"}) as b_client:
        b = b_client.post("/v1/sms", json={**SAME, "callback_url": receiver.url})
        assert b.status_code == 202 and "gonets-duplicate-of" not in b.headers
        a_id, b_id = a.json()["id"], b.json()["id"]
        assert a_id != b_id  # B never learns A's id
        assert b_client.get(f"/v1/sms/{b_id}").status_code == 200
        # the same idempotency key from two producers binds two messages
        k1 = client.post("/v1/sms", json={"to": "+375294440001", "text": "k",
                                          "idempotency_key": "order-17"}).json()["id"]
        k2 = b_client.post("/v1/sms", json={"to": "+375294440001", "text": "k",
                                            "idempotency_key": "order-17"}).json()["id"]
        assert k1 != k2
    # A's own repeat is a duplicate, and the answer says so
    again = client.post("/v1/sms", json={**SAME, "callback_url": receiver.url})
    assert again.status_code == 202 and again.json()["id"] == a_id
    assert again.headers["gonets-duplicate-of"] == a_id
    batch = client.post("/v1/sms/batch", json={"messages": [
        SAME, {"to": "+375294440002", "text": "new one"}]}).json()
    BatchOut.model_validate(batch)
    assert batch["results"][0] == {"index": 0, "id": a_id, "duplicate_of": a_id}
    assert "duplicate_of" not in batch["results"][1]
    start_worker(threads=4)
    ids = [a_id, b_id, k1, k2, batch["results"][1]["id"]]
    assert set(wait_final(store, ids).values()) == {"delivered"}
    assert smsc.counters["accepted"] == 5  # one copy each, the duplicates none
    d = Dispatcher(api_settings, threads=2)
    t = d.start_thread()
    try:  # B's callbacks arrive, as A's do
        poll_until(lambda: receiver.statuses(b_id) == ["queued", "submitted", "delivered"]
                   and len(receiver.statuses(a_id)) == 3, 30, "both producers' callbacks")
    finally:
        d.stop()
        t.join(10)


def test_python_api_without_a_producer_is_a_tenant_of_its_own(producer):
    none_1 = producer.queue_sms(SAME["to"], SAME["text"])
    shop = producer.queue_sms(SAME["to"], SAME["text"], producer="shop")
    none_2 = producer.queue_sms(SAME["to"], SAME["text"])
    assert not none_1.duplicate and not shop.duplicate and shop.id != none_1.id
    assert none_2.duplicate and none_2.id == none_1.id
    keyed = [producer.queue_sms("+375294440003", f"t{i}", idempotency_key="k", producer=p)
             for i, p in enumerate([None, "shop", "shop", "other"])]
    assert keyed[2].duplicate and keyed[2].id == keyed[1].id
    assert len({q.id for q in keyed}) == 3 and not any(q.duplicate for q in keyed[:2])
    # a producer-less caller cannot reach a producer's key by spelling it out
    spelled = producer.queue_sms("+375294440003", "t", idempotency_key="shop:k")
    assert spelled.id != keyed[1].id and not spelled.duplicate


def test_cli_send_says_a_duplicate_is_one(gonets_env, store):
    def send() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", "send", "--to", SAME["to"],
                               "--text", SAME["text"]], env=gonets_env, capture_output=True,
                              text=True, timeout=60)

    first, second = send(), send()
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.strip() == second.stdout.strip()  # stdout: the id alone
    assert "duplicate" not in first.stderr
    assert f"duplicate of {first.stdout.strip()}" in second.stderr
