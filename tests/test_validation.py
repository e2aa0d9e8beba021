"""Producer input checks: each bad field raises one clear error naming it; nothing enqueued."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.errors import InvalidInput
from core.sms_text import analyse
from producers.validation import check_sender, normalise_phone


@pytest.mark.parametrize("raw, e164", [
    ("+375 29 123-45-67", "375291234567"),
    ("8 029 123 45 67", "375291234567"),
    ("+7 912 345-67-89", "79123456789"),
])
def test_phone_numbers_are_normalised(raw: str, e164: str) -> None:
    assert normalise_phone(raw, "BY") == e164


@given(st.text(max_size=40))
@hsettings(max_examples=300, deadline=None)
def test_phone_parser_never_fails_with_anything_but_invalid_input(raw: str) -> None:
    try:
        out = normalise_phone(raw, "BY")
    except InvalidInput as exc:
        assert exc.field == "to"
    else:
        assert out.isdigit() and 8 <= len(out) <= 15


@pytest.mark.parametrize("text, enc, parts", [
    ("Hello", "gsm7", 1),
    ("x" * 160, "gsm7", 1),
    ("x" * 161, "gsm7", 2),
    ("€" * 80, "gsm7", 1),        # extension characters take two septets
    ("€" * 81, "gsm7", 2),
    ("Привет", "ucs2", 1),
    ("П" * 70, "ucs2", 1),
    ("П" * 71, "ucs2", 2),
    ("П" * 134, "ucs2", 2),
    ("П" * 135, "ucs2", 3),
])
def test_encoding_and_parts(text: str, enc: str, parts: int) -> None:
    info = analyse(text)
    assert (info.encoding, info.parts) == (enc, parts)


@given(st.text(min_size=1, max_size=2000))
@hsettings(max_examples=200, deadline=None)
def test_parts_always_hold_the_text(text: str) -> None:
    info = analyse(text)
    per = {"gsm7": (160, 153), "ucs2": (70, 67)}[info.encoding]
    cap = per[0] if info.parts == 1 else per[1] * info.parts
    assert info.units <= cap


@pytest.mark.parametrize("sender, ok", [
    ("Gonets", True), ("SHOP-24", True), ("375291234567", True), ("A" * 12, False),
    ("Гонец", False), ("", True), (None, True), ("bad\nname", False),
])
def test_sender_format(sender, ok) -> None:
    if ok:
        check_sender(sender)
    else:
        with pytest.raises(InvalidInput) as e:
            check_sender(sender)
        assert e.value.field == "sender"


@pytest.mark.parametrize("kwargs, field", [
    ({"to": "not a number", "text": "hi"}, "to"),
    ({"to": "+375291234567", "text": "   "}, "text"),
    ({"to": "+375291234567", "text": "hi", "sender": "Way too long sender"}, "sender"),
    ({"to": "+375291234567", "text": "hi", "lane": "fast"}, "lane"),
    ({"to": "+375291234567", "text": "hi", "kind": "spam"}, "kind"),
    ({"to": "+375291234567", "text": "hi", "validity": 0}, "validity"),
    ({"to": "+375291234567", "text": "hi", "account": "nope"}, "account"),
    ({"to": "+375291234567", "text": "x" * 2000}, "text"),
    ({"to": "+375291234567", "text": "hi", "options": {"translit": 7}}, "options.translit"),
    ({"to": "+375291234567", "text": "hi", "options": {"colour": 1}}, "options.colour"),
])
def test_send_sms_refuses_bad_input_and_enqueues_nothing(producer, store, kwargs, field) -> None:
    to, text = kwargs.pop("to"), kwargs.pop("text")
    with pytest.raises(InvalidInput) as e:
        producer.send_sms(to, text, **kwargs)
    assert e.value.field == field
    assert not list(store.r.scan_iter(store.key("msg", "*")))
    assert producer.broker.do_qsize("sms.smsc.bulk") == 0


def test_idempotency_key_returns_the_first_id(producer, store) -> None:
    a = producer.send_sms("+375291234567", "once", idempotency_key="order-17")
    b = producer.send_sms("+375291234567", "once", idempotency_key="order-17")
    assert a == b
    assert producer.broker.do_qsize("sms.smsc.bulk") == 1
