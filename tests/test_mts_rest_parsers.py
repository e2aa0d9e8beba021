"""MTS SMS Pro answers, table-driven; arbitrary bodies never crash the reader nor lose a
message (the real provider, over a real socket, turns them into errors that keep it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.contracts import Status
from core.errors import AccountProblem, OutcomeUnknown, Permanent, ProviderError, SlowDown
from sandbox._http import MultiPortServer, Request, Response
from workers.providers.base import Outgoing, ProviderContext
from workers.providers.mts_rest import (
    SEND_ERRORS,
    MtsRest,
    parse_send_answer,
    parse_status_answer,
    send_error,
    status_report,
)

# (body, message_id, error_code)
SEND_ANSWERS = [
    ('{"messages": [{"message_id": "a1", "phone": "375291234567", "status": "ACCEPTED"}]}',
     "a1", None),
    ('{"message_id": "a2", "status": "ACCEPTED"}', "a2", None),
    ('[{"id": 17}]', "17", None),
    ('{"messages": [{"message_id": null, "status": "ERROR", "error_code": 5, '
     '"error_message": "Limit exceeded"}]}', None, "5"),
    ('{"status": "ERROR", "code": "10"}', None, "10"),
    ('{"error": {"code": 20, "message": "Insufficient funds"}}', None, "20"),
    ('{"messages": [{"status": "REJECTED"}]}', None, "unknown"),
    ('{"messages": [{"message_id": "a3", "error_code": 0}]}', "a3", None),
    # liberal reading: success written with an HTTP-like code or a word
    ('{"code": 200, "message_id": "7"}', "7", None),
    ('{"code": "OK", "id": "7"}', "7", None),
    ('{"code": "QUEUED", "message_id": "8"}', "8", None),  # an id: MTS took it; polls tell
    # a code is a number however it is spelled
    ('{"status": "ERROR", "error_code": "005"}', None, "5"),
    ('{"code": 5.0}', None, "5"),
    ('{"code": "5.0", "message": "Limit exceeded"}', None, "5"),
    ('{"error_code": " 020 "}', None, "20"),
    ('{"error_code": 99}', None, "99"),  # named as an error: kept raw, fails
]


@pytest.mark.parametrize("body,msg_id,code", SEND_ANSWERS)
def test_send_answers(body, msg_id, code):
    ans = parse_send_answer(body)
    assert (ans.message_id, ans.error_code) == (msg_id, code)


@pytest.mark.parametrize("body", ["", "{}", "[]", '{"messages": []}', "<html>502</html>",
                                  '{"messages": [{"status": "ACCEPTED"}]}', "null", "42",
                                  '{"code": 99}', '{"code": "WEIRD"}', '{"code": 1e400}',
                                  "[" * 100_000, '{"a":' * 100_000])
def test_unreadable_send_answers_are_value_errors(body):
    # what cannot be classified is a ValueError, which the provider turns into an unknown
    # outcome that keeps the message (never a failure, never a RecursionError)
    with pytest.raises(ValueError):
        parse_send_answer(body)


@pytest.mark.parametrize("body", ["[" * 100_000, '{"status":' * 100_000])
def test_deeply_nested_status_answers_are_value_errors(body):
    with pytest.raises(ValueError):
        parse_status_answer(body)


# code -> (class, alert, rejected): the and the document's actions
EXPECTED = {"1": (Permanent, None, True), "5": (SlowDown, None, False),
            "10": (Permanent, "sender", False), "20": (AccountProblem, "no_funds", False)}


def test_every_documented_code_has_an_action():
    assert set(EXPECTED) == set(SEND_ERRORS)


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_error_code_actions(code):
    cls, alert, rejected = EXPECTED[code]
    exc = send_error(parse_send_answer(json.dumps({"status": "ERROR", "error_code": code})),
                     slow_down_delay_s=7.0)
    assert type(exc) is cls and exc.code == code
    assert getattr(exc, "alert", None) == alert
    assert getattr(exc, "rejected", False) == rejected
    if cls is SlowDown:
        assert exc.delay_s == 7.0


def test_unknown_code_is_kept_raw_and_permanent_without_personal_data():
    exc = send_error(parse_send_answer(
        '{"status": "ERROR", "error_code": 99, "error_message": "bad 375291234567"}'), 1.0)
    assert isinstance(exc, Permanent) and exc.code == "99" and not exc.rejected
    assert "375291234567" not in str(exc)


@pytest.mark.parametrize("body,status,final", [
    ('{"message_id": "a", "status": "DELIVERED"}', Status.DELIVERED, True),
    ('{"status": "EXPIRED"}', Status.EXPIRED, True),
    ('{"status": "REJECTED"}', Status.REJECTED, True),
    ('{"status": "UNKNOWN"}', Status.SUBMITTED, False),
    ('{"status": "unknown"}', Status.SUBMITTED, False),
    ('{"status": "SOMETHING_NEW"}', Status.SUBMITTED, False),
])
def test_statuses(body, status, final):
    state = parse_status_answer(body)
    rep = status_report(state)
    assert rep.status == status and rep.status.final is final and rep.raw == state.upper()


@hsettings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_readers_never_crash_on_text(body):
    for fn in (parse_send_answer, parse_status_answer):
        try:
            fn(body)
        except ValueError:
            pass


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats()
                     | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=3)
                     | st.dictionaries(st.sampled_from(["messages", "message_id", "id", "status",
                                                        "error_code", "code", "error",
                                                        "error_message", "x"]), c, max_size=4),
                     max_leaves=12)


@hsettings(max_examples=300, deadline=None)
@given(_json)
def test_readers_never_crash_on_json(data):
    body = json.dumps(data)
    for fn in (parse_send_answer, parse_status_answer):
        try:
            fn(body)
        except ValueError:
            pass


# --- arbitrary bodies over a real socket, through the real provider -----------------------


class Canned:
    """A stand-in MTS that issues tokens and answers sends with whatever body is set."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200

    def __call__(self, req: Request) -> Response:
        if req.path == "/oauth/token":
            return Response.json({"access_token": "t", "expires_in": 3600})
        return Response(self.status, self.body, "application/json")


