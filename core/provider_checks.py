"""Per-provider checks of a whole message, run by the producer before anything is enqueued.

provider type -> ``check(phone_digits, text, sender)`` raising ``InvalidInput``.  A provider
whose gate refuses messages the general checks let through (SMS2: Windows-1251 only, mixed
Latin/Cyrillic words, 3–11 character senders) registers its check here, so the caller hears
about it at once instead of seeing the message fail later.
"""

from __future__ import annotations

from collections.abc import Callable

from core import sms2_rules

CHECKS: dict[str, Callable[[str, str, str | None], None]] = {
    "sms2_http": sms2_rules.check_message,
}


def check(provider: str, phone: str, text: str, sender: str | None) -> None:
    fn = CHECKS.get(provider)
    if fn is not None:
        fn(phone, text, sender)
