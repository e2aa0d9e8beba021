"""The HTTP API's errors in its own words: an HTTP client is told the HTTP way to fix a
consent refusal, never pydantic's phrasing; a replay of an idempotent request keeps Location."""

from __future__ import annotations

import httpx

from tests.test_api import _problem


def test_consent_refusal_names_the_http_route_and_the_withdrawal_date(api, client, tokens):
    crm = tokens.create("crm", "consent")
    promo = {"to": "+375295550012", "text": "Sale -30%", "kind": "promotional"}
    body = _problem(client.post("/v1/sms", json=promo), 422, "to")
    assert "no recorded opt-in" in body["detail"]
    assert "PUT /v1/consents/{phone}" in body["detail"]
    assert "record_consent" not in body["detail"] and "gonets consent" not in body["detail"]
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {crm.token}"}) as c:
        assert c.put("/v1/consents/+375295550012", json={"source": "web"}).status_code == 200
        r = c.delete("/v1/consents/+375295550012", params={"source": "STOP reply"})
        assert r.status_code == 200
        day = r.json()["updated_at"][:10] if "updated_at" in r.json() else None
    body = _problem(client.post("/v1/sms", json=promo), 422, "to")
    assert "consent withdrawn on 20" in body["detail"], body
    if day:
        assert f"consent withdrawn on {day}" in body["detail"]
    assert "no recorded opt-in" not in body["detail"]
    # a batch item says the same
    batch = client.post("/v1/sms/batch", json={"messages": [promo]}).json()
    assert "consent withdrawn on" in batch["results"][0]["error"]["detail"]


def test_validation_errors_are_in_the_apis_words(api, client):
    too_many = {"messages": [{"to": "+375291234567", "text": "x"}] * 10_001}
    body = _problem(client.post("/v1/sms/batch", json=too_many), 422, "messages")
    assert body["detail"] == "at most 10000 items (got 10001)"
    for bad, field in (({"to": "+375291234567", "text": "x", "validity": "soon"}, "validity"),
                       ({"to": "+375291234567", "text": "x", "lane": "fast"}, "lane"),
                       ({"to": 375291234567, "text": "x"}, "to"),
                       ({"to": "+375291234567", "text": ""}, "text")):
        detail = _problem(client.post("/v1/sms", json=bad), 422, field)["detail"]
        for pydantic in ("Input should", "after validation", "Value error", "input_value",
                         "pydantic"):
            assert pydantic not in detail, (bad, detail)


def test_an_idempotent_replay_keeps_location(api, client):
    headers = {"Idempotency-Key": "order-99"}
    sms = {"to": "+375291234567", "text": "Order 99 shipped"}
    first = client.post("/v1/sms", json=sms, headers=headers)
    again = client.post("/v1/sms", json=sms, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"] == \
        f"/v1/sms/{first.json()['id']}"


def test_a_payment_with_an_unknown_check_id_names_the_field(api, tokens):
    shop = tokens.create("shop", "pay")
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {shop.token}"}) as c:
        r = c.post("/v1/payments/mts-money", json={
            "phone": "+375295222222", "amount": 1050, "description": "order",
            "check_id": "0" * 32, "customer_answer": "accept"})
    body = _problem(r, 404, "check_id")
    assert "no such check" in body["detail"]
