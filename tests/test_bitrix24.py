"""Bitrix24: `gonets bitrix24 install`, the handler the portal posts SMS to, and statuses
reported back to the portal by the callbacks dispatcher.

Real parts: the API under uvicorn, a worker process, the SMSC sandbox, Redis.  The portal and
Bitrix's OAuth server are a stand-in (tests/bitrix24_portal.py) written from the REST
documentation, reached over loopback through a test-only httpx transport."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.contracts import Status
from producers.http import bitrix24_portal as b24
from producers.http.bitrix24 import parse_form
from tests.bitrix24_portal import LoopbackTransport, Portal
from tests.support import control, poll_until, wait_final

DOMAIN = "shop.bitrix24.by"
HANDLER = "/v1/integrations/bitrix24/shop"


@pytest.fixture
def portal(monkeypatch: pytest.MonkeyPatch) -> Iterator[Portal]:
    p = Portal(DOMAIN, "local.5f1e2d3c4b", "s3cr3t-of-the-app")
    monkeypatch.setenv("TEST_B24_CLIENT_ID", p.client_id)
    monkeypatch.setenv("TEST_B24_CLIENT_SECRET", p.client_secret)
    b24.set_transport_for_tests(LoopbackTransport(p.port))
    yield p
    b24.set_transport_for_tests(None)
    p.stop()


@pytest.fixture
def installed(api: Any, portal: Portal, gonets_env: dict[str, str],
              monkeypatch: pytest.MonkeyPatch) -> Portal:
    from cli.main import main
    from core.settings import get_settings

    for k, v in gonets_env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    args = ["bitrix24", "install", "--producer", "shop", "--portal", DOMAIN,
            "--client-id", "env:TEST_B24_CLIENT_ID", "--client-secret",
            "env:TEST_B24_CLIENT_SECRET", "--api-url", "https://sms.example.by"]
    literal = [a if a != "env:TEST_B24_CLIENT_SECRET" else portal.client_secret for a in args]
    assert main([*literal, "--code", "good-code"]) == 2  # a secret is never given as itself
    assert main(args) == 2  # no code yet: it says where to get one
    assert main([*args, "--code", "good-code"]) == 0
    get_settings.cache_clear()
    return portal


def test_install_registers_the_sender_and_keeps_credentials_as_references(
        installed: Portal, store: Any) -> None:
    code = b24.sender_code("shop")
    assert installed.senders[code] == {"HANDLER": "https://sms.example.by" + HANDLER,
                                       "NAME": "Gonets SMS", "TYPE": "SMS"}
    stored = store.r.hgetall(store.key("b24", "shop"))
    assert stored["client_id"] == "env:TEST_B24_CLIENT_ID"
    assert stored["client_secret"] == "env:TEST_B24_CLIENT_SECRET"
    assert installed.client_secret not in stored.values()
    assert stored["portal"] == DOMAIN and stored["member_id"] == installed.member_id


def test_statuses_reach_the_portal_in_order_once_each_across_expired_tokens_and_5xx(
        api: Any, installed: Portal, store: Any, smsc: Any, api_settings: Any,
        start_worker: Any) -> None:
    from producers.http.callbacks import Backoff, Dispatcher

    # the sandbox's final state per number: delivered, failed (20), expired (3), rejected (22)
    phones = {"delivered": "375297000001", "failed": "375297000002",
              "expired": "375297000003", "rejected": "375297000004"}
    control(smsc.urls[0], final_status={phones["failed"]: [20, 0], phones["expired"]: [3, 0],
                                        phones["rejected"]: [22, 0]})
    ids: dict[str, str] = {}
    with httpx.Client(base_url=api.url, timeout=30) as c:
        # before any token is bound: a forged one with an access token the portal does not
        # know is refused (and binds nothing)
        r = c.post(HANDLER, data=installed.message_form("99", "+" + phones["delivered"], "x",
                                                        application_token="forged" * 4,
                                                        access_token="f" * 32))
        assert r.status_code == 401, r.text
        for gonets_status, phone in phones.items():
            r = c.post(HANDLER, data=installed.message_form(f"b24-{gonets_status}", "+" + phone,
                                                            f"Order {gonets_status} shipped"))
            assert r.status_code == 200, r.text
            ids[gonets_status] = r.json()["id"]
        # the portal posting the same message again gets the same id, not a second SMS
        again = c.post(HANDLER, data=installed.message_form("b24-delivered",
                                                            "+" + phones["delivered"],
                                                            "Order delivered shipped"))
        assert again.json()["id"] == ids["delivered"]
        r = c.post(HANDLER, data=installed.message_form("100", "+375297000009", "x",
                                                        domain="evil.example.com"))
        assert r.status_code == 401
        r = c.post(HANDLER, data=installed.message_form("101", "+375297000009", "x",
                                                        application_token="0" * 32))
        assert r.status_code == 401
        assert c.post("/v1/integrations/bitrix24/nobody",
                      data=installed.message_form("1", "+375297000009", "x")).status_code == 404
        # a number Gonets refuses: 422, and the portal hears at once that it failed
        r = c.post(HANDLER, data=installed.message_form("b24-bad", "+3752", "x"))
        assert r.status_code == 422 and r.json()["field"] == "to"
        assert installed.statuses("b24-bad") == ["failed"]
        assert c.post(HANDLER, content=b"message_id=1&auth[application_token]=" +
                      installed.application_token.encode(),
                      headers={"Content-Type": "application/x-www-form-urlencoded"}
                      ).status_code == 422
    start_worker(threads=4)
    finals = wait_final(store, list(ids.values()))
    assert {k: finals[v] for k, v in ids.items()} == {k: k for k in ids}
    assert len(smsc.messages) == 4  # the repeated post sent nothing

    # the portal is down twice, then the token has expired: renewed, and nothing repeats
    installed.fail_next(2)
    installed.expire_token()
    d = Dispatcher(api_settings, backoff=Backoff(first_s=0.05, max_s=0.3), threads=4)
    t = d.start_thread()
    want = {"delivered": ["queued", "sent", "delivered"],
            "failed": ["queued", "sent", "undelivered"],
            "expired": ["queued", "sent", "undelivered"],
            "rejected": ["queued", "sent", "failed"]}
    try:
        poll_until(lambda: all(len(installed.statuses(f"b24-{k}")) >= 3 for k in want), 60,
                 "statuses at the portal")
        # a repeated event (a resubmission's second "submitted") is not reported again
        assert d.bitrix24.deliver("shop", "b24-delivered", ids["delivered"], "submitted") \
            == (True, "reported already")
    finally:
        d.stop()
        t.join(10)
    for k, statuses in want.items():
        assert installed.statuses(f"b24-{k}") == statuses, k
    assert installed.refreshes == 1
    assert "messageservice.message.status.update" in installed.calls


def test_the_portal_is_only_ever_called_over_https() -> None:
    p = b24.Portal.__new__(b24.Portal)
    assert p.rest_url("shop.bitrix24.by", "x.y") == "https://shop.bitrix24.by/rest/x.y.json"
    assert b24.OAUTH_URL.startswith("https://")
    assert b24.http_client()._transport is not None  # httpx's own, not a test's
    assert b24._transport is None


@pytest.mark.parametrize("status,expected", [
    (Status.QUEUED, "queued"), (Status.SUBMITTED, "sent"), (Status.DELIVERED, "delivered"),
    (Status.FAILED, "undelivered"), (Status.EXPIRED, "undelivered"),
    (Status.REJECTED, "failed"), (Status.DEFERRED, None), (Status.UNKNOWN, None)])
def test_status_table(status: Status, expected: str | None) -> None:
    assert b24.STATUS_MAP[status] == expected


def test_form_parser_nests_php_style_keys_and_refuses_garbage() -> None:
    got = parse_form(b"message_id=7&auth%5Bdomain%5D=a.b&auth[member_id]=m&x[y][z]=1")
    assert got == {"message_id": "7", "auth": {"domain": "a.b", "member_id": "m"},
                   "x": {"y": {"z": "1"}}}
    from core.errors import InvalidInput

    with pytest.raises(InvalidInput):
        parse_form(b"\xff\xfe")


@hsettings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_form_parser_raises_only_its_declared_error(body: bytes) -> None:
    from core.errors import InvalidInput

    try:
        got = parse_form(body)
    except InvalidInput:
        return
    assert isinstance(got, dict)


@hsettings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=5))
def test_portal_answers_of_any_shape_are_portal_errors_or_results(answer: dict[str, str]) -> None:
    for status in (200, 400, 401, 502):
        resp = httpx.Response(status, json=answer)
        try:
            got = b24._answer(resp)
        except b24.PortalError as exc:
            assert exc.retry == (status >= 500)
            continue
        assert status == 200 and isinstance(got, dict)
