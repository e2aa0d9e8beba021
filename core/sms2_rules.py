"""What the SMS2 gate accepts (sms2-http-gate.md, ``sms.cgi`` and ``start_multicast``), as pure
checks shared by the producer (refuse before enqueueing) and the provider (never send what the
gate would refuse).  Each failure is an ``InvalidInput`` naming the field.

* ``message``: Windows-1251, at most 268 characters, not empty, and no word mixing Latin and
  Cyrillic letters (the gate answers ``Error: can't send this message`` to those);
* ``from``: 3–11 characters, Latin letters or Latin letters and digits;
* ``phone``: 11 digits starting with 7.
"""

from __future__ import annotations

import re

from core.errors import InvalidInput

MAX_CHARS = 268
ENCODING = "cp1251"
SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9]{3,11}$")
PHONE = re.compile(r"^7\d{10}$")
_WORD = re.compile(r"\w+")
_LATIN = re.compile(r"[A-Za-z]")
_CYRILLIC = re.compile(r"[\u0400-\u04FF]")


def mixed_words(text: str) -> list[str]:
    """Words that contain both Latin and Cyrillic letters (e.g. a Latin ``p`` in ``пpивет``)."""
    return [w for w in _WORD.findall(text) if _LATIN.search(w) and _CYRILLIC.search(w)]


def check_text(text: str, field: str = "text") -> str:
    if not text.strip():
        raise InvalidInput(field, "must not be empty")
    try:
        text.encode(ENCODING)
    except UnicodeEncodeError as exc:
        bad = text[exc.start:exc.end]
        raise InvalidInput(field, f"SMS2 takes Windows-1251 text only; {bad!r} cannot be "
                                  "encoded in it") from None
    if len(text) > MAX_CHARS:
        raise InvalidInput(field, f"SMS2 takes at most {MAX_CHARS} characters; this text has "
                                  f"{len(text)}")
    mixed = mixed_words(text)
    if mixed:
        raise InvalidInput(field, "SMS2 refuses words that mix Latin and Cyrillic letters: "
                                  + ", ".join(repr(w) for w in mixed[:3]))
    return text


def check_sender(sender: str | None, field: str = "sender") -> str:
    if not sender or not SENDER.match(sender):
        raise InvalidInput(field, "SMS2 needs a sender name of 3–11 Latin letters, or Latin "
                                  "letters and digits")
    return sender


def check_phone(phone: str, field: str = "to") -> str:
    digits = phone.strip().lstrip("+")
    if not PHONE.match(digits):
        raise InvalidInput(field, "SMS2 sends to numbers of 11 digits starting with 7 "
                                  "(Russia) only")
    return digits


def check_message(phone: str, text: str, sender: str | None) -> None:
    """Everything ``sms.cgi`` checks, for one message already normalised by the producer."""
    check_phone(phone)
    check_text(text)
    check_sender(sender)
