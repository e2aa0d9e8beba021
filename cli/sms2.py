"""gonets sms2: SMS2 phone bases and campaigns (api_call.cgi), balance and MMS.

    gonets sms2 bases                                   list the phone bases
    gonets sms2 add       --base B --phone P            add one number
    gonets sms2 add-batch --base B (--phones P,P | --file F)   add many (one a line in F)
    gonets sms2 check     --base B --phone P            is the number in the base?
    gonets sms2 get       --base B                      the numbers of a base
    gonets sms2 remove    --base B --phone P            remove one number
    gonets sms2 multicast --bases B1,B2 --text T --sender S [--start-at 'YYYY-MM-DD HH:MM']
    gonets sms2 balance                                 balance and overdraft
    gonets sms2 mms --to P --subject S --text T --picture pic.png

--account NAME picks the SMS2 account (default: the first sms2_http account); like every
option it goes after the action (gonets sms2 balance --account sms2).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from core.errors import ConfigError, InvalidInput


def add_parser(sub: argparse._SubParsersAction) -> str:  # type: ignore[type-arg]
    p = sub.add_parser("sms2", help="SMS2: phone bases, campaigns, balance, MMS",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # accepted before the action too, as it was documented once
    p.add_argument("--account", help=argparse.SUPPRESS)
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_: str) -> argparse.ArgumentParser:
        a: argparse.ArgumentParser = acts.add_parser(name, help=help_, description=help_)
        a.add_argument("--account", metavar="NAME", default=argparse.SUPPRESS,
                       help="SMS2 account name (default: the first one)")
        return a

    action("bases", "list the phone bases")
    for name, help_ in (("add", "add a number to a base"), ("check", "is a number in a base"),
                        ("remove", "remove a number from a base")):
        a = action(name, help_)
        a.add_argument("--base", required=True, help="the base's name")
        a.add_argument("--phone", required=True, help="the number")
    a = action("add-batch", "add many numbers to a base")
    a.add_argument("--base", required=True, help="the base's name")
    a.add_argument("--phones", help="comma-separated numbers")
    a.add_argument("--file", help="a file with one number a line")
    a = action("get", "the numbers of a base")
    a.add_argument("--base", required=True, help="the base's name")
    a = action("multicast", "queue a campaign to one or more bases")
    a.add_argument("--bases", required=True, help="comma-separated base names")
    a.add_argument("--text", required=True, help="the message text")
    a.add_argument("--sender", required=True, help="a sender name registered at SMS2")
    a.add_argument("--start-at", help="'YYYY-MM-DD HH:MM' (default: now)")
    action("balance", "balance and overdraft")
    a = action("mms", "send an MMS with a PNG picture")
    a.add_argument("--to", required=True, help="the number")
    a.add_argument("--subject", required=True, help="the MMS subject")
    a.add_argument("--text", required=True, help="the MMS text")
    a.add_argument("--picture", required=True, help="a PNG file (300 KB with the texts)")
    return "sms2"


def _read(path: str, field: str, binary: bool = False) -> Any:
    """A file named on the command line; a missing one is a usage error naming it."""
    try:
        return Path(path).read_bytes() if binary else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(field, f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(field, f"{path} is not UTF-8 text") from None


def _provider(account: str | None) -> Any:
    from core.settings import get_settings
    from core.store import redis_client
    from workers import providers
    from workers.providers.base import ProviderContext

    s = get_settings()
    if account:
        acct = s.account(account)
        if acct.provider != "sms2_http":
            raise ConfigError(f"account {account!r} is not an SMS2 account")
    else:
        found = [a for a in s.accounts if a.provider == "sms2_http"]
        if not found:
            raise ConfigError("no sms2_http account is configured")
        acct = found[0]
    return providers.build(acct, ProviderContext(s, redis_client(s.redis_url)))


def _phone(raw: str) -> str:
    from producers.validation import normalise_phone

    return normalise_phone(raw, "RU")


def run(a: argparse.Namespace) -> int:
    from cli.runfile import require_configuration

    require_configuration()
    picture = _read(a.picture, "picture", binary=True) if a.action == "mms" else None
    lines = _read(a.file, "file").splitlines() if getattr(a, "file", None) else []
    p = _provider(a.account)
    try:
        if a.action == "bases":
            for b in p.list_bases():
                print(f"{b.name}\tid={b.id}\tphones={b.phones_total}")
        elif a.action == "add":
            p.add_phone(a.base, _phone(a.phone))
            print("Success")
        elif a.action == "add-batch":
            raw = (a.phones or "").split(",") if a.phones else []
            raw += lines
            res = p.add_phones(a.base, [x for x in raw if x.strip()])
            print(json.dumps({"added": res.added, "errors": res.errors}))
        elif a.action == "check":
            print("Yes" if p.has_phone(a.base, _phone(a.phone)) else "No")
        elif a.action == "get":
            for phone in p.get_base(a.base):
                print(phone)
        elif a.action == "remove":
            p.remove_phone(a.base, _phone(a.phone))
            print("Success")
        elif a.action == "multicast":
            start = None
            if a.start_at:
                try:
                    start = datetime.strptime(a.start_at, "%Y-%m-%d %H:%M")
                except ValueError:
                    raise InvalidInput("start_at", "must be 'YYYY-MM-DD HH:MM'") from None
            p.start_multicast(a.bases.split(","), a.text, a.sender, start)
            print("Success")
        elif a.action == "balance":
            c = p.credit()
            print(f"balance {c.balance} RUB, overdraft {c.overdraft} RUB")
        elif a.action == "mms":
            print(p.send_mms(_phone(a.to), a.subject, a.text, picture))
    finally:
        p.close()
    return 0
