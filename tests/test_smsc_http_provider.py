"""The SMSC HTTP provider against the SMSC sandbox over real sockets, and its parsers."""

from __future__ import annotations

import functools
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.contracts import Status
from core.errors import AccountProblem, OutcomeUnknown, Permanent, ProviderError, RetryLater
from core.settings import Account
from core.smsc_status import STATUS_MAP
from tests.support import control
from workers.providers.base import Outgoing
from workers.providers.smsc_http import SmscHttp, Unreadable, money, parse_answer


def account(urls, fmt=1, **creds):
    creds = creds or {"login": "env:TEST_SMSC_LOGIN", "password": "env:TEST_SMSC_PASSWORD"}
    return Account(name="smsc", provider="smsc_http", base_urls=urls, credentials=creds,
                   timeout_s=2, options={"fmt": fmt})


def msg(seq=1, phone="375291234567", text="Hello", **kw):
    return Outgoing(id=f"m{seq}", seq=seq, phone=phone, text=text, sender="Gonets", parts=1,
                    encoding="gsm7", **kw)


@pytest.fixture(autouse=True)
def creds(monkeypatch):
    monkeypatch.setenv("TEST_SMSC_LOGIN", "gonets")
    monkeypatch.setenv("TEST_SMSC_PASSWORD", "sandbox")
    monkeypatch.setenv("TEST_SMSC_KEY", "sandbox-key")


@pytest.mark.parametrize("fmt", [1, 3])
def test_send_status_cost_balance_in_both_formats(smsc, fmt) -> None:
    p = SmscHttp(account(smsc.urls, fmt))
    sub = p.send(msg(7, validity_min=10, options={"translit": 1, "maxsms": 3}))
    assert sub.provider_id == "7" and sub.parts == 1 and sub.cost == "1.50"
    assert Decimal(sub.balance) == Decimal("998.50")
    sent = smsc.log.items()[-1]["params"]
    assert sent["valid"] == "00:10" and sent["translit"] == "1" and sent["maxsms"] == "3"
    assert sent["psw"] == "***"  # the sandbox log masks it; it was sent
    assert p.status(msg(7)).status in (Status.SUBMITTED, Status.DELIVERED)
    cost, cnt = p.cost(msg(8, text="П" * 71))
    assert (cost, cnt) == (Decimal("3.00"), 2)
    assert p.balance().amount == Decimal("998.50")
    p.close()


def test_api_key_instead_of_login(smsc) -> None:
    p = SmscHttp(account(smsc.urls, apikey="env:TEST_SMSC_KEY"))
    assert p.send(msg(3)).provider_id == "3"
    assert "apikey" in smsc.log.items()[-1]["params"]


def test_hlr_status_carries_hlr_fields(smsc) -> None:
    control(smsc.urls[0], progress_s=[0, 0])
    p = SmscHttp(account(smsc.urls))
    p.send(msg(11, text="", options={"format": "hlr"}))
    assert smsc.log.items()[-1]["params"]["hlr"] == "1"
    rep = p.status(msg(11))
    assert rep.status == Status.DELIVERED
    assert rep.extra["mcc"] == "257" and rep.extra["imsi"].startswith("25702")


@pytest.mark.parametrize("setup, exc, code", [
    ({"balance": 0}, AccountProblem, "3"),
    ({"phone_error": {"375291234567": 7}}, Permanent, "7"),
    ({"force_error": {"send": [4, 1]}}, RetryLater, "4"),
    ({"force_error": {"send": [6, 1]}}, Permanent, "6"),
])
def test_error_codes_map_into_the_error_tree(smsc, setup, exc, code) -> None:
    control(smsc.urls[0], **setup)
    with pytest.raises(exc) as e:
        SmscHttp(account(smsc.urls)).send(msg(5))
    assert e.value.code == code


def test_bad_credentials_are_an_account_problem(smsc, monkeypatch) -> None:
    monkeypatch.setenv("TEST_SMSC_PASSWORD", "wrong")
    with pytest.raises(AccountProblem) as e:
        SmscHttp(account(smsc.urls)).send(msg(5))
    assert e.value.alert == "credentials"


@pytest.mark.parametrize("mode", ["accept_then_503", "accept_then_drop"])
def test_lost_answer_is_looked_up_on_the_fallback_not_resent(smsc, mode) -> None:
    # the primary takes the message, then the answer is lost (5xx, or the link drops)
    control(smsc.urls[0], down=[0], down_mode=mode)
    p = SmscHttp(account(smsc.urls))
    assert p.send(msg(21)).provider_id == "21"
    assert smsc.counters["accepted"] == 1  # sent once, not twice
    fallback = [r["path"] for r in smsc.log.items() if r["listener"] == 1]
    assert fallback == ["/sys/status.php"]


def test_primary_not_answering_at_all_sends_on_the_fallback(smsc) -> None:
    control(smsc.urls[0], down=[0], down_mode="503")
    p = SmscHttp(account(smsc.urls))
    assert p.send(msg(22)).provider_id == "22"
    fallback = [r["path"] for r in smsc.log.items() if r["listener"] == 1]
    assert fallback == ["/sys/status.php", "/sys/send.php"]
    assert smsc.counters["accepted"] == 1


