"""The webhook receiver's body handling, property-tested: whatever arrives, the answer is
200, 400, 401 or 422, the process lives on, and a final payment never changes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.payment_store import PaymentStore
from core.payments import PaymentStatus, Transaction
from core.settings import load_settings
from core.store import Store, redis_client
from producers.http.bepaid_webhook import make_app
from tests.support import free_socket, serve_asgi

SHOP_ID, SECRET = "361", "sandbox-secret-key"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{SHOP_ID}:{SECRET}".encode()).decode()}
PAY_ID, UID = "a" * 32, "d5ac59da-09bf-4f82-826c-f9f96d3fb4ba"


@pytest.fixture
def hook(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[tuple[httpx.Client, PaymentStore]]:
    cfg = tmp_path / "gonets.toml"
    cfg.write_text("""
[accounts.bepaid]
provider = "bepaid"
credentials = { shop_id = "env:T_SHOP", secret_key = "env:T_SECRET" }
""", encoding="utf-8")
    monkeypatch.setenv("T_SHOP", SHOP_ID)
    monkeypatch.setenv("T_SECRET", SECRET)
    settings = load_settings({"GONETS_CONFIG": str(cfg), "GONETS_REDIS_URL": redis_url})
    ps = PaymentStore(Store(redis_client(redis_url)))
    ps.create_payment(PAY_ID, {"phone": "375295222222", "amount": 100, "currency": "BYN"},
                      account="bepaid", due_ms=0)
    ps.apply(PAY_ID, Transaction(uid=UID, status=PaymentStatus.PENDING, raw_status="pending",
                                 tracking_id=PAY_ID, amount=100, currency="BYN"),
             source="payment", lookup_after_s=60)
    ps.apply(PAY_ID, Transaction(uid=UID, status=PaymentStatus.SUCCESSFUL,
                                 raw_status="successful", tracking_id=PAY_ID, amount=100,
                                 currency="BYN"), source="webhook", lookup_after_s=60)
    sock = free_socket()
    with serve_asgi(make_app(settings), sock) as url, httpx.Client(base_url=url) as client:
        yield client, ps
    sock.close()
    ps.r.close()


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | \
    st.text(max_size=12)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=10), inner, max_size=4), max_leaves=15)
transactions = st.fixed_dictionaries({}, optional={
    "uid": st.sampled_from([UID, "other-uid", ""]) | st.integers(),
    "status": st.sampled_from(["pending", "successful", "failed", "expired", "error",
                               "deleted", "unheard-of"]) | json_values,
    "tracking_id": st.sampled_from([PAY_ID, "b" * 32]) | json_values,
    "amount": st.sampled_from([100, 1, -5]) | json_values,
    "currency": st.sampled_from(["BYN", "USD"]) | json_values,
    "message": json_values,
})
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    transactions.map(lambda t: json.dumps({"transaction": t}).encode()),
)


@hsettings(max_examples=100, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies)
def test_any_body_never_crashes_and_never_changes_a_final_payment(hook, body: bytes):
    client, ps = hook
    before = (ps.payment(PAY_ID), ps.history(PAY_ID))
    r = client.post("/v1/webhooks/bepaid/bepaid", content=body,
                    headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code in (200, 400, 422), (r.status_code, r.text)
    assert (ps.payment(PAY_ID), ps.history(PAY_ID)) == before


@hsettings(max_examples=60, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40) |
       st.binary(max_size=40).map(
    lambda b: "Basic " + base64.b64encode(b).decode()))
def test_any_wrong_authorization_is_401(hook, header: str):
    client, ps = hook
    body = json.dumps({"transaction": {"uid": UID, "status": "failed", "tracking_id": PAY_ID,
                                       "amount": 100, "currency": "BYN"}})
    try:
        r = client.post("/v1/webhooks/bepaid/bepaid", content=body,
                        headers={"Authorization": header})
    except (UnicodeEncodeError, httpx.LocalProtocolError):  # not sendable as a header
        return
    # (headers that are not valid HTTP never reach the app: the server answers 400 itself)
    assert r.status_code == 401
    assert ps.payment(PAY_ID)["status"] == "successful"


def test_a_pending_payment_takes_the_final_status_once(hook):
    client, ps = hook
    ps.create_payment("c" * 32, {"phone": "375295222222", "amount": 250, "currency": "BYN"},
                      account="bepaid", due_ms=0)
    note: dict[str, Any] = {"transaction": {"uid": UID, "status": "failed", "amount": 250,
                                            "currency": "BYN", "tracking_id": "c" * 32,
                                            "message": "Insufficient funds."}}
    r1 = client.post("/v1/webhooks/bepaid/bepaid", json=note, headers=AUTH)
    r2 = client.post("/v1/webhooks/bepaid/bepaid", json=note, headers=AUTH)
    assert r1.json() == {"status": "failed", "changed": True}
    assert r2.json() == {"status": "failed", "changed": False}
    assert [e["status"] for e in ps.history("c" * 32)] == ["queued", "failed"]
    assert ps.payment("c" * 32)["reason"] == "Insufficient funds."
    unknown = {"transaction": {**note["transaction"], "tracking_id": "z" * 32}}
    assert client.post("/v1/webhooks/bepaid/bepaid", json=unknown,
                       headers=AUTH).json()["status"] == "ignored"


def test_an_integral_float_amount_is_the_same_amount_and_a_fraction_is_refused(hook):
    client, ps = hook
    ps.create_payment("f" * 32, {"phone": "375295222222", "amount": 100, "currency": "BYN"},
                      account="bepaid", due_ms=0)
    url = "/v1/webhooks/bepaid/bepaid"
    note: dict[str, Any] = {"transaction": {"uid": UID, "status": "successful",
                                            "tracking_id": "f" * 32, "currency": "BYN"}}
    # a fraction of a minor unit is no amount: a clear 400, nothing changed
    half = client.post(url, json={"transaction": {**note["transaction"], "amount": 100.5}},
                       headers=AUTH)
    assert half.status_code == 400 and "whole number of minor units" in half.json()["detail"]
    assert half.json()["field"] == "body"
    assert ps.payment("f" * 32)["status"] == "queued"
    # 100.0 (a JSON writer's float) is the amount 100
    r = client.post(url, content=json.dumps({"transaction": {**note["transaction"],
                                                             "amount": 100.0}}),
                    headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json() == {"status": "successful", "changed": True}
    # and 101.0 is another amount than the payment's: 422, as 101 would be
    other = client.post(url, json={"transaction": {**note["transaction"], "amount": 101.0,
                                                   "status": "failed"}}, headers=AUTH)
    assert other.status_code == 422


def test_errors_are_problem_json_like_every_api_answer(hook):
    """The receiver goes through the API's route wrapper: its refusals are problem+json."""
    client, ps = hook
    url = "/v1/webhooks/bepaid/bepaid"
    note = json.dumps({"transaction": {"uid": UID, "status": "failed", "tracking_id": PAY_ID,
                                       "amount": 100, "currency": "BYN"}})
    cases = [
        (client.post(url, content=note), 401, None),
        (client.post("/v1/webhooks/bepaid/nosuch", content=note, headers=AUTH), 404,
         "account"),
        (client.post(url, content=b"{", headers=AUTH), 400, "body"),
        (client.post(url, content=b'{"transaction": 5}', headers=AUTH), 400, "body"),
        (client.post(url, content=b"x" * (64 * 1024 + 1), headers=AUTH), 413, None),
        (client.post(url, content=json.dumps({"transaction": {
            "uid": UID, "status": "failed", "tracking_id": PAY_ID, "amount": 1,
            "currency": "BYN"}}), headers=AUTH), 422, None),
    ]
    for r, status, field in cases:
        assert r.status_code == status, (status, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), r.headers
        body = r.json()
        assert body["status"] == status and body["type"].startswith("urn:gonets:problem:")
        assert body["detail"]
        if field is not None:
            assert body["field"] == field
    assert cases[0][0].headers["www-authenticate"].startswith("Basic")
    assert ps.payment(PAY_ID)["status"] == "successful"


def test_a_bad_options_table_stops_the_receiver_at_start_naming_the_key(
        tmp_path: Path, redis_url: str) -> None:
    # the receiver reads pending_lookup_after_s with the model the producer and worker use:
    # a typo is an error when it starts, never a silent default
    from core.errors import ConfigError

    cfg = tmp_path / "gonets.toml"
    cfg.write_text("""
[accounts.bepaid]
provider = "bepaid"
options = { pending_lookup_after = 30 }
""", encoding="utf-8")
    settings = load_settings({"GONETS_CONFIG": str(cfg), "GONETS_REDIS_URL": redis_url})
    with pytest.raises(ConfigError, match=r"accounts\.bepaid\.options\.pending_lookup_after: "
                                          r"unknown key"):
        make_app(settings)
