"""``deliver_sm`` (or ``data_sm``) → what it says: a delivery receipt, an HLR result, or an
incoming message.

Pure functions over bytes and text, no I/O; every parser raises ``Malformed`` (a ValueError)
on input it cannot read and nothing else, so a bad PDU costs one ``deliver_sm_resp`` with an
error status, never the session.

Sources: SMPP v3.4 §4.6 (deliver_sm body), §4.7 (data_sm body), §5.3 (TLVs; 0x0423
network_error_code = network type octet + 2-octet error code), appendix B (receipt text
``id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…``);
shared/providers/smsc-smpp.md ("Checking the status": TLVs ``receipted_message_id``,
``message_state``, ``network_error_code`` and SMSC's 0x2000–0x2004; the ``err`` table; the HLR
result ``id stat err imsi msc mcc mnc cn net rcn rnet`` with URL-encoded names).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from core.contracts import Status


class Malformed(ValueError):
    """A PDU body or receipt text that cannot be read."""


# --- deliver_sm body (SMPP v3.4 §4.6.1) as a field table -----------------------------------

#: (name, kind): "c" C-octet string, "1" one octet, "sm" short_message (length-prefixed)
DELIVER_SM_FIELDS: tuple[tuple[str, str], ...] = (
    ("service_type", "c"), ("source_addr_ton", "1"), ("source_addr_npi", "1"),
    ("source_addr", "c"), ("dest_addr_ton", "1"), ("dest_addr_npi", "1"),
    ("destination_addr", "c"), ("esm_class", "1"), ("protocol_id", "1"),
    ("priority_flag", "1"), ("schedule_delivery_time", "c"), ("validity_period", "c"),
    ("registered_delivery", "1"), ("replace_if_present_flag", "1"), ("data_coding", "1"),
    ("sm_default_msg_id", "1"), ("short_message", "sm"),
)
#: data_sm body (SMPP v3.4 §4.7.1): the text, if any, is in the message_payload TLV
DATA_SM_FIELDS: tuple[tuple[str, str], ...] = (
    ("service_type", "c"), ("source_addr_ton", "1"), ("source_addr_npi", "1"),
    ("source_addr", "c"), ("dest_addr_ton", "1"), ("dest_addr_npi", "1"),
    ("destination_addr", "c"), ("esm_class", "1"), ("registered_delivery", "1"),
    ("data_coding", "1"),
)
#: network_error_code's first octet (SMPP v3.4 §5.3.2.31)
NETWORK_TYPES = {1: "ANSI-136", 2: "IS-95", 3: "GSM", 4: "ANSI-136 cause", 5: "IS-95 cause",
                 6: "ANSI-41", 7: "SMPP", 8: "SMSC"}
#: longest C-octet string SMPP allows anywhere in deliver_sm, terminator included
MAX_CSTRING = 65

# TLV tags (SMPP v3.4 §5.3.2 and SMSC's vendor tags)
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427
TLV_NETWORK_ERROR_CODE = 0x0423
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_SMSC_COST = 0x2000
TLV_SMSC_FLAGS = 0x2001
TLV_SMSC_PARTS = 0x2002
TLV_SMSC_MCCMNC = 0x2003
TLV_SMSC_EXTRA_STATE = 0x2004

ESM_RECEIPT_MASK = 0x3C  # bits 5-2: message type
ESM_SMSC_RECEIPT = 0x04
ESM_SME_ACK = 0x08 | 0x10
ESM_UDHI = 0x40


@dataclass(frozen=True)
class DeliverSm:
    fields: dict[str, int | bytes]
    tlvs: dict[int, bytes]

    def int(self, name: str) -> int:
        v = self.fields[name]
        assert isinstance(v, int)
        return v

    def str(self, name: str) -> str:
        v = self.fields[name]
        assert isinstance(v, bytes)
        return v.decode("latin-1")

    @property
    def short_message(self) -> bytes:
        v = self.fields.get("short_message", b"")
        assert isinstance(v, bytes)
        return v or self.tlvs.get(TLV_MESSAGE_PAYLOAD, b"")

    @property
    def is_receipt(self) -> bool:
        esm = self.int("esm_class") & ESM_RECEIPT_MASK
        return esm in (ESM_SMSC_RECEIPT, 0x20) or TLV_RECEIPTED_MESSAGE_ID in self.tlvs


def parse_deliver_sm(body: bytes,
                     table: tuple[tuple[str, str], ...] = DELIVER_SM_FIELDS) -> DeliverSm:
    """Parse a deliver_sm body (the PDU after its 16-octet header); with ``DATA_SM_FIELDS``
    a data_sm body."""
    fields: dict[str, int | bytes] = {}
    pos = 0
    n = len(body)
    for name, kind in table:
        if kind == "c":
            end = body.find(b"\x00", pos, pos + MAX_CSTRING)
            if end < 0:
                raise Malformed(f"{name}: no terminating NUL within {MAX_CSTRING} octets")
            fields[name] = body[pos:end]
            pos = end + 1
        elif kind == "1":
            if pos >= n:
                raise Malformed(f"{name}: body ends early")
            fields[name] = body[pos]
            pos += 1
        else:
            if pos >= n:
                raise Malformed("sm_length: body ends early")
            length = body[pos]
            pos += 1
            if pos + length > n:
                raise Malformed("short_message runs past the end of the PDU")
            fields[name] = body[pos:pos + length]
            pos += length
    return DeliverSm(fields, parse_tlvs(body[pos:]))


def parse_tlvs(data: bytes) -> dict[int, bytes]:
    """Tag-length-value parameters; unknown tags are kept (their meaning is the caller's)."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise Malformed("truncated TLV header")
        tag, length = struct.unpack_from(">HH", data, pos)
        pos += 4
        if pos + length > len(data):
            raise Malformed(f"TLV 0x{tag:04x} runs past the end of the PDU")
        out[tag] = data[pos:pos + length]
        pos += length
    return out


# --- receipt text ---------------------------------------------------------------------------

#: digits are ASCII digits ("²" passes ``str.isdigit()`` but is no digit of an id or a code)
_DEC = re.compile(r"[0-9]+")
_HEX = re.compile(r"[0-9a-fA-F]+")
#: an id with one of these is written in hex (learned by ``Correlation``)
_HEX_LETTERS = re.compile(r"[a-fA-F]")

RECEIPT_KEYS = ("id", "sub", "dlvrd", "submit date", "done date", "stat", "err", "text",
                "imsi", "msc", "mcc", "mnc", "cn", "net", "rcn", "rnet")
_KEY = re.compile(r"(?:^|(?<=\s))(" + "|".join(re.escape(k) for k in RECEIPT_KEYS) + r"):",
                  re.IGNORECASE)
HLR_KEYS = ("imsi", "msc", "mcc", "mnc", "cn", "net", "rcn", "rnet")
#: HLR fields whose values are URL-encoded names
HLR_URLENCODED = ("cn", "net", "rcn", "rnet")


def parse_receipt_text(text: str) -> dict[str, str]:
    """``key:value`` pairs of a receipt or HLR result (keys lower-case). ``text:`` runs to the
    end; other values end at the next known key. Raises Malformed without an ``id``."""
    matches = list(_KEY.finditer(text))
    out: dict[str, str] = {}
    for i, m in enumerate(matches):
        key = m.group(1).lower()
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = text[m.end():end]
        if key != "text":
            value = value.strip()
        out.setdefault(key, value)
        if key == "text":
            out[key] = text[m.end():]
            break
    if not out.get("id"):
        raise Malformed("receipt text has no id")
    return out


# --- meaning ---------------------------------------------------------------------------------

#: receipt ``stat:`` -> Gonets status (SMPP v3.4 appendix B)
STAT_MAP: dict[str, Status] = {
    "DELIVRD": Status.DELIVERED, "EXPIRED": Status.EXPIRED, "DELETED": Status.FAILED,
    "UNDELIV": Status.FAILED, "ACCEPTD": Status.SUBMITTED, "UNKNOWN": Status.UNKNOWN,
    "REJECTD": Status.REJECTED, "ENROUTE": Status.SUBMITTED,
}
#: ``message_state`` TLV / query_sm_resp state (SMPP v3.4 §5.2.28) -> receipt stat word
STATE_WORDS: dict[int, str] = {
    1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD",
    7: "UNKNOWN", 8: "REJECTD",
}
#: SMSC 0x2004 additional state
EXTRA_STATES = {2: "read", 4: "link_clicked"}
#: SMSC 0x2001 bits 0-3: message type
MESSAGE_TYPES = {0: "sms", 1: "flash", 2: "binary", 3: "wap_push", 4: "hlr", 5: "ping",
                 6: "mms", 7: "call", 8: "email", 10: "viber", 12: "social"}
TEMPLATE_CLASSES = {0: "service", 1: "transactional", 2: "authorization", 3: "advertising"}


@dataclass(frozen=True)
class Receipt:
    message_id: str
    stat: str
    err: int | None = None
    sub: str | None = None
    dlvrd: str | None = None
    submit_date: str | None = None
    done_date: str | None = None
    #: SMSC vendor TLVs
    cost: str | None = None
    message_type: str | None = None
    template_class: str | None = None
    parts: int | None = None
    mccmnc: str | None = None
    extra_state: str | None = None
    hlr: dict[str, str] = field(default_factory=dict)
    #: the network_error_code TLV as sent: "<network type>:<error code>", e.g. "GSM:251"
    network_error: str | None = None

    @property
    def status(self) -> Status:
        if self.extra_state:  # read / link clicked: delivered, at the least
            return Status.DELIVERED
        return STAT_MAP.get(self.stat, Status.UNKNOWN)

    @property
    def raw(self) -> str:
        return self.extra_state or self.stat


def _int_tlv(v: bytes | None) -> int | None:
    if v is None or not v:
        return None
    return int.from_bytes(v, "big")


def _cstr(v: bytes | None) -> str | None:
    if v is None:
        return None
    return v.split(b"\x00", 1)[0].decode("latin-1").strip() or None


def receipt_from(pdu: DeliverSm) -> Receipt:
    """The receipt a deliver_sm carries, from its text and TLVs (TLVs win where both say)."""
    text = pdu.short_message.decode("latin-1")
    try:
        kv = parse_receipt_text(text)
    except Malformed:
        kv = {}
    t = pdu.tlvs
    mid = _cstr(t.get(TLV_RECEIPTED_MESSAGE_ID)) or kv.get("id")
    if not mid:
        raise Malformed("receipt without a message id (neither TLV nor text)")
    stat = (kv.get("stat") or "").upper()
    state = _int_tlv(t.get(TLV_MESSAGE_STATE))
    if state is not None and state in STATE_WORDS:
        stat = STATE_WORDS[state]
    if not stat:
        raise Malformed("receipt without a state (neither stat: nor message_state)")
    err: int | None = None
    network_error: str | None = None
    nec = t.get(TLV_NETWORK_ERROR_CODE)
    if nec is not None and len(nec) == 3:
        err = int.from_bytes(nec[1:], "big")
        network_error = f"{NETWORK_TYPES.get(nec[0], str(nec[0]))}:{err}"
    elif (e := kv.get("err", "")) and len(e) <= 9 and _DEC.fullmatch(e):
        err = int(e)  # ASCII digits only: "²" passes str.isdigit(), not int()
    flags = _int_tlv(t.get(TLV_SMSC_FLAGS))
    extra = _int_tlv(t.get(TLV_SMSC_EXTRA_STATE))
    hlr = {k: (unquote_plus(kv[k]) if k in HLR_URLENCODED else kv[k])
           for k in HLR_KEYS if kv.get(k)}
    return Receipt(
        message_id=mid, stat=stat, err=err, sub=kv.get("sub"), dlvrd=kv.get("dlvrd"),
        submit_date=kv.get("submit date"), done_date=kv.get("done date"),
        cost=_cstr(t.get(TLV_SMSC_COST)),
        message_type=MESSAGE_TYPES.get(flags & 0x0F, str(flags & 0x0F)) if flags is not None
        else None,
        template_class=TEMPLATE_CLASSES[(flags >> 9) & 3] if flags is not None and flags & 0x100
        else None,
        parts=_int_tlv(t.get(TLV_SMSC_PARTS)),
        mccmnc=_cstr(t.get(TLV_SMSC_MCCMNC)),
        extra_state=EXTRA_STATES.get(extra) if extra is not None else None,
        hlr=hlr, network_error=network_error)


# --- message ids ----------------------------------------------------------------------------



def clean_id(message_id: str) -> str:
    return message_id.strip().strip("\x00").strip()


def looks_hex(message_id: str) -> bool:
    """True when the id can only be hex: hex digits with at least one letter a-f."""
    mid = clean_id(message_id)
    return bool(_HEX.fullmatch(mid) and _HEX_LETTERS.search(mid))


def id_key(message_id: str, hex_ids: bool) -> str | None:
    """The one value an id stands for, so a receipt finds its message whatever leading zeros
    or letter case the server wrote: where the account writes ids in hex (``hex_ids``) an id
    of hex digits is read as hex, elsewhere an id of decimal digits as decimal; any other id
    stands for itself (lower-case, ``s:``).  Only ASCII digits are digits (``²`` is not one).
    None for an empty or overlong id.  Raises nothing."""
    mid = clean_id(message_id)
    if not mid or len(mid) > 65:
        return None
    if hex_ids and _HEX.fullmatch(mid):
        return str(int(mid, 16))
    if not hex_ids and _DEC.fullmatch(mid):
        return str(int(mid))
    return "s:" + mid.lower()


def receipt_fields(rc: Receipt) -> dict[str, str]:
    """Fields a receipt adds to the message record."""
    out: dict[str, str] = {}
    for name in ("cost", "message_type", "template_class", "mccmnc", "extra_state",
                 "done_date"):
        v = getattr(rc, name)
        if v:
            out[f"dlr_{name.replace(' ', '_')}"] = str(v)
    if rc.network_error:
        out["dlr_network_error_code"] = rc.network_error
    if rc.parts:
        out["parts_billed"] = str(rc.parts)
    for k, v in rc.hlr.items():
        out[f"hlr_{k}"] = v
    return out
