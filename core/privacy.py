"""Masking of personal data. Phone numbers and texts never reach logs or Sentry unmasked."""

from __future__ import annotations

import re

_PHONE = re.compile(r"(?<!\d)(\+?\d{3})(\d{3,10})(\d{2})(?!\d)")


def mask_phone(phone: str) -> str:
    """``375291234567`` -> ``37529*****67``: country and operator kept, subscriber hidden."""
    digits = phone.lstrip("+")
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:5] + "*" * (len(digits) - 7) + digits[-2:]


def scrub_text(text: str) -> str:
    """Mask anything in free text that looks like a phone number."""
    return _PHONE.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)
