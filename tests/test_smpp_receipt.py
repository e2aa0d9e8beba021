"""Receipt, HLR and deliver_sm parsers: what the text and TLVs say lands in the status model,
and no byte string makes them fail with anything but ``Malformed``."""

from __future__ import annotations

import struct
from urllib.parse import quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.contracts import Status
from core.smsc_status import ERR_TABLE
from workers.smpp.receipt import (
    DATA_SM_FIELDS,
    Malformed,
    id_key,
    parse_deliver_sm,
    parse_receipt_text,
    parse_tlvs,
    receipt_fields,
    receipt_from,
)

STATS = ["DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD", "ENROUTE"]


def deliver_sm(text: bytes, *, esm: int = 0x04, tlvs: bytes = b"", src: bytes = b"375291234567",
               dc: int = 0) -> bytes:
    return (b"\x00" + bytes((1, 1)) + src + b"\x00" + bytes((5, 0)) + b"Gonets\x00"
            + bytes((esm, 0, 0)) + b"\x00\x00" + bytes((0, 0, dc, 0, len(text))) + text + tlvs)


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


ids = st.one_of(st.integers(0, 10**12).map(str), st.integers(0, 2**40).map(lambda n: f"{n:X}"),
                st.text("0123456789abcdef", min_size=1, max_size=20))
digits = st.text("0123456789", min_size=0, max_size=12)


@settings(max_examples=100, deadline=None)
@given(mid=ids, sub=st.integers(0, 255), dlvrd=st.integers(0, 255), stat=st.sampled_from(STATS),
       err=st.integers(0, 999), d1=digits, d2=digits, tail=st.text(max_size=30))
def test_receipt_text_round_trip(mid: str, sub: int, dlvrd: int, stat: str, err: int, d1: str,
                                 d2: str, tail: str) -> None:
    text = (f"id:{mid} sub:{sub:03d} dlvrd:{dlvrd:03d} submit date:{d1} done date:{d2} "
            f"stat:{stat} err:{err:03d} text:{tail}")
    kv = parse_receipt_text(text)
    assert kv["id"] == mid and kv["stat"] == stat and int(kv["err"]) == err
    assert kv["submit date"] == d1 and kv["done date"] == d2
    assert int(kv["sub"]) == sub and int(kv["dlvrd"]) == dlvrd
    assert kv["text"] == tail
    rc = receipt_from(parse_deliver_sm(deliver_sm(text.encode("utf-8"))))
    assert rc.message_id == mid and rc.stat == stat and rc.err == err


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_are_a_deliver_sm_or_malformed(body: bytes) -> None:
    try:
        pdu = parse_deliver_sm(body)
    except Malformed:
        return
    try:
        rc = receipt_from(pdu)
    except Malformed:
        return
    assert isinstance(rc.status, Status)
    receipt_fields(rc)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=120))
def test_any_bytes_are_tlvs_or_malformed(data: bytes) -> None:
    try:
        parse_tlvs(data)
    except Malformed:
        pass


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_is_malformed(text: str) -> None:
    try:
        kv = parse_receipt_text(text)
    except Malformed:
        return
    assert kv["id"]


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**63))
def test_an_id_meets_itself_however_it_is_written_on_its_side(n: int) -> None:
    assert {id_key(f, hex_ids=True) for f in (f"{n:X}", f"{n:x}", f"{n:010X}", f" {n:X}\x00")} \
        == {str(n)}
    assert {id_key(f, hex_ids=False) for f in (str(n), f"000{n}", f"{n} ")} == {str(n)}


def test_an_id_is_read_one_way_only() -> None:
    # "16" on a decimal account is 16 and nothing else (never also 0x16 = 22)
    assert id_key("16", hex_ids=False) == "16" and id_key("16", hex_ids=True) == "22"
    assert id_key("1A", hex_ids=False) == "s:1a"  # not a number there: itself
    assert id_key("12\u00b2", hex_ids=False) == "s:12\u00b2"  # "²" is no digit
    assert id_key("", hex_ids=False) is None and id_key("1" * 66, hex_ids=True) is None


@settings(max_examples=300, deadline=None)
@given(st.text(), st.booleans())
def test_any_text_is_an_id_key_or_none(text: str, hex_ids: bool) -> None:
    key = id_key(text, hex_ids)
    assert key is None or isinstance(key, str)


def test_non_ascii_digits_in_a_receipt_are_not_digits() -> None:
    # "²" passes str.isdigit(); int() refuses it: the receipt must still read (or be Malformed)
    rc = receipt_from(parse_deliver_sm(deliver_sm("id:12\u00b2 stat:UNDELIV err:\u00b2\u00b3"
                                                  .encode("latin-1"))))
    assert rc.message_id == "12\u00b2" and rc.err is None and rc.status == Status.FAILED


#: receipt-shaped text whose values are any text a latin-1 short_message can carry
latin1 = st.text(st.characters(max_codepoint=255), max_size=20)


@settings(max_examples=300, deadline=None)
@given(mid=latin1, stat=latin1, err=latin1, sub=latin1, rest=latin1)
def test_any_receipt_text_reads_or_is_malformed(mid: str, stat: str, err: str, sub: str,
                                                rest: str) -> None:
    text = f"id:{mid} sub:{sub} stat:{stat} err:{err} {rest}"
    try:
        rc = receipt_from(parse_deliver_sm(deliver_sm(text.encode("latin-1")[:255])))
    except Malformed:
        return
    assert isinstance(rc.status, Status)
    receipt_fields(rc)
    id_key(rc.message_id, hex_ids=False)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_unicode_text_parses_or_is_malformed(text: str) -> None:
    try:
        kv = parse_receipt_text(text)
    except Malformed:
        return
    assert kv["id"]


