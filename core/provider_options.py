"""Provider options, as models producers and workers both validate with (core imports no role).

* **Per-message options** a producer may pass for one provider type (``OPTIONS``), validated
  before enqueueing.  A provider type without a model accepts no options.
* **Account options** (``accounts.<name>.options``), read one way: ``account_options`` with the
  provider's model (``ACCOUNT_OPTIONS``; bePaid's is ``BepaidOptions``).

Unknown keys are errors in both.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import ConfigError
from core.settings import Account

M = TypeVar("M", bound=BaseModel)


def account_options(model: type[M], account: Account,
                    defaults: dict[str, Any] | None = None) -> M:
    """The account's ``options`` read with the provider's own model; a bad or unknown key is
    a ConfigError that names ``accounts.<name>.options.<key>``."""
    try:
        return model.model_validate({**(defaults or {}), **account.options})
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"accounts.{account.name}.options."
                          f"{'.'.join(str(x) for x in err['loc'])}: {msg}") from None


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
    def _per_type(self) -> SmscSmppOptions:
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


# --- account options -----------------------------------------------------------------------


class BepaidOptions(BaseModel):
    """``options`` of a bePaid account (MTS Money; unknown keys are errors). The producer, the
    webhook receiver and the worker all read them through ``bepaid_options``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: X-API-Version of the check request: 2 or 3 (they answer in different formats)
    api_version: Literal[2, 3] = 2
    #: send ``test: true`` (bePaid's test mode with its test numbers)
    test: bool = False
    #: where bePaid sends notifications: Gonets' receiver, ``.../v1/webhooks/bepaid/<account>``;
    #: ``${VAR}`` is expanded when the settings are loaded. Unset: no webhooks, the sweep finds
    #: the status
    notification_url: str | None = None
    #: where the customer returns when the payment is done (a producer may give its own)
    return_url: str | None = None
    currencies: list[str] = Field(default_factory=lambda: ["BYN"])
    #: a payment pending this long is looked up at bePaid by the sweep
    pending_lookup_after_s: float = Field(300.0, gt=0)
    #: lookups of a payment still pending then back off up to this interval
    max_lookup_interval_s: float = Field(3600.0, gt=0)
    #: a check that cannot reach bePaid after this many attempts ends as ``error``
    check_max_attempts: int = Field(4, ge=1, le=50)

    @field_validator("currencies")
    @classmethod
    def _iso(cls, v: list[str]) -> list[str]:
        for c in v:
            if len(c) != 3 or not c.isalpha() or not c.isupper():
                raise ValueError(f"{c!r} is not an ISO 4217 code")
        return v


def bepaid_options(account: Account) -> BepaidOptions:
    """A bePaid account's options, validated (a ConfigError names a bad key)."""
    return account_options(BepaidOptions, account)

