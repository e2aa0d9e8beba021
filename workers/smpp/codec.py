"""Text → SMPP ``short_message`` parts: the alphabet is chosen from the text, long texts are cut.

Alphabets (shared/providers/smsc-smpp.md, "Sending a message"):

    gsm7    data_coding 0, GSM 03.38, one septet per octet (unpacked, as SMPP carries it);
            extension characters (``€ [ ] { } ~ ^ | \\``) are two septets (ESC + char)
    latin1  ISO-8859-1 when the bind carries the ``ISO`` flag: the server then reads
            data_coding 0 as ISO-8859-1 instead of GSM (one octet per character)
    ucs2    data_coding 8 (the document's coding 2 × 4), UTF-16BE

A text that fits one SMS goes as is; a longer one is cut into parts that carry a 6-octet UDH
(``05 00 03 ref total seq``) and set ``esm_class`` UDHI (or, with ``sar=True``, the SAR TLVs
instead of a UDH).  Cuts never split a GSM escape pair or a UTF-16 surrogate pair, so every
part decodes on its own.  Part sizes equal ``core.sms_text``'s for gsm7 and ucs2 (160/153
septets, 70/67 units), so the producer's part count is what gets sent and rate-counted.

smpplib's ``gsm.make_parts`` is not used for cutting: its GSM table lacks ``§`` (and encodes
a backtick, which GSM has not), and it cuts at fixed octet offsets, splitting escape and
surrogate pairs (its own FIXME).  Its constants are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)
from smpplib import consts

Alphabet = Literal["gsm7", "latin1", "ucs2"]

#: alphabet -> (data_coding, octets per unit, single-SMS units, per-part units with a UDH)
ALPHABETS: dict[str, tuple[int, int, int, int]] = {
    "gsm7": (consts.SMPP_ENCODING_DEFAULT, 1, consts.SEVENBIT_LENGTH, consts.SEVENBIT_PART_SIZE),
    "latin1": (consts.SMPP_ENCODING_DEFAULT, 1, consts.EIGHTBIT_LENGTH,
               consts.EIGHTBIT_PART_SIZE),
    "ucs2": (consts.SMPP_ENCODING_ISO10646, 2, consts.UCS2_LENGTH // 2,
             consts.UCS2_PART_SIZE // 2),
}
UDH_LEN = 6
MAX_PARTS = 255


class TooLong(ValueError):
    """The text needs more than 255 parts."""


@dataclass(frozen=True)
class Encoded:
    alphabet: Alphabet
    data_coding: int
    #: each part's short_message, UDH included when ``udh`` is true
    parts: tuple[bytes, ...]
    esm_class: int
    udh: bool
    #: the concatenation reference (same in every part; 0 for a single SMS)
    ref: int

    @property
    def count(self) -> int:
        return len(self.parts)


def choose(text: str, *, iso: bool = False) -> tuple[Alphabet, list[bytes]]:
    """The smallest alphabet that holds ``text``, and the text encoded in it, one item per
    character (a GSM escape pair or a UTF-16 surrogate pair stays one item)."""
    if "\x1b" not in text:  # a bare ESC would swallow the next character
        try:
            return "gsm7", [c.encode("gsm03.38") for c in text]
        except UnicodeEncodeError:
            pass
    if iso:
        try:
            return "latin1", [c.encode("iso-8859-1") for c in text]
        except UnicodeEncodeError:
            pass
    return "ucs2", [c.encode("utf-16-be") for c in text]


def _cut(units: list[bytes], limit: int) -> list[bytes]:
    """Pack whole characters into chunks of at most ``limit`` octets."""
    out: list[bytes] = []
    cur: list[bytes] = []
    size = 0
    for u in units:
        if size + len(u) > limit:
            out.append(b"".join(cur))
            cur, size = [], 0
        cur.append(u)
        size += len(u)
    if cur:
        out.append(b"".join(cur))
    return out


def encode(text: str, *, iso: bool = False, ref: int = 0, sar: bool = False) -> Encoded:
    """Encode and cut ``text``. ``ref`` (0-255) is the concatenation reference: pass a value
    derived from the message so a resend is byte-identical to the first send."""
    alphabet, units = choose(text, iso=iso)
    dc, width, single, multi = ALPHABETS[alphabet]
    data = b"".join(units)
    if len(data) <= single * width:
        return Encoded(alphabet, dc, (data,), consts.SMPP_MSGTYPE_DEFAULT, False, 0)
    chunks = _cut(units, multi * width)
    if len(chunks) > MAX_PARTS:
        raise TooLong(f"text needs {len(chunks)} parts; at most {MAX_PARTS} can be joined")
    ref &= 0xFF
    if sar:
        return Encoded(alphabet, dc, tuple(chunks), consts.SMPP_MSGTYPE_DEFAULT, False, ref)
    total = len(chunks)
    parts = tuple(bytes((5, 0, 3, ref, total, i)) + c for i, c in enumerate(chunks, 1))
    return Encoded(alphabet, dc, parts, consts.SMPP_GSMFEAT_UDHI, True, ref)


def decode(short_message: bytes, data_coding: int, *, iso: bool = False,
           udhi: bool = False) -> str:
    """The text of one received part (incoming messages); undecodable octets are replaced."""
    body = short_message
    if udhi and body:
        body = body[1 + body[0]:]
    if data_coding == consts.SMPP_ENCODING_ISO10646:
        return body.decode("utf-16-be", "replace")
    if data_coding in (consts.SMPP_ENCODING_ISO88591, consts.SMPP_ENCODING_BINARY2) or (
            data_coding == consts.SMPP_ENCODING_DEFAULT and iso):
        return body.decode("iso-8859-1")
    if data_coding == consts.SMPP_ENCODING_IA5:
        return body.decode("ascii", "replace")
    return body.decode("gsm03.38", "replace")
