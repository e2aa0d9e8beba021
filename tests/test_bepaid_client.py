"""The bePaid client against the sandbox over a real socket: both check formats, payment,
lookups, and the errors it translates; and its parsers, table-driven and property-tested."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.errors import AccountProblem, OutcomeUnknown, Permanent, RetryLater
from core.payments import (
    CheckResult,
    CustomerAnswer,
    PaymentStatus,
    confirm_agreement,
    parse_transaction_envelope,
    parse_transactions,
)
from core.settings import Account
from sandbox import bepaid as bepaid_sandbox
from tests.support import control, shut_down
from workers.providers.bepaid import Bepaid, PaymentRequest, parse_check

SHOP_ID, SECRET = "361", "sandbox-secret-key"


@pytest.fixture
def sandbox() -> Iterator[bepaid_sandbox.BepaidSandbox]:
    app, server = bepaid_sandbox.serve("127.0.0.1", 0, shop_id=SHOP_ID, secret_key=SECRET,
                                       progress_s=0.05)
    app.url = server.urls()[0]  # type: ignore[attr-defined]
    yield app
    app.stop()
    server.stop()


def make_client(url: str, monkeypatch: pytest.MonkeyPatch, *, api_version: int = 2,
                secret: str = SECRET) -> Bepaid:
    monkeypatch.setenv("T_BEPAID_SHOP", SHOP_ID)
    monkeypatch.setenv("T_BEPAID_SECRET", secret)
    acct = Account(name="bp", provider="bepaid", base_urls=[url], timeout_s=1,
                   credentials={"shop_id": "env:T_BEPAID_SHOP",
                                "secret_key": "env:T_BEPAID_SECRET"},
                   options={"api_version": api_version, "test": True})
    return Bepaid(acct)


EXPECTED = {
    "375295222222": CheckResult.ACTIVE,
    "375295111111": CheckResult.MUST_ACCEPT_TERMS,
    "375444111111": CheckResult.INVALID_PHONE,
    "375290000000": CheckResult.ACTIVE,
    "375251234567": CheckResult.NOT_MTS,
}


@pytest.mark.parametrize("version", [2, 3])
def test_check_in_both_api_versions_gives_one_typed_answer(sandbox, monkeypatch, version):
    c = make_client(sandbox.url, monkeypatch, api_version=version)
    try:
        got = {p: c.check(p).result for p in EXPECTED}
    finally:
        c.close()
    assert got == EXPECTED
    sent = [r for r in sandbox.log.items() if r["path"].endswith("/check_service")]
    assert {r["api_version"] for r in sent} == {str(version)}
    # the raw code stays on the check result, whichever reading it got
    c = make_client(sandbox.url, monkeypatch, api_version=version)
    try:
        codes = {p: c.check(p).code for p in ("375295111111", "375251234567")}
    finally:
        c.close()
    assert codes == ({"375295111111": "service_not_activated",
                      "375251234567": "account_not_found"} if version == 2 else
                     {"375295111111": "F.0213", "375251234567": "F.0202"})
    assert all(json.loads(r["body"])["request"]["test"] is True for r in sent)


def test_payment_then_lookups_by_uid_and_tracking_id(sandbox, monkeypatch):
    import time

    c = make_client(sandbox.url, monkeypatch)
    req = PaymentRequest(tracking_id="order-1", amount=1050, currency="BYN",
                         description="Order 1", phone="375295222222",
                         confirm_agreement="already_accepted",
                         return_url="https://shop.example/back")
    tx = c.pay(req)
    assert tx.status is PaymentStatus.PENDING and tx.uid and tx.amount == 1050
    body = json.loads(next(r for r in sandbox.log.items() if r["path"] == "/beyag/payments")
                      ["body"])["request"]
    assert body["method"] == {"type": "mts_money", "confirm_agreement": "already_accepted"}
    assert body["customer"] == {"phone": "375295222222"} and body["amount"] == 1050
    time.sleep(0.2)
    assert c.by_uid(tx.uid).status is PaymentStatus.SUCCESSFUL  # type: ignore[union-attr]
    assert [t.uid for t in c.by_tracking_id("order-1")] == [tx.uid]
    assert c.by_tracking_id("never-sent") == [] and c.by_uid("no-such-uid") is None
    c.close()


def test_errors_are_translated_at_the_boundary(sandbox, monkeypatch):
    c = make_client(sandbox.url, monkeypatch)
    req = PaymentRequest(tracking_id="t", amount=100, currency="BYN", description="d",
                         phone="375295222222", confirm_agreement="accept",
                         return_url="https://shop.example/")
    control(sandbox.url, fail_before_create=1, fail_after_create=1, drop_after_create=1,
            lookup_fail=1)
    for _ in range(3):  # 503, 500, dropped: each may have been created
        with pytest.raises(OutcomeUnknown):
            c.pay(req)
    with pytest.raises(RetryLater):
        c.by_tracking_id("t")
    with pytest.raises(Permanent) as err:
        c.pay(PaymentRequest(**{**req.__dict__, "phone": "375444111111"}))
    assert err.value.rejected and err.value.code == "422"
    c.close()
    bad = make_client(sandbox.url, monkeypatch, secret="wrong")
    with pytest.raises(AccountProblem) as acc:
        bad.check("375295222222")
    assert acc.value.alert == "credentials"
    bad.close()
    unreachable = make_client("http://127.0.0.1:9", monkeypatch)
    with pytest.raises(RetryLater) as nothing_sent:
        unreachable.pay(req)
    assert not isinstance(nothing_sent.value, OutcomeUnknown)
    unreachable.close()


# --- the document's examples, table-driven -------------------------------------------------

DOC_V2 = [
    ({"service_activated": True, "message": "Request successfully processed",
      "validation": {"operator": "mts", "message": "Request successfully processed"}},
     CheckResult.ACTIVE),
    ({"service_activated": False, "message": "Request successfully processed",
      "validation": {"operator": "mts", "message": "Request successfully processed"},
      "error_code": "service_not_activated"}, CheckResult.MUST_ACCEPT_TERMS),
    ({"service_activated": None, "message": None,
      "validation": {"operator": "other", "message": "Request successfully processed"},
      "error_code": "account_not_found"}, CheckResult.NOT_MTS),
    ({"service_activated": None, "message": None, "validation": {"operator": None}},
     CheckResult.INVALID_PHONE),
]
DOC_V3 = [
    ({"code": "S.0000", "status": "successful", "message": "m", "friendly_message": "f"},
     CheckResult.ACTIVE),
    # read by meaning, not by the document's (swapped) captions: F.0213 "Not allowed" is the
    # MTS number without the service, F.0202 "Account ID not found" v2's account_not_found
    ({"code": "F.0213", "status": "failed", "message": "Not allowed", "friendly_message": "f"},
     CheckResult.MUST_ACCEPT_TERMS),
    ({"code": "F.0202", "status": "failed", "message": "Account ID not found",
      "friendly_message": "f"}, CheckResult.NOT_MTS),
    ({"code": "F.9999", "status": "failed", "message": "?", "friendly_message": "f"},
     CheckResult.REFUSED),
]


@pytest.mark.parametrize("body,result", DOC_V2)
def test_v2_examples(body, result):
    assert parse_check(body, 2).result is result


@pytest.mark.parametrize("body,result", DOC_V3)
def test_v3_examples(body, result):
    ans = parse_check(body, 3)
    assert ans.result is result and ans.code == body["code"]


@pytest.mark.parametrize("result,answer,agreement", [
    (CheckResult.ACTIVE, None, "already_accepted"),
    (CheckResult.ACTIVE, CustomerAnswer.DECLINE, "already_accepted"),
    (CheckResult.MUST_ACCEPT_TERMS, CustomerAnswer.ACCEPT, "accept"),
    (CheckResult.MUST_ACCEPT_TERMS, CustomerAnswer.DECLINE, None),
    (CheckResult.MUST_ACCEPT_TERMS, None, None),
    (CheckResult.NOT_MTS, CustomerAnswer.ACCEPT, None),
    (CheckResult.INVALID_PHONE, CustomerAnswer.ACCEPT, None),
])
def test_confirm_agreement_from_check_and_answer(result, answer, agreement):
    assert confirm_agreement(result, answer) == agreement


# --- property tests: any answer is read or refused with ValueError, never a crash ----------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=5),
    max_leaves=20)
check_like = st.fixed_dictionaries({}, optional={
    "service_activated": st.none() | st.booleans() | st.integers(),
    "validation": st.none() | st.integers() | st.fixed_dictionaries({}, optional={
        "operator": st.none() | st.sampled_from(["mts", "other", "x"]) | st.integers()}),
    "error_code": st.none() | st.text(max_size=5) | st.integers(),
    "message": st.none() | st.text(max_size=5) | st.integers(),
    "code": st.none() | st.sampled_from(["S.0000", "F.0202", "F.0213", "F.1"]) | st.integers(),
    "status": st.none() | st.sampled_from(["successful", "failed", "odd"]) | st.integers(),
    "friendly_message": st.none() | st.text(max_size=5),
})
tx_like = st.fixed_dictionaries({}, optional={
    "uid": st.text(max_size=8) | st.integers() | st.none(),
    "status": st.sampled_from(["pending", "successful", "failed", "expired", "error", "odd",
                               ""]) | st.integers(),
    "tracking_id": st.text(max_size=8) | st.none() | st.integers(),
    "amount": st.integers() | st.floats(allow_nan=False) | st.text(max_size=3) | st.none(),
    "currency": st.sampled_from(["BYN", "USD"]) | st.integers() | st.none(),
    "message": st.text(max_size=8) | st.none() | st.lists(st.integers(), max_size=2),
    "payment": json_values,
})


@hsettings(max_examples=150, deadline=None)
@given(body=json_values | check_like, version=st.sampled_from([2, 3]))
def test_any_check_answer_is_read_or_refused(body: Any, version: int):
    try:
        ans = parse_check(body, version)
    except ValueError:
        return
    assert isinstance(ans.result, CheckResult)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tx=json_values | tx_like, wrap=st.sampled_from(["transaction", "transactions", "none"]))
def test_any_transaction_answer_is_read_or_refused(tx: Any, wrap: str):
    body = {"transaction": tx} if wrap == "transaction" else \
        {"transactions": [tx]} if wrap == "transactions" else tx
    for parser in (parse_transaction_envelope, parse_transactions):
        try:
            got = parser(body)
        except ValueError:
            continue
        for t in got if isinstance(got, list) else [got]:
            assert isinstance(t.status, PaymentStatus) and t.uid
            assert t.amount is None or (isinstance(t.amount, int) and t.amount >= 0)


def test_sandbox_notifies_with_basic_auth_and_retries_until_answered(sandbox, monkeypatch):
    import base64
    import time

    from sandbox._http import MultiPortServer, Request, Response

    seen: list[tuple[str, dict[str, Any]]] = []

    def receiver(req: Request) -> Response:
        seen.append((req.headers.get("authorization", ""), json.loads(req.body)))
        return Response(503 if len(seen) < 3 else 200, "")

    with MultiPortServer(receiver) as hook:
        control(sandbox.url, webhook_retry_s=[0.05, 0.05, 0.05])
        c = make_client(sandbox.url, monkeypatch)
        tx = c.pay(PaymentRequest(tracking_id="n-1", amount=500, currency="BYN",
                                  description="d", phone="375290000000",
                                  confirm_agreement="already_accepted",
                                  return_url="https://shop.example/",
                                  notification_url=hook.urls()[0] + "/hook"))
        c.close()
        deadline = time.monotonic() + 10
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
    assert len(seen) == 3  # two failures, then delivered, then no more
    expected = "Basic " + base64.b64encode(f"{SHOP_ID}:{SECRET}".encode()).decode()
    assert {a for a, _ in seen} == {expected}
    note = seen[-1][1]["transaction"]
    assert note["uid"] == tx.uid and note["status"] == "failed"
    assert note["message"] == "Insufficient funds." and note["tracking_id"] == "n-1"


# --- any answer from bePaid (status code and body) becomes a result or a core error ---------

class _Scripted:
    """A server that answers whatever the test sets next (TCP_NODELAY: no Nagle waits)."""

    def __init__(self) -> None:
        import socket
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.status, self.body = 200, b""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *a: Any) -> None:
                pass

            def _serve(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[_Scripted, dict[int, Bepaid]]]:
    import os
    import threading

    app = _Scripted()
    t = threading.Thread(target=app.server.serve_forever, daemon=True)
    t.start()
    os.environ["T_BEPAID_SHOP"], os.environ["T_BEPAID_SECRET"] = SHOP_ID, SECRET
    clients = {}
    for version in (2, 3):
        acct = Account(name="bp", provider="bepaid", base_urls=[app.url], timeout_s=2,
                       credentials={"shop_id": "env:T_BEPAID_SHOP",
                                    "secret_key": "env:T_BEPAID_SECRET"},
                       options={"api_version": version})
        clients[version] = Bepaid(acct)
    yield app, clients
    for c in clients.values():
        c.close()
    shut_down(app.server)
    app.server.server_close()


answer_bodies = st.one_of(
    st.binary(max_size=80),
    st.text(max_size=80).map(lambda t: t.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    check_like.map(lambda v: json.dumps(v).encode()),
    tx_like.map(lambda t: json.dumps({"transaction": t}).encode()),
    tx_like.map(lambda t: json.dumps({"transactions": [t]}).encode()),
)
PAY = PaymentRequest(tracking_id="t", amount=100, currency="BYN", description="d",
                     phone="375295222222", confirm_agreement="accept",
                     return_url="https://shop.example/")


@hsettings(max_examples=100, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(status=st.sampled_from([200, 200, 200, 201, 302, 400, 401, 404, 422, 429, 500, 502]),
       body=answer_bodies, version=st.sampled_from([2, 3]))
def test_any_bepaid_answer_is_a_result_or_a_gonets_error(scripted, status, body, version):
    from core.errors import ProviderError

    app, clients = scripted
    app.status, app.body = status, body
    c = clients[version]
    for call in (lambda: c.check("375295222222"), lambda: c.by_uid("u"),
                 lambda: c.by_tracking_id("t")):
        try:
            call()
        except ProviderError:
            pass
    try:
        tx = c.pay(PAY)
    except OutcomeUnknown:
        assert status >= 500 or status < 400  # unreadable or 5xx: it may have been created
    except ProviderError:
        assert 400 <= status < 500  # refused at the door: surely not created
    else:
        assert status in (200, 201) and tx.uid


@pytest.mark.parametrize("status", [200, 201, 422, 500])
@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"transaction":' * 100_000])
def test_deeply_nested_answers_are_provider_errors_and_a_payment_stays_unknown(
        scripted, status, body):
    from core.errors import ProviderError

    app, clients = scripted
    app.status, app.body = status, body
    c = clients[3]
    for call in (lambda: c.check("375295222222"), lambda: c.by_uid("u"),
                 lambda: c.by_tracking_id("t")):
        with pytest.raises(ProviderError):
            call()
    if status >= 400 and status < 500:
        with pytest.raises(Permanent):  # refused at the door, whatever its body
            c.pay(PAY)
    else:  # it may have been created: look it up by tracking_id before anything else
        with pytest.raises(OutcomeUnknown):
            c.pay(PAY)
