"""``gonets sms2 …``: SMS2 phone bases, campaigns, balance and MMS."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> str:  # type: ignore[type-arg]
    sub.add_parser("sms2", help="SMS2: phone bases, campaigns, balance, MMS")
    return "sms2"


def run(a: argparse.Namespace) -> int:
    return 2
