"""Provider options, as models producers and workers both validate with (core imports no role).

* **Per-message options** a producer may pass for one provider type (``OPTIONS``), validated
  before enqueueing.  A provider type without a model accepts no options.
* **Account options** (``accounts.<name>.options``): one model per provider type
  (``ACCOUNT_OPTIONS``), read one way, ``account_options`` (the provider modules, with their
  own defaults), ``bepaid_options`` (the payment producer, webhook receiver and worker) or
  ``check_account_options`` (a pool at start).

Unknown keys are errors in both.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import ConfigError
from core.settings import Account, ProviderType

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


class SmscHttpAccountOptions(BaseModel):
    """``options`` of an SMSC HTTP account (smsc-http-api-1c-library.txt)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: 1: comma-separated answers (the 1C library); 3: JSON
    fmt: Literal[1, 3] = 1
    #: seconds after a send before the first status poll; polls then back off
    first_poll_s: float = Field(60.0, gt=0)
    max_poll_interval_s: float = Field(3600.0, gt=0)


#: what a send whose answer was lost becomes where the provider cannot be asked about it
#: (``core.errors.NoLookup``; README "When an answer is lost")
OnLostAnswer = Literal["auto", "resend", "give_up"]


class Sms2HttpAccountOptions(BaseModel):
    """``options`` of an SMS2 account (sms2-http-gate.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the gate has no lookup by a reference of ours: "resend" (it may arrive twice; SMS2
    #: refuses a resend it takes for a duplicate, read as "the first copy went"), "give_up"
    #: (ends ``unknown``), "auto" (urgent transactional messages resend, others give up)
    on_lost_answer: OnLostAnswer = "auto"

    first_poll_s: float = Field(60.0, gt=0)
    max_poll_interval_s: float = Field(3600.0, gt=0)
    #: how long a message waits after a 5xx or an unreachable gate
    retry_delay_s: float = Field(5.0, gt=0)


class MtsRestAccountOptions(BaseModel):
    """``options`` of an MTS Belarus REST account (mts-belarus-sms-pro-and-bitrix.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the API has no lookup by a reference of ours: "resend" (it may arrive twice),
    #: "give_up" (ends ``unknown``), "auto" (urgent transactional messages resend, others
    #: give up)
    on_lost_answer: OnLostAnswer = "auto"

    #: validity (minutes) when the message names none: codes live 5–10 minutes
    transactional_validity_min: int = Field(10, ge=1, le=1440)
    promotional_validity_min: int = Field(1440, ge=1, le=1440)
    #: how long a code-5 (limit exceeded) message waits before it is tried again
    slow_down_delay_s: float = Field(10.0, gt=0)
    #: how long a message waits after a 5xx or an unreachable API
    retry_delay_s: float = Field(5.0, gt=0)
    #: the cached token is refreshed this long (at most a quarter of its life) before MTS
    #: would expire it
    token_refresh_margin_s: float = Field(60.0, ge=0)
    first_poll_s: float = Field(60.0, gt=0)
    max_poll_interval_s: float = Field(3600.0, gt=0)


class SmppAccountOptions(BaseModel):
    """``options`` of an SMPP account (SMSC or MTS; each provider type fills in its own
    defaults, ``workers/providers/smsc_smpp.py`` and ``mts_smpp.py``). Units are in the names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bind_mode: Literal["transceiver", "transmitter", "receiver"] = "transceiver"
    #: simultaneous binds the login allows (``MCONn``); None: one, and no flag is sent
    mcon: int | None = Field(None, ge=1, le=9)
    #: bind with ``ISO``: Latin texts go as ISO-8859-1 instead of GSM 03.38
    iso: bool = False
    #: bind with ``SINGLE``: an id and a receipt per part
    single: bool = False
    #: extra system_type words, sent as given after the flags above
    system_type_extra: list[str] = Field(default_factory=list)
    tls: bool = False
    #: CA bundle the server certificate is verified against (default: the system's)
    ca_file: str | None = None
    verify_tls: bool = True
    max_pending_submits: int = Field(300, ge=1, le=10_000)
    enquire_link_s: float = Field(60.0, gt=0, lt=120)
    response_timeout_s: float = Field(30.0, gt=0)
    #: how long an actor waits for a bind before it gives its message back to the queue
    bind_wait_s: float = Field(20.0, gt=0)
    lease_ttl_s: float = Field(10.0, ge=1)
    backoff_min_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    source_addr_ton: int | None = Field(None, ge=0, le=6)
    source_addr_npi: int | None = Field(None, ge=0, le=18)
    dest_addr_ton: int = Field(1, ge=0, le=6)
    dest_addr_npi: int = Field(1, ge=0, le=18)
    registered_delivery: bool = True
    #: concatenate with SAR TLVs instead of a UDH
    sar: bool = False
    #: the server refuses an identical submit within this many seconds (SMSC: 60); 0: it
    #: does not, so a submit of unknown outcome is never resent within the window's safety
    duplicate_window_s: float = Field(60.0, ge=0)
    #: a submit whose answer was lost past the duplicate window waits this long for its
    #: receipt (matched by number); then ``on_lost_answer`` decides (SMPP has no lookup by a
    #: reference of ours, and a receipt may come a day late: SMSC err 245)
    receipt_wait_s: float = Field(300.0, gt=0)
    #: what such a submit becomes then: "resend" (it may arrive twice), "give_up" (ends
    #: ``unknown``), "auto" (urgent transactional messages resend, others give up)
    on_lost_answer: OnLostAnswer = "auto"
    #: after a receipt with a retryable error (err 220) the message is sent again this much
    #: later, at most ``resubmits`` times in all (251, the provider's flood rule, waits for
    #: the account's flood gap instead)
    retry_receipt_delay_s: float = Field(60.0, gt=0)
    resubmits: int = Field(3, ge=0, le=10)
    #: how the server writes message ids in ``submit_sm_resp`` and in receipts: "decimal",
    #: "hex", or "auto": decimal until the server gives an id with a hex letter (a-f) on that
    #: side, hex from then on (learned once per account, kept in Redis).  An id is read one way
    #: only, so "16" on a decimal account is never also taken for 0x16 = 22
    submit_id_format: Literal["auto", "decimal", "hex"] = "auto"
    receipt_id_format: Literal["auto", "decimal", "hex"] = "auto"
    #: the message types and comment of SMSC (``__MAIL__``… ``\\n~~~\\n``)
    smsc_text_types: bool = True
    first_poll_s: float = Field(600.0, gt=0)
    max_poll_interval_s: float = Field(6 * 3600.0, gt=0)


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


#: provider type -> the model of its accounts' ``options``
ACCOUNT_OPTIONS: dict[ProviderType, type[BaseModel]] = {
    "smsc_http": SmscHttpAccountOptions,
    "sms2_http": Sms2HttpAccountOptions,
    "mts_rest": MtsRestAccountOptions,
    "smsc_smpp": SmppAccountOptions,
    "mts_smpp": SmppAccountOptions,
    "bepaid": BepaidOptions,
}


def check_account_options(account: Account) -> BaseModel:
    """The account's options validated with its provider's model (a ConfigError names a bad
    key): what a pool checks at start, and what any role may check without provider code."""
    return account_options(ACCOUNT_OPTIONS[account.provider], account)
