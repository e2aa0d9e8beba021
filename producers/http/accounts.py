"""``GET /v1/accounts``: is each SMS account able to send, and if not, why (scope ``read``).

What a shop's admin panel shows (the 1C-Bitrix module turns it into ``CAdminNotify``
alerts): an account the workers paused after an account problem (no funds, sender name not
registered, forbidden IP, bad credentials) and a balance under the account's
``limits.min_balance``.  Read through ``core.account_state`` from the keys the workers keep
(workers/runtime.py, workers/actors.py ``check_balance``):

    ns:incident:<account>            string  JSON {alert, code, detail, since} while the
                                             account problem lasts (cleared on recovery)
    ns:pause:<account>               string  the same JSON while the pool is paused (expires)
    ns:alert:<account>:low_balance   string  the balance that was under the threshold

Tenant safety: accounts are the operator's, shared by the producers that may send through
them; the answer names each SMS account, its provider type and its alerts (machine name,
the provider's code, a fixed text without personal data) and nothing else: no credentials,
no options, no balances, no counts of anyone's messages.  Payment (bePaid) accounts are left
out: they are not the SMS producers' business.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.routing import Route

from core.account_state import AccountState
from producers.http.framework import Api, Call, Reply

#: alert machine name -> what an admin should do about it (English; the module translates)
ADVICE = {
    "no_funds": "top up the provider account",
    "low_balance": "the balance is under the alert threshold; top up soon",
    "sender": "register the sender name with the provider",
    "credentials": "the provider refuses the account's credentials; check them",
    "ip": "the provider refuses this server's IP address",
    "forbidden": "the provider refuses this server's IP address",
    "service_off": "the provider has switched the service off for this account",
}


def _alert(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(info, dict) or not isinstance(info.get("alert"), str):
        return None
    name = info["alert"]
    out: dict[str, Any] = {"alert": name, "detail": str(info.get("detail") or ""),
                           "advice": ADVICE.get(name, "see the Gonets logs")}
    if info.get("code") is not None:
        out["code"] = str(info["code"])
    since = info.get("since")
    if isinstance(since, (int, float)):
        from producers.http.render import iso

        out["since"] = iso(int(since * 1000))
    return out


class AccountRoutes:
    def __init__(self, api: Api) -> None:
        self.api = api

    def list(self, call: Call) -> Reply:
        accounts = list(self.api.settings.sms_accounts())
        views = AccountState.of(self.api.store).overview([a.name for a in accounts])
        items: list[dict[str, Any]] = []
        for a, view in zip(accounts, views, strict=True):
            alerts = [x for x in [_alert(view.incident)] if x is not None]
            if view.low_balance:
                alerts.append({"alert": "low_balance", "detail": "balance under the threshold",
                               "advice": ADVICE["low_balance"]})
            paused = view.paused_s > 0
            items.append({"name": a.name, "provider": a.provider,
                          "status": "paused" if paused else ("alert" if alerts else "ok"),
                          "alerts": alerts})
        return Reply(200, {"items": items})


def routes(api: Api) -> list[Route]:
    r = AccountRoutes(api)
    return [api.route("/v1/accounts", r.list, methods=["GET"], scope="read",
                      name="list_accounts")]


_ALERT_SCHEMA = {
    "type": "object", "required": ["alert", "detail", "advice"],
    "properties": {
        "alert": {"type": "string", "description": "no_funds, low_balance, sender, "
                                                   "credentials, ip, forbidden, service_off"},
        "code": {"type": "string", "description": "the provider's own code"},
        "detail": {"type": "string"}, "advice": {"type": "string"},
        "since": {"type": "string", "format": "date-time"}}}


def openapi_paths(errors: dict[str, Any]) -> dict[str, Any]:
    return {"/v1/accounts": {"get": {
        "operationId": "listAccounts",
        "summary": "Whether each SMS account can send, and its alerts (no funds, sender "
                   "name, credentials...)",
        "security": [{"bearer": []}],
        "responses": {"200": {"description": "every SMS account", "content": {
            "application/json": {"schema": {
                "type": "object", "required": ["items"], "properties": {"items": {
                    "type": "array", "items": {
                        "type": "object", "required": ["name", "provider", "status", "alerts"],
                        "properties": {
                            "name": {"type": "string"}, "provider": {"type": "string"},
                            "status": {"type": "string", "enum": ["ok", "alert", "paused"]},
                            "alerts": {"type": "array", "items": _ALERT_SCHEMA}}}}}}}}},
            **errors}}}}
