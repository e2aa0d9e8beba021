"""Input checks for producers. Each failure raises InvalidInput naming the field."""

from __future__ import annotations

import re

import phonenumbers

from core.errors import InvalidInput

_ALNUM_SENDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._&'-]{0,10}$")
_NUMERIC_SENDER = re.compile(r"^\+?\d{3,15}$")


def normalise_phone(raw: object, default_region: str) -> str:
    """E.164 digits without '+', e.g. ``375291234567``."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("to", "a phone number is required")
    text = raw.strip()
    if len(text) > 32:
        raise InvalidInput("to", "too long to be a phone number")
    try:
        num = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        reason = str(exc).split(") ", 1)[-1].rstrip(".").lower()
        raise InvalidInput("to", f"not a phone number: {reason}") from None
    if not phonenumbers.is_valid_number(num):
        raise InvalidInput("to", "not a valid phone number for its country")
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


#: the longest text a producer takes, in characters (checked before anything else looks at
#: the text; the HTTP API's schema says the same): far more than any account's part limit
MAX_TEXT_CHARS = 5000


def check_text(text: object) -> str:
    if not isinstance(text, str):
        raise InvalidInput("text", "must be a string")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInput("text", f"at most {MAX_TEXT_CHARS} characters (got {len(text)})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate (half of a UTF-16 pair): no character
        raise InvalidInput("text", f"is not valid Unicode: a lone surrogate at position "
                                   f"{exc.start}") from None
    if not text.strip():
        raise InvalidInput("text", "must not be empty")
    if "\x00" in text:
        raise InvalidInput("text", "must not contain NUL characters")
    return text


def check_sender(sender: object) -> str | None:
    if sender is None or sender == "":
        return None
    if not isinstance(sender, str):
        raise InvalidInput("sender", "must be a string")
    if _NUMERIC_SENDER.match(sender) or _ALNUM_SENDER.match(sender):
        return sender
    raise InvalidInput(
        "sender", "must be 1–11 Latin letters, digits, space or ._&'- (or a number of 3–15 digits)")


def check_validity(validity_min: object) -> int | None:
    if validity_min is None:
        return None
    if isinstance(validity_min, bool) or not isinstance(validity_min, int):
        raise InvalidInput("validity", "must be a whole number of minutes")
    if not 1 <= validity_min <= 24 * 60:
        raise InvalidInput("validity", "must be between 1 and 1440 minutes")
    return validity_min


def check_idempotency_key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not (1 <= len(key) <= 200) or not key.isprintable():
        raise InvalidInput("idempotency_key", "must be 1–200 printable characters")
    return key


def check_callback_url(url: object, *, allow_private: bool = False) -> str | None:
    """An absolute http(s) URL that status changes are POSTed to, not at this host, its
    network or a metadata service unless ``allow_private`` (producers/callback_targets.py;
    what the name resolves to is checked again when the dispatcher connects)."""
    if url is None or url == "":
        return None
    if not isinstance(url, str) or len(url) > 2000 or not url.isprintable() or " " in url:
        raise InvalidInput("callback_url", "must be an http(s) URL of at most 2000 characters")
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InvalidInput("callback_url", "is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("callback_url", "must be an absolute http:// or https:// URL")
    if not allow_private:
        from producers.callback_targets import host_refusal

        why = host_refusal(parts.hostname)
        if why is not None:
            raise InvalidInput("callback_url", f"must reach a public address: {why} (the "
                               "operator can allow private callbacks for a producer: gonets "
                               "token private-callbacks)")
    return url
