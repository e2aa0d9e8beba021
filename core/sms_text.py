"""What a text costs in SMS: its encoding (GSM 03.38 or UCS-2) and number of parts.

GSM 03.38 is checked with the ``gsm0338`` codec (extension-table characters such as ``€``
and ``{`` take two septets).  Single SMS hold 160 septets or 70 UCS-2 units; concatenated
parts lose 6 octets to the UDH and hold 153 septets or 67 units.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

Encoding = Literal["gsm7", "ucs2"]

SINGLE = {"gsm7": 160, "ucs2": 70}
MULTI = {"gsm7": 153, "ucs2": 67}


@dataclass(frozen=True)
class TextInfo:
    encoding: Encoding
    units: int  # septets (gsm7) or UTF-16 code units (ucs2)
    parts: int


@lru_cache(maxsize=4096)
def _septets(char: str) -> int | None:
    """Septets of one character in GSM 03.38 (1, or 2 for the extension table), None when it
    has none. The ``gsm0338`` codec encodes character by character, so a text costs the sum of
    its characters; asking it per distinct character keeps ``analyse`` linear (the codec's own
    ``encode`` of a whole text grows a ``bytes`` by ``+=``: quadratic)."""
    try:
        return len(char.encode("gsm03.38"))
    except UnicodeEncodeError:
        return None


def _gsm7_units(text: str) -> int | None:
    """Septets of ``text`` in GSM 03.38, or None if a character has no GSM 03.38 form."""
    units = 0
    for char, count in Counter(text).items():
        septets = _septets(char)
        if septets is None:
            return None
        units += septets * count
    return units


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
