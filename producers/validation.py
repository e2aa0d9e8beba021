"""Input checks for producers. Each failure raises InvalidInput naming the field."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata

from core.errors import InvalidInput

_ALNUM_SENDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._&'-]{0,10}$")
_NUMERIC_SENDER = re.compile(r"^\+?\d{3,15}$")


class _Country:
    """What phonenumbers concludes about ``+<cc><nsn>`` (digits only) when ``nsn`` has no
    national prefix to strip, no leading zero and belongs to the code's main region: the
    number is valid when ``_number_type_helper`` finds it a type (it matches the general
    description and one type's, each a pattern over the whole number, of one of its possible
    lengths when it lists any), and reads as ``<cc><nsn>``. Built from phonenumbers' own
    metadata for the region: per length, one pattern of the types that allow it."""

    #: the number types ``_number_type_helper`` tries, in its order
    TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager",
             "uan", "voicemail", "fixed_line")

    def __init__(self, region: str) -> None:
        meta = PhoneMetadata.metadata_for_region(region)
        assert meta is not None
        self.region = region
        self.code = str(meta.country_code)
        #: how a number dialled abroad from the region starts ("810"): such digits are read
        #: as that, not as a national number
        self.idd = re.compile(meta.international_prefix) if meta.international_prefix else None
        self.general = (re.compile(meta.general_desc.national_number_pattern)
                        if meta.general_desc and meta.general_desc.national_number_pattern
                        else None)
        prefix = meta.national_prefix_for_parsing
        self.national_prefix = re.compile(prefix) if prefix else None
        self.leading = re.compile(meta.leading_digits) if meta.leading_digits else None
        names = self.TYPES if meta.same_mobile_and_fixed_line_pattern else (*self.TYPES,
                                                                              "mobile")
        types = [d for d in (getattr(meta, n) for n in names)
                 if d is not None and d.national_number_pattern]
        general = meta.general_desc
        #: nsn length -> (the general pattern, the types' patterns as one alternation)
        self.by_length: dict[int, tuple[re.Pattern[str], re.Pattern[str]]] = {}
        if general is None or not general.national_number_pattern:
            return  # phonenumbers finds no number valid: nor does this
        general_re = re.compile(general.national_number_pattern)
        for n in range(1, 18):
            if general.possible_length and n not in general.possible_length:
                continue
            of_n = [f"(?:{d.national_number_pattern})" for d in types
                    if not d.possible_length or n in d.possible_length]
            if of_n:
                self.by_length[n] = (general_re, re.compile("|".join(of_n)))

    def valid_without_plus(self, digits: str) -> bool:
        """``<cc><nsn>`` without its ``+``, as a caller in this region writes it: phonenumbers
        takes the leading digits for the region's own code when they are not its
        international prefix and the whole does not fit the region's general pattern while
        the rest does (``_maybe_extract_country_code``); then ``nsn`` is read as above."""
        if not digits.startswith(self.code) or len(digits) <= len(self.code):
            return False
        if self.idd is not None and self.idd.match(digits):
            return False
        if self.general is None or self.general.fullmatch(digits):
            return False
        return self.valid(digits[len(self.code):])

    def valid(self, nsn: str) -> bool:
        if nsn[0] == "0" or (self.national_prefix and self.national_prefix.match(nsn)):
            return False  # parse would strip or keep zeros: phonenumbers decides
        if self.leading is not None and not self.leading.match(nsn):
            return False  # another region of the code may own it
        patterns = self.by_length.get(len(nsn))
        if patterns is None:
            return False
        general, types = patterns
        return general.fullmatch(nsn) is not None and types.fullmatch(nsn) is not None


def _fast_countries(codes: tuple[int, ...]) -> dict[str, _Country]:
    for cc in codes:  # country codes are prefix-free: "+375…" can only be 375
        assert not any(int(str(cc)[:i]) in COUNTRY_CODE_TO_REGION_CODE
                       for i in range(1, len(str(cc))))
    return {str(cc): _Country(COUNTRY_CODE_TO_REGION_CODE[cc][0]) for cc in codes}


#: the country codes of the countries Gonets serves (Belarus, Russia): a number already in
#: E.164 form there skips phonenumbers' general parser (the costliest step of a send)
_FAST = _fast_countries((375, 7))
_E164 = re.compile(r"\+(" + "|".join(_FAST) + r")([0-9]{2,17})", re.ASCII)
#: the same countries by region, for digits written without the "+" (``375291234567``)
_FAST_REGIONS = {c.region: c for c in _FAST.values()}
_DIGITS = re.compile(r"[0-9]{3,20}", re.ASCII)


def _e164_fast(text: str, default_region: str = "BY") -> str | None:
    """``text``'s E.164 digits when it is ``+<cc><digits>`` of a served country, or the same
    digits without the ``+`` from a caller in that country (``default_region``), and
    phonenumbers would read it as exactly that valid number; None when unsure (phonenumbers
    then decides). ``tests/test_validation.py`` proves the two agree."""
    m = _E164.fullmatch(text)
    if m is not None:
        return text[1:] if _FAST[m[1]].valid(m[2]) else None
    country = _FAST_REGIONS.get(default_region)  # as phonenumbers: "by" is no region
    if country is not None and _DIGITS.fullmatch(text) and country.valid_without_plus(text):
        return text
    return None


def normalise_phone(raw: object, default_region: str) -> str:
    """E.164 digits without '+', e.g. ``375291234567``."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("to", "a phone number is required")
    text = raw.strip()
    if len(text) > 32:
        raise InvalidInput("to", "too long to be a phone number")
    fast = _e164_fast(text, default_region)
    if fast is not None:
        return fast
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
