"""``GET /v1/accounts``: account alerts a shop's admin panel shows (the 1C-Bitrix module)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support import control, poll_until


def test_an_account_out_of_funds_shows_as_paused_with_its_alert(
        api: Any, client: httpx.Client, tokens: Any, smsc: Any, start_worker: Any) -> None:
    got = client.get("/v1/accounts")
    assert got.status_code == 200, got.text
    assert got.json() == {"items": [{"name": "smsc", "provider": "smsc_http", "status": "ok",
                                     "alerts": []}]}
    control(smsc.urls[0], force_error={"send": [3, 1000]})  # SMSC 3: insufficient funds
    start_worker(threads=1)
    assert client.post("/v1/sms", json={"to": "+375291112233", "text": "funds?"}
                       ).status_code == 202

    def paused() -> bool:
        return bool(client.get("/v1/accounts").json()["items"][0]["alerts"])

    poll_until(paused, 30, "the no-funds alert")
    item = client.get("/v1/accounts").json()["items"][0]
    assert item["status"] == "paused"
    [alert] = item["alerts"]
    assert alert["alert"] == "no_funds" and alert["code"] == "3"
    assert alert["advice"] == "top up the provider account" and alert["since"].endswith("Z")
    raw = json.dumps(item)
    assert "env:" not in raw and "TEST_SMSC" not in raw and "375291112233" not in raw


def test_accounts_need_a_token_with_the_read_scope(api: Any, tokens: Any) -> None:
    consent_only = tokens.create("crm", "consent")
    with httpx.Client(base_url=api.url) as c:
        assert c.get("/v1/accounts").status_code == 401
        r = c.get("/v1/accounts", headers={"Authorization": f"Bearer {consent_only.token}"})
        assert r.status_code == 403 and r.json()["field"] == "scope"
