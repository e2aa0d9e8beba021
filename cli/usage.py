"""``gonets usage``: messages and SMS parts accepted per day, transactional and promotional
apart (for billing and reports; see core/usage.py)."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> str:  # type: ignore[type-arg]
    p = sub.add_parser("usage", help="messages and parts sent per day and kind")
    p.add_argument("--account", help="account name (default: every SMS account)")
    p.add_argument("--days", type=int, default=1, help="how many days back, today included")
    p.add_argument("--json", action="store_true", help="as JSON")
    return "usage"


def run(a: argparse.Namespace) -> int:
    from cli.runfile import require_configuration
    from core import usage
    from core.settings import get_settings
    from core.store import Store

    require_configuration()
    s = get_settings()
    store = Store.from_settings(s)
    names = [a.account] if a.account else [x.name for x in s.sms_accounts()]
    for name in names:
        s.account(name)  # a typo is an error, not an empty report
    data = {name: usage.report(store, name, max(1, a.days)) for name in names}
    if a.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"{'account':<12} {'day':<10} {'kind':<14} {'messages':>9} {'parts':>9}")
    for name, days in data.items():
        for day, kinds in days.items():
            for kind, n in sorted(kinds.items()):
                print(f"{name:<12} {day:<10} {kind:<14} {n['messages']:>9} {n['parts']:>9}")
    return 0
