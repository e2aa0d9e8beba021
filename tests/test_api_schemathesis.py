"""schemathesis against the served OpenAPI document: no 5xx, and every answer has a documented
status code, content type, headers and body shape — for generated valid and invalid input.

The schema is loaded from the checked-in openapi.json, which test_api.py proves equal to the
one the app serves (schemathesis' lazy fixture loader does not work under pytest 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from producers.http.auth import SCOPES

ROOT = Path(__file__).resolve().parent.parent
schema = schemathesis.openapi.from_path(ROOT / "openapi.json")


@pytest.fixture
def token(tokens):
    """Every scope, so each operation is exercised beyond its 403."""
    return tokens.create("shop", SCOPES)


@pytest.fixture
def seeded(api, token, store):
    """A few messages of this producer, so lists have items whose shape is checked."""
    import httpx

    with httpx.Client(base_url=api.url,
                      headers={"Authorization": f"Bearer {token.token}"}) as c:
        ids = [c.post("/v1/sms", json={"to": f"+37529500000{i}", "text": f"seed {i}",
                                       "validity": 10, "callback_url": "https://shop.example/x"}
                      ).json()["id"] for i in range(3)]
    store.transition(ids[0], "submitted", provider_status="0")
    store.transition(ids[0], "failed", provider_status="20", error_code="13", reason="blocked")
    return ids


@schema.parametrize()
@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_answers_as_documented(case, api, token, seeded):
    case.call_and_validate(
        base_url=api.url, headers={"Authorization": f"Bearer {token.token}"}, timeout=30,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                response_headers_conformance, response_schema_conformance])
