"""Masking of personal data. Phone numbers and texts never reach logs or Sentry unmasked, and
masking never garbles an id.

Fields known to hold a number are masked by ``mask_phone`` (``core/observability/scrub.py``
names them).  In free text (log lines, exception messages, URLs) ``scrub_text`` masks what is
a phone number there:

* a number written with its country code, ``+`` and 7–15 digits, grouped or not
  (``+375291234567``, ``+375 29 123-45-67``): always;
* a bare run of 11–15 digits standing on its own (not touching a letter, digit, ``_``, ``-``
  or ``.``) that ``phonenumbers`` reads as a valid number: in international form without the
  ``+`` (how Gonets writes numbers: ``375291234567``) or, starting with the trunk ``8``, in
  the national form of Belarus or Russia (``80291234567``, ``89161234567``).

Digits inside an id are never touched: a hex id (``82ba6191234567a0...``) has letters around
its digit runs, a stream id (``1795123456775-0``) and a dashed uuid have hyphens, a
millisecond time (13 digits from 1 until 2033: never a valid +1 number) is not a number, and
a sequence number or SMSC id (at most 2**31, 10 digits) is shorter than any bare run read as
a phone (every Belarus and Russia number has 11 or 12 digits; a shorter foreign number is
masked where it is written with ``+`` or in a field known to hold a number).
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

#: "+" and digit groups joined by a space, hyphen, dot or brackets; ``_plus`` decides how many
#: groups are the number
_PLUS = re.compile(r"(?<!\w)\+\d+(?:[ ().-]{1,2}\d+)*")
_GROUP = re.compile(r"\d+")
#: a bare digit run standing on its own: not part of a word, a dashed or dotted token
_BARE = re.compile(r"(?<![\w.-])\d{11,15}(?![\w-])")
#: national forms read with the trunk prefix 8 (BY: 80 + 9 digits, RU: 8 + 10 digits)
_NATIONAL_REGIONS = ("BY", "RU")


def mask_phone(phone: str) -> str:
    """``375291234567`` -> ``37529*****67``: country and operator kept, subscriber hidden."""
    digits = phone.lstrip("+")
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:5] + "*" * (len(digits) - 7) + digits[-2:]


def _mask_digits(written: str) -> str:
    """Keep the first three digits (and a ``+``) and the last two; separators stay."""
    total = sum(c.isdigit() for c in written)
    out, seen = [], 0
    for c in written:
        if c.isdigit():
            seen += 1
            out.append(c if seen <= 3 or seen > total - 2 else "*")
        else:
            out.append(c)
    return "".join(out)


def _valid(raw: str, region: str | None) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(raw, region))
    except phonenumbers.NumberParseException:
        return False


@lru_cache(maxsize=4096)
def is_phone_number(digits: str) -> bool:
    """Whether a bare digit run is a phone number (see the module's docstring)."""
    if _valid("+" + digits, None):
        return True
    return digits.startswith("8") and any(_valid(digits, r) for r in _NATIONAL_REGIONS)


def _plus(m: re.Match[str]) -> str:
    """The groups of a ``+`` number up to 15 digits; a group that runs on into letters is the
    start of an id written after the number (``+375291234567 7f3a...``), not part of it."""
    written = m.group(0)
    end, digits = 0, 0
    for i, g in enumerate(_GROUP.finditer(written)):
        if i and (digits + len(g.group(0)) > 15 or
                  (g.end() == len(written) and m.end() < len(m.string)
                   and (m.string[m.end()].isalnum() or m.string[m.end()] in "_-"))):
            break
        end, digits = g.end(), digits + len(g.group(0))
    if digits < 7:  # too short without the last group: the whole is the number
        return _mask_digits(written) if sum(c.isdigit() for c in written) >= 7 else written
    return _mask_digits(written[:end]) + written[end:]


def _bare(m: re.Match[str]) -> str:
    run = m.group(0)
    return _mask_digits(run) if is_phone_number(run) else run


def scrub_text(text: str) -> str:
    """Mask the phone numbers in free text; ids stay as they are."""
    return _BARE.sub(_bare, _PLUS.sub(_plus, text))
