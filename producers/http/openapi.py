"""The OpenAPI 3.1 document of the HTTP API, built from the pydantic models in ``models.py``.

Served at ``/openapi.json`` and checked into the repository as ``openapi.json`` (a test fails
when they differ; ``python -m producers.http.openapi > openapi.json`` rewrites it).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from producers.http import models as m

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
ERRORS = {
    400: "malformed request: the body is not JSON, or a header is bad",
    401: "no token, or an unknown or revoked one",
    403: "the token lacks the scope of this call",
    404: "not found (or another producer's)",
    409: "the Idempotency-Key was used with a different body, or is still in progress",
    413: "the body is over this call's size limit",
    415: "the body is not application/json",
    422: "invalid input; `field` names what is wrong",
    503: "the store (Redis) is unavailable; retry",
}
IDEMPOTENCY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "the same key and body within 24 h give the same answer (with "
                   "`Idempotent-Replayed: true`); the same key with another body gives 409",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": ERRORS[c], "content": PROBLEM} for c in codes}


def _json(ref: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, **extra,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _body(ref: str) -> dict[str, Any]:
    return {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def document() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(x, "validation") for x in (m.SmsIn, m.BatchIn, m.ConsentIn)]
        + [(x, "serialization") for x in (m.Accepted, m.BatchOut, m.SmsOut, m.SmsPage,
                                          m.ConsentOut, m.Problem)],
        ref_template="#/components/schemas/{model}")
    schemas = defs.get("$defs", {})
    send_errors = _errors(400, 401, 403, 409, 413, 415, 422, 503)
    paths: dict[str, Any] = {
        "/v1/sms": {
            "post": {
                "operationId": "sendSms", "summary": "Queue one SMS",
                "security": BEARER, "parameters": [IDEMPOTENCY],
                "requestBody": _body("SmsIn"),
                "responses": {"202": _json("Accepted", "queued", headers={
                    "Location": {"schema": {"type": "string"},
                                 "description": "where its status is"},
                    "Gonets-Duplicate-Of": {
                        "schema": {"type": "string"},
                        "description": "present when nothing new was queued: this producer "
                        "sent the same number, sender and text within the duplicate window "
                        "(or the same idempotency_key); the id of that first message, which "
                        "the body carries"}}), **send_errors},
            },
            "get": {
                "operationId": "listSms", "summary": "This producer's messages, oldest first, "
                "paged",
                "security": BEARER,
                "parameters": [
                    {"name": "status", "in": "query", "required": False, "schema": {
                        "type": "string", "enum": ["queued", "deferred", "submitted",
                                                   "delivered", "failed", "expired",
                                                   "rejected", "unknown"]}},
                    {"name": "account", "in": "query", "required": False,
                     "schema": {"type": "string", "maxLength": 40}},
                    {"name": "since", "in": "query", "required": False,
                     "description": "created at or after (ISO 8601)",
                     "schema": {"type": "string", "format": "date-time"}},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                "default": 100}},
                    {"name": "cursor", "in": "query", "required": False,
                     "description": "next_cursor of the previous page",
                     "schema": {"type": "string", "maxLength": 200}},
                ],
                "responses": {"200": _json("SmsPage", "a page"),
                              **_errors(401, 403, 422, 503)},
            },
        },
        "/v1/sms/batch": {
            "post": {
                "operationId": "sendSmsBatch",
                "summary": f"Queue up to {m.MAX_BATCH} SMS; each item is validated on its own "
                           "and the valid ones are queued even if others are not",
                "security": BEARER, "parameters": [IDEMPOTENCY],
                "requestBody": _body("BatchIn"),
                "responses": {"200": _json("BatchOut", "an id or an error for each item"),
                              **send_errors},
            },
        },
        "/v1/sms/{id}": {
            "get": {
                "operationId": "getSms", "summary": "One message and its status history",
                "security": BEARER,
                "parameters": [{"name": "id", "in": "path", "required": True,
                                "schema": {"type": "string", "maxLength": 64}}],
                "responses": {"200": _json("SmsOut", "the message"),
                              **_errors(401, 403, 404, 503)},
            },
        },
        "/v1/webhooks/smsc/{account}/{secret}": {
            "post": {
                "operationId": "smscCallback",
                "summary": "SMSC's status callback (the secret in the URL authenticates it)",
                "security": [],
                "parameters": [
                    {"name": "account", "in": "path", "required": True,
                     "schema": {"type": "string"}},
                    {"name": "secret", "in": "path", "required": True,
                     "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {
                    "application/x-www-form-urlencoded": {"schema": {
                        "type": "object",
                        "properties": {"id": {"type": "string"}, "phone": {"type": "string"},
                                       "status": {"type": "string"},
                                       "err": {"type": "string"}},
                        "required": ["id", "status"]}}}},
                "responses": {"200": {"description": "taken", "content": {
                    "text/plain": {"schema": {"type": "string"}}}},
                    **_errors(404, 413, 422, 503)},
            },
        },
        "/v1/webhooks/bepaid/{account}": {
            "post": {
                "operationId": "bepaidNotification",
                "summary": "bePaid's payment notification (HTTP Basic: the account's shop id "
                           "and secret key)",
                "security": [{"bepaidShop": []}],
                "parameters": [{"name": "account", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["transaction"],
                    "properties": {"transaction": {"type": "object"}}}}}},
                "responses": {"200": {"description": "applied (or ignored: a payment Gonets "
                                                     "does not know)",
                                      "content": {"application/json": {"schema": {
                                          "type": "object",
                                          "properties": {
                                              "status": {"type": ["string", "null"]},
                                              "changed": {"type": "boolean"},
                                              "reason": {"type": "string"}}}}}},
                              **_errors(400, 401, 404, 413, 422, 503)},
            },
        },
        "/v1/consents/{phone}": {
            "parameters": [{"name": "phone", "in": "path", "required": True,
                            "schema": {"type": "string", "maxLength": 32},
                            "description": "the subscriber's number, e.g. +375291234567"}],
            "put": {
                "operationId": "grantConsent",
                "summary": "Record the subscriber's opt-in to promotional SMS",
                "security": BEARER, "requestBody": _body("ConsentIn"),
                "responses": {"200": _json("ConsentOut", "the consent and its history"),
                              **_errors(400, 401, 403, 413, 415, 422, 503)},
            },
            "delete": {
                "operationId": "withdrawConsent",
                "summary": "Record the subscriber's opt-out (source in the body or ?source=)",
                "security": BEARER,
                "parameters": [{"name": "source", "in": "query", "required": False,
                                "schema": {"type": "string", "maxLength": 200}}],
                "requestBody": {"required": False, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ConsentIn"}}}},
                "responses": {"200": _json("ConsentOut", "the consent and its history"),
                              **_errors(400, 401, 403, 413, 415, 422, 503)},
            },
            "get": {
                "operationId": "getConsent", "summary": "The subscriber's consent",
                "security": BEARER,
                "responses": {"200": _json("ConsentOut", "the consent and its history"),
                              **_errors(401, 403, 404, 422, 503)},
            },
        },
        "/healthz": {
            "get": {
                "operationId": "health", "summary": "Is the API up and Redis reachable",
                "security": [],
                "responses": {"200": {"description": "up", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}},
                               "required": ["ok"]}}}},
                    **_errors(503)},
            },
        },
    }
    from producers.http import accounts, bitrix24

    paths.update(accounts.openapi_paths(_errors(401, 403, 503)))
    paths.update(bitrix24.openapi_paths(_errors(400, 401, 404, 413, 422, 503)))
    paths.update(_payment_paths())
    _, pay_defs = models_json_schema(
        [(m.CheckIn, "validation"), (m.PaymentIn, "validation"),
         (m.CheckOut, "serialization"), (m.PaymentOut, "serialization")],
        ref_template="#/components/schemas/{model}")
    schemas.update(pay_defs.get("$defs", {}))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Gonets HTTP API", "version": "1",
            "description": "Queue SMS, follow their status, receive status callbacks. Every "
                           "call carries `Authorization: Bearer <token>` (`gonets token "
                           "create`); errors are application/problem+json naming the field. "
                           "Callbacks are POSTed to `callback_url` with `X-Gonets-Signature: "
                           "sha256=<hex HMAC-SHA256 of the body with the producer's secret>`.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "gnt_<id>_<secret>"},
                                "bepaidShop": {"type": "http", "scheme": "basic",
                                               "description": "bePaid's shop id and secret key "
                                                              "of the account"}},
        },
    }


def _payment_paths() -> dict[str, Any]:
    pay_id = [{"name": "id", "in": "path", "required": True,
               "schema": {"type": "string", "maxLength": 64}}]
    return {
        "/v1/payments/mts-money/check": {
            "post": {
                "operationId": "checkMtsMoney",
                "summary": "Check whether the number can pay with MTS Money (queued; wait_s "
                           "waits for the result)",
                "security": BEARER, "requestBody": _body("CheckIn"),
                "responses": {"200": _json("CheckOut", "finished within wait_s"),
                              "202": _json("CheckOut", "queued; GET it later"),
                              **_errors(400, 401, 403, 413, 415, 422, 503)},
            },
        },
        "/v1/payments/mts-money/check/{id}": {
            "get": {
                "operationId": "getMtsMoneyCheck", "summary": "A check and its result",
                "security": BEARER, "parameters": pay_id,
                "responses": {"200": _json("CheckOut", "the check"),
                              **_errors(401, 403, 404, 503)},
            },
        },
        "/v1/payments/mts-money": {
            "post": {
                "operationId": "payMtsMoney", "summary": "Queue an MTS Money payment",
                "security": BEARER, "parameters": [IDEMPOTENCY],
                "requestBody": _body("PaymentIn"),
                "responses": {"202": _json("Accepted", "queued", headers={
                    "Location": {"schema": {"type": "string"},
                                 "description": "where its status is"}}),
                    **_errors(400, 401, 403, 404, 409, 413, 415, 422, 503)},
            },
        },
        "/v1/payments/{id}": {
            "get": {
                "operationId": "getPayment", "summary": "A payment and its status history",
                "security": BEARER, "parameters": pay_id,
                "responses": {"200": _json("PaymentOut", "the payment"),
                              **_errors(401, 403, 404, 503)},
            },
        },
    }


def dumps() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(dumps(), end="")
