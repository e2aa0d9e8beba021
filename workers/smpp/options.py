"""What an SMPP account's options mean on the wire: its servers, its bind, its submit_sm.

The ``host:port`` reader for an SMPP account's servers (its ``options`` model,
``SmppAccountOptions``, is in ``core.provider_options``), the bind's ``system_type`` flags,
the submit_sm parameters of a message, and ``smsc_text``: the text SMSC must receive for a
typed message (``__MAIL__``… prefixes and the ``\\n~~~\\n`` comment,
shared/providers/smsc-smpp.md).  Pure functions: no I/O.
"""

from __future__ import annotations

from typing import Any

from smpplib import consts

from core.errors import ConfigError, Permanent
from core.provider_options import SmppAccountOptions
from workers.providers.base import Outgoing
from workers.smpp import codec

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


def system_type(opts: SmppAccountOptions, account: str) -> str:
    """The bind's system_type: SMSC's ``MCONn``, ``ISO``, ``SINGLE`` flags and any extra."""
    flags = []
    if opts.mcon is not None:
        flags.append(f"MCON{opts.mcon}")
    if opts.iso:
        flags.append("ISO")
    if opts.single:
        flags.append("SINGLE")
    flags += opts.system_type_extra
    st = ",".join(flags)
    if len(st) > 12:
        raise ConfigError(f"accounts.{account}: system_type {st!r} is longer "
                          "than SMPP's 12 characters")
    return st


def submit_params(msg: Outgoing, opts: SmppAccountOptions, provider: str) -> list[dict[str, Any]]:
    """The submit_sm parameters of each part of ``msg`` (SMPP v3.4 §4.4.1)."""
    text = smsc_text(msg.text, msg.options) if opts.smsc_text_types else msg.text
    try:
        enc = codec.encode(text, iso=opts.iso, ref=msg.seq & 0xFF, sar=opts.sar)
    except codec.TooLong as exc:
        raise Permanent(str(exc), provider=provider, rejected=True) from exc
    sender = msg.sender or ""
    if opts.source_addr_ton is not None:
        ton, npi = opts.source_addr_ton, opts.source_addr_npi or 0
    elif sender.lstrip("+").isdigit():
        ton, npi = consts.SMPP_TON_INTL, consts.SMPP_NPI_ISDN
    else:
        ton, npi = consts.SMPP_TON_ALNUM, consts.SMPP_NPI_UNK
    base: dict[str, Any] = dict(
        source_addr_ton=ton, source_addr_npi=npi, source_addr=sender.lstrip("+"),
        dest_addr_ton=opts.dest_addr_ton, dest_addr_npi=opts.dest_addr_npi,
        destination_addr=msg.phone, data_coding=enc.data_coding, esm_class=enc.esm_class,
        registered_delivery=1 if opts.registered_delivery else 0,
        priority_flag=1 if msg.lane == "urgent" else 0)
    if msg.validity_min:
        # relative validity (SMPP v3.4 §7.1.1): YYMMDDhhmmss000R
        days, rest = divmod(msg.validity_min, 1440)
        hours, minutes = divmod(rest, 60)
        base["validity_period"] = f"0000{days:02d}{hours:02d}{minutes:02d}00000R"
    out = []
    for i, part in enumerate(enc.parts, 1):
        p = dict(base, short_message=part)
        if opts.sar and enc.count > 1:
            p.update(sar_msg_ref_num=enc.ref, sar_total_segments=enc.count,
                     sar_segment_seqnum=i)
        out.append(p)
    return out
