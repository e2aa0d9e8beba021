"""``gonets consent grant|withdraw|show``: the opt-in record for promotional SMS."""

from __future__ import annotations

import argparse
import json
import time


def add_parser(sub: argparse._SubParsersAction) -> str:  # type: ignore[type-arg]
    p = sub.add_parser("consent", help="record, withdraw or show a number's opt-in consent "
                                       "to promotional SMS")
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_ in (("grant", "record that the number opted in"),
                        ("withdraw", "record that the number opted out")):
        a = acts.add_parser(name, help=help_)
        a.add_argument("--to", required=True, help="phone number")
        a.add_argument("--source", required=True,
                       help="where it came from, e.g. 'web form' or 'STOP reply'")
    a = acts.add_parser("show", help="show the consent record and its history")
    a.add_argument("--to", required=True, help="phone number")
    a.add_argument("--json", action="store_true", help="as JSON")
    return "consent"


def run(a: argparse.Namespace) -> int:
    from cli.runfile import require_configuration
    from core.privacy import mask_phone
    from core.settings import get_settings
    from core.store import Store
    from producers import consent

    require_configuration()
    s = get_settings()
    store = Store.from_settings(s)
    region = s.default_region
    if a.action == "grant":
        c = consent.record_consent(store, a.to, source=a.source, region=region)
    elif a.action == "withdraw":
        c = consent.withdraw_consent(store, a.to, source=a.source, region=region)
    else:
        found = consent.get_consent(store, a.to, region=region)
        if found is None:
            print("no consent recorded (promotional SMS to this number are refused)")
            return 1
        c = found
    if getattr(a, "json", False):
        print(json.dumps(c.as_dict(), ensure_ascii=False, indent=2))
        return 0
    state = "granted" if c.granted else "withdrawn"
    print(f"{mask_phone(c.phone)}  consent {state}  source={c.source!r}")
    for ev in c.history:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev["at_ms"] / 1000))
        print(f"  {at}  {ev['action']:<8} {ev['source']}")
    return 0
