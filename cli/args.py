"""Arguments several subcommands share."""

from __future__ import annotations

import argparse
import os


def account_option(p: argparse.ArgumentParser, what: str = "account") -> None:
    p.add_argument("--account", metavar="NAME",
                   help=f"the {what} to use (default: routed by number, or the default one)")


def debugging(args: argparse.Namespace | None) -> bool:
    if args is not None and getattr(args, "debug", False):
        return True
    return os.environ.get("GONETS_LOG_LEVEL", "").lower() == "debug"