def test_tlvs_win_and_vendor_tlvs_are_read() -> None:
    text = (b"id:854019 sub:001 dlvrd:001 submit date:1108202241 done date:1108202241 "
            b"stat:DELIVRD err:000")
    tl = (tlv(0x001E, b"854019\x00") + tlv(0x0427, bytes((5,))) + tlv(0x0423, b"\x03\x00\xdc")
          + tlv(0x2000, b"1.5000\x00") + tlv(0x2001, (0x100 | (2 << 9) | 4).to_bytes(2, "big"))
          + tlv(0x2002, (3).to_bytes(2, "big")) + tlv(0x2003, b"25702\x00")
          + tlv(0x2004, (2).to_bytes(2, "big")) + tlv(0x1401, b"vendor"))
    rc = receipt_from(parse_deliver_sm(deliver_sm(text, tlvs=tl)))
    assert rc.message_id == "854019"
    assert rc.stat == "UNDELIV" and rc.err == 220  # message_state and network_error_code win
    assert rc.cost == "1.5000" and rc.parts == 3 and rc.mccmnc == "25702"
    assert rc.message_type == "hlr" and rc.template_class == "authorization"
    assert rc.extra_state == "read" and rc.status == Status.DELIVERED
    assert receipt_fields(rc)["parts_billed"] == "3"


def test_tlv_only_receipt() -> None:
    tl = tlv(0x001E, b"ABC123\x00") + tlv(0x0427, bytes((3,)))
    rc = receipt_from(parse_deliver_sm(deliver_sm(b"", tlvs=tl)))
    assert rc.message_id == "ABC123" and rc.status == Status.EXPIRED


def test_hlr_result_is_parsed_and_url_decoded() -> None:
    text = ("id:855469 stat:DELIVRD err:000 imsi:250023012345678 msc:79232510066 mcc:250 mnc:02 "
            f"cn:{quote_plus('Russian Federation')} net:{quote_plus('MegaFON open JSC')} "
            "rcn: rnet:")
    rc = receipt_from(parse_deliver_sm(deliver_sm(text.encode())))
    assert rc.hlr == {"imsi": "250023012345678", "msc": "79232510066", "mcc": "250",
                      "mnc": "02", "cn": "Russian Federation", "net": "MegaFON open JSC"}
    assert receipt_fields(rc)["hlr_net"] == "MegaFON open JSC"


@pytest.mark.parametrize("stat,status", [("DELIVRD", Status.DELIVERED),
                                         ("EXPIRED", Status.EXPIRED),
                                         ("UNDELIV", Status.FAILED),
                                         ("REJECTD", Status.REJECTED),
                                         ("ENROUTE", Status.SUBMITTED),
                                         ("delivrd", Status.DELIVERED)])
def test_stat_words_map_into_the_status_model(stat: str, status: Status) -> None:
    rc = receipt_from(parse_deliver_sm(deliver_sm(f"id:1 stat:{stat} err:0".encode())))
    assert rc.status == status


def test_err_codes_keep_their_meaning() -> None:
    assert ERR_TABLE[220].action == "retry"
    assert ERR_TABLE[224].action == "funds"
    assert ERR_TABLE[251].action == "flood"
    assert ERR_TABLE[1].meaning == "the subscriber does not exist"


def test_incoming_message_is_not_a_receipt() -> None:
    pdu = parse_deliver_sm(deliver_sm("Привет".encode("utf-16-be"), esm=0, dc=8))
    assert not pdu.is_receipt


def test_truncated_pdu_is_malformed() -> None:
    body = deliver_sm(b"id:1 stat:DELIVRD")
    with pytest.raises(Malformed):
        parse_deliver_sm(body[:-3])
    with pytest.raises(Malformed):
        parse_deliver_sm(body + b"\x00\x1e\x00\x09abc")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_are_a_data_sm_or_malformed(body: bytes) -> None:
    try:
        rc = receipt_from(parse_deliver_sm(body, DATA_SM_FIELDS))
    except Malformed:
        return
    assert isinstance(rc.status, Status)
    receipt_fields(rc)


def test_data_sm_receipt_keeps_the_network_error_code_on_the_record() -> None:
    # SMPP v3.4 §4.7.1: no short_message; the receipt text rides in message_payload (0x0424)
    text = b"id:77 sub:001 dlvrd:000 submit date:2412031200 done date:2412031201 stat:UNDELIV"
    body = (b"\x00" + bytes((1, 1)) + b"375291234567\x00" + bytes((5, 0)) + b"Gonets\x00"
            + bytes((0x04, 0, 0)) + tlv(0x0424, text) + tlv(0x0423, b"\x03\x00\x01"))
    rc = receipt_from(parse_deliver_sm(body, DATA_SM_FIELDS))
    assert rc.message_id == "77" and rc.status == Status.FAILED and rc.err == 1
    assert receipt_fields(rc)["dlr_network_error_code"] == "GSM:1"
    other = receipt_from(parse_deliver_sm(deliver_sm(text, tlvs=tlv(0x0423, b"\x08\x01\x00"))))
    assert receipt_fields(other)["dlr_network_error_code"] == "SMSC:256"
