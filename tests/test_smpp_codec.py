"""The SMPP encoder/splitter: the alphabet chosen from the text, parts that decode on their own,
and part counts equal to what producers charge (core.sms_text)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.sms_text import analyse
from workers.smpp import codec

GSM_CHARS = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
             "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXT = "^{}\\[~]|€\f"
gsm_text = st.text(alphabet=GSM_CHARS + GSM_EXT * 4, min_size=1, max_size=800)
any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                          blacklist_characters="\x00\x1b"),
                   min_size=1, max_size=600)


def _join(enc: codec.Encoded) -> bytes:
    return b"".join(p[6:] if enc.udh else p for p in enc.parts)


def _decode_part(enc: codec.Encoded, part: bytes) -> str:
    return codec.decode(part, enc.data_coding, iso=enc.alphabet == "latin1", udhi=enc.udh)


@settings(max_examples=150, deadline=None)
@given(gsm_text)
def test_gsm_parts_keep_every_escape_whole(text: str) -> None:
    enc = codec.encode(text, ref=7)
    assert enc.alphabet == "gsm7" and enc.data_coding == 0
    for part in enc.parts:
        body = part[6:] if enc.udh else part
        assert len(body) <= (153 if enc.udh else 160)
        # an escape never ends a part: each part decodes to whole characters on its own
        run = len(body) - len(body.rstrip(b"\x1b"))
        assert run % 2 == 0
    assert "".join(_decode_part(enc, p) for p in enc.parts) == text
    assert enc.count == analyse(text).parts


@settings(max_examples=150, deadline=None)
@given(any_text)
def test_every_part_fits_and_the_text_survives(text: str) -> None:
    enc = codec.encode(text, ref=200)
    for part in enc.parts:
        assert len(part) <= 140 or (enc.alphabet == "gsm7" and len(part) <= 160)
        if enc.alphabet == "ucs2":
            assert len(part) <= 140 and len(part) % 2 == 0
            body = part[6:] if enc.udh else part
            # never half a surrogate pair at the end of a part
            assert not (len(body) >= 2 and 0xD8 <= body[-2] <= 0xDB)
    assert "".join(_decode_part(enc, p) for p in enc.parts) == text
    assert enc.count == analyse(text).parts


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz éèàçôûñ", min_size=1, max_size=600))
def test_iso_flag_sends_latin1(text: str) -> None:
    enc = codec.encode(text, iso=True)
    if all(c in GSM_CHARS for c in text):
        assert enc.alphabet == "gsm7"
    else:
        assert enc.alphabet == "latin1"
        assert enc.count == (1 if len(text) <= 140 else -(-len(text) // 134))
    assert "".join(_decode_part(enc, p) for p in enc.parts) == text


def test_udh_names_reference_total_and_sequence() -> None:
    enc = codec.encode("Ж" * 150, ref=0x1AB)
    assert enc.alphabet == "ucs2" and enc.data_coding == 8 and enc.esm_class == 0x40
    assert [p[:6] for p in enc.parts] == [bytes((5, 0, 3, 0xAB, 3, i)) for i in (1, 2, 3)]


def test_sar_option_sends_no_udh() -> None:
    enc = codec.encode("x" * 400, sar=True, ref=5)
    assert not enc.udh and enc.esm_class == 0 and enc.count == 3
    assert b"".join(enc.parts) == b"x" * 400


def test_a_short_text_is_one_plain_part() -> None:
    enc = codec.encode("Hello")
    assert enc.parts == (b"Hello",) and enc.esm_class == 0 and not enc.udh


def test_more_than_255_parts_is_refused() -> None:
    try:
        codec.encode("Ж" * (67 * 256))
    except codec.TooLong:
        return
    raise AssertionError("a 256-part text was accepted")