def test_every_server_down_is_retry_later(smsc) -> None:
    control(smsc.urls[0], down=[0, 1], down_mode="drop")
    with pytest.raises(OutcomeUnknown):
        SmscHttp(account(smsc.urls)).send(msg(9))
    with pytest.raises(RetryLater):
        SmscHttp(account(["http://127.0.0.1:9"])).send(msg(9))


@functools.cache
def reader(fmt: int) -> SmscHttp:
    """A provider to read answers with (never sends: building one per example costs ~0.2 s)."""
    return SmscHttp(account(["http://127.0.0.1:9"], fmt))


@given(st.text(max_size=200), st.sampled_from([1, 3]))
@hsettings(max_examples=300, deadline=None)
def test_answer_parser_fails_only_with_its_own_error(body: str, fmt: int) -> None:
    try:
        parse_answer(body, fmt)
    except Unreadable:
        pass


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(
                         st.sampled_from(["id", "cnt", "cost", "balance", "status", "err",
                                          "error", "error_code", "currency", "mcc", "x"]),
                         c, max_size=5), max_leaves=10)


@given(_json)
@hsettings(max_examples=300, deadline=None)
def test_any_json_answer_is_read_or_a_provider_error(data: object) -> None:
    p = reader(3)
    for read in (lambda a: p._submitted(a, msg(1)), p._status_answer):
        try:
            read(parse_answer(json.dumps(data), 3))
        except (Unreadable, ProviderError):
            pass


@pytest.mark.parametrize("body", ['{"error_code": null}', "[1]", "{}", '{"error": "x"}',
                                  '{"error_code": "\u00b2"}', '{"error_code": [1]}',
                                  '{"id": 1e400}', "[" * 100_000, '{"a":' * 100_000])
def test_odd_json_answers_are_unreadable_or_kept_not_type_errors(body: str) -> None:
    p = reader(3)
    try:
        ans = parse_answer(body, 3)
    except Unreadable:
        return
    with pytest.raises(ProviderError):
        p._submitted(ans, msg(1))
    with pytest.raises(ProviderError):
        p._status_answer(ans)


@pytest.mark.parametrize("body", ['{"error_code": null}', "[1]", "[" * 100_000])
def test_an_unreadable_send_answer_is_looked_up_not_a_crash(smsc, body: str) -> None:
    # taken by the first server, answered with something unreadable: the next server is asked
    # whether it has the message before anything is sent again
    control(smsc.urls[0], raw_answer={"send": [body, 1]})
    p = SmscHttp(account(smsc.urls, fmt=3))
    assert p.send(msg(31)).provider_id == "31"
    assert smsc.counters["accepted"] == 1
    assert [r["path"] for r in smsc.log.items()][-2:] == ["/sys/send.php", "/sys/status.php"]
    control(smsc.urls[0], raw_answer={"status": [body, 2]})
    with pytest.raises(RetryLater):
        SmscHttp(account(smsc.urls[:1], fmt=3)).status(msg(31))


@given(st.text(max_size=20) | st.floats() | st.integers() | st.none() | st.booleans())
@hsettings(max_examples=300, deadline=None)
def test_an_amount_is_a_finite_decimal_or_unreadable(v: object) -> None:
    try:
        d = money(v)
    except Unreadable:
        return
    assert d.is_finite()


@pytest.mark.parametrize("fmt, body", [(1, "NaN"), (1, "\u0663"), (3, '{"balance": NaN}'),
                                       (3, '{"balance": true}'),
                                       (3, '{"balance": [1]}')])
def test_an_unreadable_balance_is_retried_never_a_nan(smsc, fmt: int, body: str) -> None:
    control(smsc.urls[0], raw_answer={"balance": [body, 1]})
    with pytest.raises(RetryLater):
        SmscHttp(account(smsc.urls[:1], fmt=fmt)).balance()


@given(st.integers(-10, 300), st.integers(0, 300))
@hsettings(max_examples=200, deadline=None)
def test_any_status_code_maps_without_crashing(code: int, err: int) -> None:
    p = reader(1)
    rep = p._status_answer(parse_answer(f"{code},1700000000,{err}", 1))
    if code in STATUS_MAP and STATUS_MAP[code] is None:
        assert rep is None
    else:
        assert rep is not None and rep.raw == str(code)


# SMSC status code, err -> (Gonets status, error code) or None (SMSC has no such message)
STATUS_CASES = [
    (-3, "0", None), (-1, "0", ("submitted", None)), (0, "0", ("submitted", None)),
    (1, "0", ("delivered", None)), (3, "0", ("expired", None)), (20, "13", ("failed", "13")),
    (22, "1", ("rejected", "1")), (23, "253", ("rejected", "253")), (25, "6", ("failed", "6")),
    (777, "0", ("submitted", None)),  # a code Gonets cannot read never closes a message
]


@pytest.mark.parametrize("code, err, expected", STATUS_CASES)
def test_polls_and_callbacks_read_a_status_through_one_table(
        code: int, err: str, expected: tuple[str, str | None] | None) -> None:
    from core.smsc_status import smsc_report
    from producers.http import smsc_webhook

    poll = SmscHttp(account(["http://127.0.0.1:9"]))._status_answer(
        parse_answer(f"{code},1700000000,{err}", 1))
    callback = smsc_report(code, err)  # what the webhook applies (producers/http/smsc_webhook.py)
    for rep in (poll, callback):
        assert (None if rep is None else (rep.status.value, rep.error_code)) == expected
    assert not hasattr(smsc_webhook, "STATUS_MAP")  # no copy of its own
