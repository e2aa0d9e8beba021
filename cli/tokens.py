"""``gonets token``: create, revoke or list the HTTP API's tokens (stored hashed)."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> str:  # type: ignore[type-arg]
    p = sub.add_parser("token", help="create, revoke or list HTTP API tokens")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    tp = tsub.add_parser("create", help="create a token and print it (once)")
    tp.add_argument("--producer", required=True, help="who owns the messages sent with it")
    tp.add_argument("--scopes", default="send,read", help="comma-separated: send,pay,read,consent")
    tp.add_argument("--allow-private-callbacks", action="store_true",
                    help="let this producer's callback_url reach loopback, private and "
                         "link-local addresses (a receiver on this host or network)")
    tp = tsub.add_parser("revoke", help="revoke a token by id (or by the token itself)")
    tp.add_argument("id", help="the token's id (or the token)")
    tsub.add_parser("list", help="list tokens (ids, producers, scopes; never the tokens)")
    tp = tsub.add_parser("private-callbacks",
                         help="allow or refuse a producer's callbacks to loopback, private, "
                              "link-local and metadata addresses (refused by default)")
    tp.add_argument("--producer", required=True, help="whose callbacks")
    tp.add_argument("setting", choices=["allow", "refuse"], help="allow or refuse them")
    return "token"


def run(a: argparse.Namespace) -> int:
    from core.settings import get_settings
    from core.store import redis_client
    from producers.http.auth import Tokens

    s = get_settings()
    tokens = Tokens(redis_client(s.redis_url), s.namespace)
    if a.token_command == "create":
        t = tokens.create(a.producer, a.scopes)
        if a.allow_private_callbacks:
            tokens.set_private_callbacks(a.producer, True)
        print(json.dumps({"token": t.token, "id": t.id, "producer": t.producer,
                          "scopes": list(t.scopes), "callback_secret": t.callback_secret},
                         indent=2))
        print("Keep the token: only its hash is stored.", file=sys.stderr)
        return 0
    if a.token_command == "revoke":
        if not tokens.revoke(a.id):
            print(f"gonets: no token {a.id}", file=sys.stderr)
            return 1
        print(f"revoked {a.id}")
        return 0
    if a.token_command == "private-callbacks":
        tokens.set_private_callbacks(a.producer, a.setting == "allow")
        print(f"producer {a.producer}: callbacks to private addresses "
              f"{'allowed' if a.setting == 'allow' else 'refused'}")
        return 0
    for t in tokens.list():
        print(f"{t['id']}  producer={t['producer']}  scopes={t['scopes']}")
    return 0
