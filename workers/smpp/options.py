"""SMPP account addresses, and SMSC's text conventions for typed messages.

The ``host:port`` reader for an SMPP account's servers (its ``options`` model,
``SmppAccountOptions``, is in ``core.provider_options``), and ``smsc_text``: the text SMSC
must receive for a typed message (``__MAIL__``… prefixes and the ``\\n~~~\\n`` comment,
shared/providers/smsc-smpp.md).
"""

from __future__ import annotations

from typing import Any

from core.errors import ConfigError, Permanent

#: SMSC's message-type prefixes (smsc-smpp.md, "Sending a …")
TYPE_PREFIX = {"mail": "__MAIL__: ", "call": "__CALL__: ", "viber": "__VIBER__: ",
               "soc": "__SOC__: ", "tgm": "__TGM__: ", "bot": "__BOT__: "}
CONTROL_MARKERS = ("__MAIL__", "__CALL__", "__VIBER__", "__SOC__", "__TGM__", "__BOT__",
                   "__HLR__", "__PING__")
COMMENT = "\n~~~\n"


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
