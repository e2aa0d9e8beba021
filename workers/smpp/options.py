"""What an SMPP account is configured with, and SMSC's text conventions for typed messages.

``accounts.<name>.options`` of an SMPP account (``SmppAccountOptions``), the ``host:port``
reader for its servers, and ``smsc_text``: the text SMSC must receive for a typed message
(``__MAIL__``… prefixes and the ``\\n~~~\\n`` comment, shared/providers/smsc-smpp.md).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.errors import ConfigError, Permanent

#: SMSC's message-type prefixes (smsc-smpp.md, "Sending a …")
TYPE_PREFIX = {"mail": "__MAIL__: ", "call": "__CALL__: ", "viber": "__VIBER__: ",
               "soc": "__SOC__: ", "tgm": "__TGM__: ", "bot": "__BOT__: "}
CONTROL_MARKERS = ("__MAIL__", "__CALL__", "__VIBER__", "__SOC__", "__TGM__", "__BOT__",
                   "__HLR__", "__PING__")
COMMENT = "\n~~~\n"


class SmppAccountOptions(BaseModel):
    """``accounts.<name>.options`` of an SMPP account. Units are in the names."""

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
    #: does not, so a submit of unknown outcome is never resent before ``receipt_wait_s``
    duplicate_window_s: float = Field(60.0, ge=0)
    #: after this long without a receipt a submit of unknown outcome is taken as never sent
    receipt_wait_s: float = Field(6 * 3600.0, gt=0)
    #: after a receipt with a retryable error (err 220) the message is sent again this much
    #: later, at most ``resubmits`` times in all (251, the provider's flood rule, waits for
    #: the account's flood gap instead)
    retry_receipt_delay_s: float = Field(60.0, gt=0)
    resubmits: int = Field(3, ge=0, le=10)
    #: the message types and comment of SMSC (``__MAIL__``… ``\\n~~~\\n``)
    smsc_text_types: bool = True
    first_poll_s: float = Field(600.0, gt=0)
    max_poll_interval_s: float = Field(6 * 3600.0, gt=0)


def split_host(value: str, default_port: int | None, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    if default_port is None:
        raise ConfigError(f"{what}: no port (set smpp_port or write host:port)")
    return value, default_port


def smsc_text(text: str, options: dict[str, Any]) -> str:
    """The text SMSC must receive for a typed message (smsc-smpp.md)."""
    kind = options.get("type", "sms")
    if any(text.startswith(m) for m in CONTROL_MARKERS) or COMMENT in text:
        raise Permanent("the text holds SMSC control markers (__TYPE__ or \\n~~~\\n); "
                        "use the message options instead", provider="smpp", rejected=True)
    if kind == "hlr":
        out = "__HLR__"
    elif kind == "ping":
        out = "__PING__"
    elif kind == "tgm":
        if not (text.isdigit() and 4 <= len(text) <= 8 and text.isascii()):
            raise Permanent("a Telegram code must be 4-8 digits", provider="smpp",
                            rejected=True)
        out = TYPE_PREFIX["tgm"] + text
    elif kind == "mail":
        out = f"{TYPE_PREFIX['mail']}{text}\nsubj:{options['subject']}"
    elif kind == "call":
        out = TYPE_PREFIX["call"] + text + (f"\nvoice:{options['voice']}"
                                            if options.get("voice") else "")
    elif kind == "bot":
        bot = options["bot"] if options["bot"].startswith("@") else "@" + options["bot"]
        out = f"{TYPE_PREFIX['bot']}{text}\nbot:{bot}"
    elif kind in TYPE_PREFIX:
        out = TYPE_PREFIX[kind] + text
    else:
        out = text
    if options.get("comment"):
        out += COMMENT + options["comment"]
    return out