@pytest.fixture(scope="module")
def canned() -> Iterator[Any]:
    app = Canned()
    server = MultiPortServer(app).start()
    app.url = server.urls()[0]  # type: ignore[attr-defined]
    yield app
    server.stop()


def test_any_answer_is_an_error_of_the_tree_or_a_submit(canned, settings, store, monkeypatch):
    from core.settings import Account

    monkeypatch.setenv("T_ID", "canned")
    monkeypatch.setenv("T_SECRET", "x")
    acct = Account(name="m", provider="mts_rest", base_urls=[canned.url],
                   credentials={"client_id": "env:T_ID", "client_secret": "env:T_SECRET"})
    p = MtsRest(acct, ProviderContext(settings, store.r))

    @hsettings(max_examples=40, deadline=None)
    @given(body=st.one_of(st.binary(max_size=200), _json.map(lambda d: json.dumps(d).encode())),
           http=st.sampled_from([200, 200, 200, 400, 429, 500, 503]))
    def check(body: bytes, http: int) -> None:
        canned.body, canned.status = body, http
        try:
            sub = p.send(Outgoing(id="x", seq=1, phone="375291234567", text="t", sender=None,
                                  parts=1, encoding="gsm7"))
            assert sub.provider_id
        except ProviderError as exc:
            if http == 200:
                try:
                    ans = parse_send_answer(body.decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    # unreadable: the message is kept and tried again, never failed
                    assert isinstance(exc, OutcomeUnknown), exc
                else:
                    assert ans.error_code is not None

    try:
        check()
    finally:
        p.close()


@pytest.mark.parametrize("body", ['{"code": 99}', "[" * 100_000])
def test_an_unclassifiable_send_answer_over_a_socket_is_an_unknown_outcome(
        body, canned, settings, store, monkeypatch):
    from core.settings import Account

    monkeypatch.setenv("T_ID", "canned")
    monkeypatch.setenv("T_SECRET", "x")
    acct = Account(name="m", provider="mts_rest", base_urls=[canned.url],
                   credentials={"client_id": "env:T_ID", "client_secret": "env:T_SECRET"})
    p = MtsRest(acct, ProviderContext(settings, store.r))
    canned.body, canned.status = body.encode(), 200
    try:
        with pytest.raises(OutcomeUnknown):
            p.send(Outgoing(id="x", seq=1, phone="375291234567", text="t", sender=None,
                            parts=1, encoding="gsm7"))
    finally:
        p.close()
