"""Producer input checks: each bad field raises one clear error naming it; nothing enqueued."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.errors import InvalidInput
from core.sms_text import analyse
from producers.validation import MAX_TEXT_CHARS, _e164_fast, check_sender, normalise_phone


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


# --- any text: only InvalidInput, at a bounded cost ----------------------------------------

#: every code point, lone surrogates (category Cs) included: hypothesis leaves them out by default
ANY_CHAR = st.characters(exclude_categories=())


@given(text=st.one_of(st.text(ANY_CHAR, max_size=200),
                      st.text(ANY_CHAR, min_size=4990, max_size=5010)))
@hsettings(max_examples=150, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                  HealthCheck.data_too_large])
def test_validating_any_text_raises_only_invalid_input_on_text(producer, store, text) -> None:
    """The whole producer path (checks, encoding, parts, the provider's rules, the store):
    any text is queued or refused with InvalidInput naming ``text``, never another error."""
    try:
        msg_id = producer.send_sms("+375291234567", text, account="smsc")
    except InvalidInput as exc:
        assert exc.field == "text", exc
    else:
        assert store.get(msg_id)["text"] == text


@pytest.mark.parametrize("text", ["a\ud800b", "\udfff", "ok \ud83d"])
def test_a_lone_surrogate_is_invalid_input_on_text(producer, text) -> None:
    with pytest.raises(InvalidInput) as e:
        producer.send_sms("+375291234567", text)
    assert e.value.field == "text" and "surrogate" in e.value.reason
    assert producer.broker.do_qsize("sms.smsc.bulk") == 0


def test_a_megabyte_of_text_is_refused_by_its_length(producer) -> None:
    """Refused on its length before it is encoded (it used to take 71 s of CPU to find out)."""
    with pytest.raises(InvalidInput) as e:
        producer.send_sms("+375291234567", "x" * 1_000_000)
    assert e.value.field == "text" and f"at most {MAX_TEXT_CHARS} characters" in e.value.reason
    assert producer.broker.do_qsize("sms.smsc.bulk") == 0


def test_long_texts_count_like_short_ones() -> None:
    """The septet count is per character (the GSM codec's own sum), whatever the length."""
    info = analyse("€" * 50_000 + "x")
    assert (info.encoding, info.units, info.parts) == ("gsm7", 100_001, -(-100_001 // 153))


# --- the E.164 fast path agrees with phonenumbers ------------------------------------------


def _by_phonenumbers(text: str, region: str = "BY") -> str | None:
    """What ``normalise_phone`` answered before the fast path: phonenumbers' own reading."""
    try:
        num = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


def _patterns() -> list[tuple[int, str]]:
    """Every number pattern phonenumbers has for Belarus, Russia and Kazakhstan (+7 too),
    with its country code."""
    out = []
    for region in ("BY", "RU", "KZ"):
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        for name in ("general_desc", "fixed_line", "mobile", "toll_free", "premium_rate",
                     "shared_cost", "personal_number", "voip", "pager", "uan", "voicemail"):
            desc = getattr(meta, name)
            if desc is not None and desc.national_number_pattern:
                out.append((meta.country_code, desc.national_number_pattern))
    return out


#: national numbers of every pattern of those regions
NATIONAL = st.one_of(*(st.from_regex(re.compile(p, re.ASCII), fullmatch=True)
                       for _, p in _patterns()))


#: "+<code><digits>" near the served codes, numbers of their regions' every pattern, any text
PLUS_NUMBERS = st.one_of(
    st.builds(lambda cc, d: f"+{cc}{d}",
              st.sampled_from(["375", "7", "37", "3", "3750", "3758", "78", "77", "70", "380",
                               "810375", "8"]),
              st.text("0123456789", max_size=18)),
    st.one_of(*(st.from_regex(re.compile(f"\\+{cc}(?:{p})", re.ASCII), fullmatch=True)
                for cc, p in _patterns())),
    # any few digits (another code, an IDD, a national prefix) before a national number
    st.builds(lambda pre, n: f"+{pre}{n}", st.text("0123456789", max_size=4), NATIONAL),
)
#: the same with and without the "+", and any text
NUMBERS = st.one_of(PLUS_NUMBERS, PLUS_NUMBERS.map(lambda t: t.lstrip("+")),
                    st.text(ANY_CHAR, max_size=40))
#: callers in the served countries, in one they are not, in one that shares +7
REGIONS = st.sampled_from(["BY", "RU", "by", "KZ", "DE"])


@given(NUMBERS, REGIONS)
@hsettings(max_examples=4000, deadline=None)
def test_the_e164_fast_path_answers_as_phonenumbers_does(text: str, region: str) -> None:
    """Where the fast path answers, phonenumbers answers the same valid number; where it is
    unsure, ``normalise_phone`` asks phonenumbers (so every answer is phonenumbers')."""
    fast = _e164_fast(text, region)
    if fast is not None:
        assert fast == _by_phonenumbers(text, region), (text, region)
    try:
        assert normalise_phone(text, region) == _by_phonenumbers(text.strip(), region), text
    except InvalidInput:
        assert len(text.strip()) > 32 or _by_phonenumbers(text.strip(), region) is None, text


@pytest.mark.parametrize("region", ["BY", "RU"])
@pytest.mark.parametrize("kind", ["MOBILE", "FIXED_LINE"])
def test_the_fast_path_takes_the_served_countries_numbers(region: str, kind: str) -> None:
    """Mobile and landline numbers of Belarus and Russia in E.164 form take the fast path."""
    num = phonenumbers.example_number_for_type(region, getattr(phonenumbers.PhoneNumberType,
                                                               kind))
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    assert _e164_fast(e164) == e164[1:] == _by_phonenumbers(e164)
    # and written without the "+" by a caller in that country
    assert _e164_fast(e164[1:], region) == e164[1:] == _by_phonenumbers(e164[1:], region)


# --- GSM 03.38 septets by translate agree with the codec -----------------------------------


def _septets_by_codec(text: str) -> int | None:
    """The septet count before: the ``gsm0338`` codec's encoding of each character, summed."""
    total = 0
    for char in text:
        try:
            total += len(char.encode("gsm03.38"))
        except UnicodeEncodeError:
            return None
    return total


#: GSM's own characters (both tables), a few just outside it, and any character at all
GSM_HEAVY = st.text(st.one_of(
    st.sampled_from("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
                    "ABCXYZÄÖÑÜ§¿abcxyzäöñüà^{}\\[~]|€\x0c"),
    st.sampled_from("`çÀ\u00a0ÁЁё$€\u20ac\u2019"), ANY_CHAR), max_size=400)


@given(st.one_of(GSM_HEAVY, st.text(ANY_CHAR, max_size=300)))
@hsettings(max_examples=1500, deadline=None)
def test_septets_are_what_the_gsm_codec_counts(text: str) -> None:
    units = _septets_by_codec(text)
    info = analyse(text)
    if units is None:
        assert info.encoding == "ucs2"
    else:
        assert (info.encoding, info.units) == ("gsm7", units)


def _national_of(region: str) -> st.SearchStrategy[str]:
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    return st.one_of(*(st.from_regex(re.compile(d.national_number_pattern, re.ASCII),
                                     fullmatch=True)
                       for d in (meta.fixed_line, meta.mobile, meta.toll_free, meta.voip)
                       if d is not None and d.national_number_pattern))


@given(st.sampled_from(["BY", "RU"]).flatmap(lambda region: st.tuples(
    st.just(region),
    st.one_of(st.text("0123456789", max_size=4), st.sampled_from(["375", "7", "8", "80", "810"])),
    _national_of(region), st.booleans())))
@hsettings(max_examples=1500, deadline=None)
def test_a_national_number_behind_any_digits_reads_as_phonenumbers_reads_it(
        case: tuple[str, str, str, bool]) -> None:
    """A caller's own country's number behind its code, another code, a national or an
    international prefix, with or without "+": the fast path agrees with phonenumbers."""
    region, prefix, national, plus = case
    text = ("+" if plus else "") + prefix + national
    fast = _e164_fast(text, region)
    if fast is not None:
        assert fast == _by_phonenumbers(text, region), (text, region)
