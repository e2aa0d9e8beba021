"""What a text costs in SMS: its encoding (GSM 03.38 or UCS-2) and number of parts.

GSM 03.38 is checked with the ``gsm0338`` codec (extension-table characters such as ``€``
and ``{`` take two septets).  Single SMS hold 160 septets or 70 UCS-2 units; concatenated
parts lose 6 octets to the UDH and hold 153 septets or 67 units.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def is_gsm7(text: str) -> bool:
    try:
        text.encode("gsm03.38")
    except UnicodeEncodeError:
        return False
    return True


def analyse(text: str) -> TextInfo:
    if is_gsm7(text):
        enc: Encoding = "gsm7"
        units = len(text.encode("gsm03.38"))
    else:
        enc = "ucs2"
        units = len(text.encode("utf-16-be")) // 2
    parts = 1 if units <= SINGLE[enc] else -(-units // MULTI[enc])
    return TextInfo(encoding=enc, units=units, parts=parts)
