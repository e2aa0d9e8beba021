"""What a text costs in SMS: its encoding (GSM 03.38 or UCS-2) and number of parts.

GSM 03.38 is checked with the ``gsm0338`` codec (extension-table characters such as ``€``
and ``{`` take two septets).  Single SMS hold 160 septets or 70 UCS-2 units; concatenated
parts lose 6 octets to the UDH and hold 153 septets or 67 units.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)
from gsm0338.charset import BASIC_CHARACTER_SET, BASIC_CHARACTER_SET_EXTENSION

Encoding = Literal["gsm7", "ucs2"]

SINGLE = {"gsm7": 160, "ucs2": 70}
MULTI = {"gsm7": 153, "ucs2": 67}


@dataclass(frozen=True)
class TextInfo:
    encoding: Encoding
    units: int  # septets (gsm7) or UTF-16 code units (ucs2)
    parts: int


def _gsm_table() -> tuple[dict[int, None], dict[int, None]]:
    """Every character the ``gsm0338`` codec encodes: its character sets (the basic one and its
    extension table, the tables the codec builds its map from), each character kept with the
    septets the codec's own encoding of it takes. Returns two ``str.translate`` tables: one
    deletes every such character, the other only the one-septet ones (an extension-table
    character such as ``€`` costs two)."""
    septets: dict[str, int] = {}
    for name in (*BASIC_CHARACTER_SET.values(), *BASIC_CHARACTER_SET_EXTENSION.values()):
        char = unicodedata.lookup(name)
        septets[char] = len(char.encode("gsm03.38"))
    return (dict.fromkeys(map(ord, septets)),
            dict.fromkeys(ord(c) for c, n in septets.items() if n == 1))


_DROP_GSM, _DROP_ONE_SEPTET = _gsm_table()


def _gsm7_units(text: str) -> int | None:
    """Septets of ``text`` in GSM 03.38, or None if a character has no GSM 03.38 form: what the
    ``gsm0338`` codec's encoding of ``text`` would measure (every character costs its own
    septets), in two passes of ``str.translate`` (the codec's own ``encode`` of a whole text
    grows a ``bytes`` by ``+=``: quadratic). ``tests/test_validation.py`` proves them equal."""
    if text.translate(_DROP_GSM):
        return None
    return len(text) + len(text.translate(_DROP_ONE_SEPTET))


def is_gsm7(text: str) -> bool:
    return _gsm7_units(text) is not None


def analyse(text: str) -> TextInfo:
    """Encoding, units and parts of ``text``; linear in its length. A lone surrogate counts as
    one UCS-2 unit (the producer refuses such texts before asking)."""
    gsm_units = _gsm7_units(text)
    if gsm_units is not None:
        enc: Encoding = "gsm7"
        units = gsm_units
    else:
        enc = "ucs2"
        units = len(text.encode("utf-16-be", "surrogatepass")) // 2
    parts = 1 if units <= SINGLE[enc] else -(-units // MULTI[enc])
    return TextInfo(encoding=enc, units=units, parts=parts)
