"""Per-message options a producer may pass for one provider type, validated before enqueueing.

Each provider type has one model; unknown keys are errors.  A provider type without a model
accepts no options.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SmscHttpOptions(BaseModel):
    """SMSC HTTP ``send.php`` options (see smsc-http-api-1c-library.txt)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: 0 as is, 1 transliterate, 2 transliterate "mpaHc/Ium"-style
    translit: Literal[0, 1, 2] = 0
    #: delivery time: DDMMYYhhmm, h1-h2, 0ts (unix time) or +m (minutes from now)
    time: str | None = Field(None, pattern=r"^(\d{10}|\d{1,2}-\d{1,2}|0\d{9,10}|\+\d{1,5})$")
    #: most parts this message may be cut into; the send fails if it needs more
    maxsms: int | None = Field(None, ge=1, le=255)
    #: message format: sms, flash, push (wap-push), hlr, bin, bin_hex, ping, viber
    format: Literal["sms", "flash", "push", "hlr", "bin", "bin_hex", "ping", "viber"] = "sms"
    #: time zone offset (hours from Moscow) for ``time``
    tz: int | None = Field(None, ge=-12, le=12)


class Sms2HttpOptions(BaseModel):
    """SMS2 ``sms.cgi`` options (see sms2-http-gate.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: a Flash SMS, shown at once on the phone's screen
    flash: bool = False


class SmscSmppOptions(BaseModel):
    """SMSC SMPP message types and comment (smsc-smpp.md): typed here, turned into SMSC's text
    conventions (``__MAIL__: …\\nsubj:…``, ``\\n~~~\\n`` comment…) only by the worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["sms", "mail", "call", "viber", "soc", "tgm", "bot", "hlr", "ping"] = "sms"
    #: e-mail subject (type "mail", required there)
    subject: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[^\n]*$")
    #: voice of a call: m, m2, m3, m4, w, w2, w3, w4, optionally ",<language>" (e.g. "w,en")
    voice: str | None = Field(None, pattern=r"^(m|m2|m3|m4|w|w2|w3|w4)(,[a-z]{2})?$")
    #: Telegram bot name for type "bot", e.g. "@shop_bot" (required there)
    bot: str | None = Field(None, pattern=r"^@?[A-Za-z][A-Za-z0-9_]{3,31}$")
    #: a note kept in SMSC's history, never sent to the subscriber
    comment: str | None = Field(None, min_length=1, max_length=500)

    @model_validator(mode="after")
    def _per_type(self) -> "SmscSmppOptions":
        if self.type == "mail" and not self.subject:
            raise ValueError("type 'mail' needs a subject")
        if self.type == "bot" and not self.bot:
            raise ValueError("type 'bot' needs a bot name")
        if self.subject is not None and self.type != "mail":
            raise ValueError("subject is only for type 'mail'")
        if self.voice is not None and self.type != "call":
            raise ValueError("voice is only for type 'call'")
        if self.bot is not None and self.type != "bot":
            raise ValueError("bot is only for type 'bot'")
        return self


OPTIONS: dict[str, type[BaseModel]] = {
    "smsc_http": SmscHttpOptions,
    "sms2_http": Sms2HttpOptions,
    "smsc_smpp": SmscSmppOptions,
}
