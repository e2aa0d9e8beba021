"""gonets: send SMS and take MTS Money payments through Redis-backed worker pools.

Start everything locally with "gonets run" (or "make run"); in the project directory every other
command then finds that system by itself (it reads .gonets/run.env). Options go after the
subcommand they belong to, e.g. "gonets sms2 balance --account sms2".

Exit codes: 0 done, 1 a runtime failure (Redis down, provider error, unknown id), 2 a usage
error (bad arguments, bad input, bad configuration). --debug (or GONETS_LOG_LEVEL=debug) shows
the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from cli.args import account_option, debugging
from cli.pay import UnknownPayment
from cli.runfile import NoConfiguration, require_configuration
from core.contracts import Status
from core.errors import ConfigError, GonetsError, InvalidInput, Unavailable, UnknownMessage

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn
    return deco


def _parse_options(pairs: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidInput("options", f"{pair!r} is not KEY=VALUE")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


@command("send")
def cmd_send(a: argparse.Namespace) -> int:
    from producers import get_producer

    require_configuration()
    producer = get_producer()
    name = a.producer or None
    if a.demo is not None:
        if a.demo < 1:
            raise InvalidInput("demo", "must be 1 or more")
        return _demo(producer, a.demo, a.account, a.to, name)
    if not a.to or a.text is None:
        raise InvalidInput("to" if not a.to else "text",
                           "--to and --text are required (or --demo N)")
    got = producer.queue_sms(a.to, a.text, sender=a.sender, account=a.account, lane=a.lane,
                             kind=a.kind, validity=a.validity,
                             idempotency_key=a.idempotency_key,
                             options=_parse_options(a.option), producer=name)
    print(got.id)
    if got.duplicate:  # on stderr: stdout stays the id alone, for scripts
        print(f"duplicate of {got.id}: the same number, sender and text within the duplicate "
              "window (or the same idempotency key); nothing new was queued", file=sys.stderr)
    return 0


def _demo(producer: Any, n: int, account: str | None, to: str | None,
          name: str | None = None) -> int:
    from tqdm import tqdm

    from core.contracts import Status

    ids = []
    base = 375291000000
    for i in range(n):
        phone = to or f"+{base + 1000 + i}"
        ids.append(producer.send_sms(phone, f"Gonets demo message {i + 1} of {n}",
                                     account=account, producer=name))
    final: dict[str, str] = {}
    with tqdm(total=n, desc="final", unit="msg") as bar:
        while len(final) < n:
            pipe = producer.store.r.pipeline()
            pending = [i for i in ids if i not in final]
            for i in pending:
                pipe.hget(producer.store.msg_key(i), "status")
            for i, st in zip(pending, pipe.execute(), strict=True):
                if st and Status(st).final:
                    final[i] = st
                    bar.update(1)
            counts: dict[str, int] = {}
            for st in final.values():
                counts[st] = counts.get(st, 0) + 1
            bar.set_postfix(counts)
            if len(final) < n:
                time.sleep(0.3)
    print(json.dumps({"sent": n, "final": counts}))
    return 0


@command("status")
def cmd_status(a: argparse.Namespace) -> int:
    from core.privacy import mask_phone
    from producers import get_producer

    require_configuration()
    producer = get_producer()
    rec = producer.status(a.id)
    if a.json:  # the HTTP API's shape and types, the number masked as everywhere in the CLI
        from producers.http.sms import event_out, record_out

        out = record_out(producer.store.get(a.id))
        out["to"] = "+" + mask_phone(out["to"])
        out["history"] = [event_out(e) for e in rec["history"]]
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        print(f"{rec['id']}  {rec['status']}  account={rec['account']} "
              f"to={mask_phone(rec['phone'])} parts={rec.get('parts')} "
              f"provider_id={rec.get('provider_id', '-')} error={rec.get('error_code', '-')}")
        waiting = rec.get("waiting_reason")
        if waiting and not Status(rec["status"]).final and rec["status"] != "submitted":
            print(f"  waiting: {waiting}")
        for ev in rec["history"]:
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev["at_ms"] / 1000))
            extra = " ".join(f"{k}={v}" for k, v in ev.items()
                             if k not in ("id", "status", "at_ms") and v not in ("", None))
            print(f"  {at}  {ev['status']:<10} {extra}")
    return 0


@command("poll")
def cmd_poll(a: argparse.Namespace) -> int:
    from producers import get_producer

    require_configuration()
    get_producer().poll_status(a.id)
    print(f"status poll queued for {a.id}")
    return 0


def _provider(account: str | None) -> Any:
    from core.settings import get_settings
    from core.store import redis_client
    from workers import providers
    from workers.providers.base import ProviderContext

    require_configuration()
    s = get_settings()
    if account:
        acct = s.account(account)
    else:
        acct = s.account(s.default_account) if s.default_account else s.sms_accounts()[0]
    if acct.kind != "sms":  # providers.build refuses it too (ConfigError); say it in CLI words
        raise InvalidInput("account", f"{acct.name} is a {acct.provider} account: it sends no "
                                      "SMS, so it has no SMS balance or cost (its payments: "
                                      "gonets pay ...)")
    return providers.build(acct, ProviderContext(s, redis_client(s.redis_url)))


@command("balance")
def cmd_balance(a: argparse.Namespace) -> int:
    b = _provider(a.account).balance()
    print(f"{b.amount} {b.currency}")
    return 0


@command("cost")
def cmd_cost(a: argparse.Namespace) -> int:
    from core.settings import get_settings
    from core.sms_text import analyse
    from producers.validation import normalise_phone
    from workers.providers.base import Outgoing

    s = get_settings()
    phone = normalise_phone(a.to, s.default_region)
    info = analyse(a.text)
    p = _provider(a.account)
    cost_fn = getattr(p, "cost", None)
    if cost_fn is None:
        print(f"{p.account.provider} has no cost estimate", file=sys.stderr)
        return 2
    amount, count = cost_fn(Outgoing(id="estimate", seq=0, phone=phone, text=a.text,
                                     sender=a.sender, parts=info.parts, encoding=info.encoding,
                                     options=_parse_options(a.option)))
    print(f"{amount} for {count} SMS ({info.encoding}, {info.parts} part(s))")
    return 0


@command("config")
def cmd_config(a: argparse.Namespace) -> int:
    from core.redis_conn import describe
    from core.settings import get_settings

    s = get_settings()
    print(json.dumps({"redis_url": describe(s.redis_url), "accounts": [
        {"name": x.name, "provider": x.provider, "base_urls": x.base_urls,
         "credentials": sorted(x.credentials)} for x in s.accounts]}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gonets", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true",
                    help="show the traceback of an unexpected error (also GONETS_LOG_LEVEL=debug)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("send", help="queue an SMS and print its id",
                       description="Queue an SMS and print its id (it is sent in the background).")
    p.add_argument("--to", metavar="PHONE", help="the number, e.g. +375291234567")
    p.add_argument("--text", help="the message text (long texts go as several parts)")
    p.add_argument("--sender", help="sender name (default: the account's)")
    account_option(p)
    p.add_argument("--lane", default="bulk", choices=["urgent", "bulk"],
                   help="urgent messages go before bulk ones (default: bulk)")
    p.add_argument("--kind", default="transactional", choices=["transactional", "promotional"],
                   help="promotional SMS need the number's recorded opt-in (gonets consent)")
    p.add_argument("--validity", type=int, metavar="MINUTES",
                   help="give up if not delivered within this many minutes")
    p.add_argument("--idempotency-key", metavar="KEY",
                   help="the same key returns the first message's id instead of sending again")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="provider option, e.g. translit=1 or format=flash")
    p.add_argument("--producer", default=os.environ.get("GONETS_RUN_PRODUCER"), metavar="NAME",
                   help="send as this producer, so its HTTP API token can read the message "
                        "(default: the one of gonets run, 'demo')")
    p.add_argument("--demo", type=int, metavar="N",
                   help="send N sample messages and show their progress until all are final")

    p = sub.add_parser("status", help="show a message's status and history")
    p.add_argument("id", help="the id gonets send printed")
    p.add_argument("--json", action="store_true", help="as JSON, in the HTTP API's shape")

    p = sub.add_parser("poll", help="ask the provider for a message's status now")
    p.add_argument("id", help="the message id")

    p = sub.add_parser("balance", help="the account's balance at the provider")
    account_option(p, "SMS account")

    p = sub.add_parser("cost", help="estimate what a message would cost, without sending")
    p.add_argument("--to", required=True, metavar="PHONE", help="the number")
    p.add_argument("--text", required=True, help="the message text")
    p.add_argument("--sender", help="sender name (default: the account's)")
    account_option(p, "SMS account")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="provider option")

    sub.add_parser("config", help="show the effective configuration (no secrets)")

    from cli import bitrix24, consent, pay, roles, sentry, sms2, tokens, usage  # each adds its own

    COMMANDS.update(roles.add_parsers(sub))
    for extra in (tokens, consent, sms2, usage, bitrix24, sentry, pay):
        COMMANDS[extra.add_parser(sub)] = extra.run

    return ap


#: commands that start long-running roles: they read no run file (gonets run gives them
#: their environment) and their errors are not the CLI user's
_ROLES = {"run", "worker", "scheduler", "callbacks", "api"}


def _redis_address() -> str:
    try:
        from core.redis_conn import describe
        from core.settings import get_settings

        return describe(get_settings().redis_url)
    except Exception:
        return "the configured address"


def _redis_down(address: str) -> int:
    print(f"gonets: Redis at {address} does not answer; is 'make run' running? (or set "
          "GONETS_REDIS_URL to the Redis of your system)", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        if args.command not in _ROLES:
            from cli.runfile import load_run_environment

            load_run_environment()
            if getattr(args, "producer", "") is None and args.command == "send":
                args.producer = os.environ.get("GONETS_RUN_PRODUCER")
        from core.observability import setup

        # logs and Sentry first: sentry-sdk's dramatiq integration must see the broker built
        setup(args.command, account=getattr(args, "pool", None))
        return COMMANDS[args.command](args)
    except SystemExit as exc:  # argparse: usage errors exit 2 after printing the usage
        return exc.code if isinstance(exc.code, int) else 2
    except InvalidInput as exc:
        print(f"gonets: invalid {exc.field}: {exc.reason}", file=sys.stderr)
        return 2
    except NoConfiguration as exc:  # nothing wrong with the command: the system is not there
        print(f"gonets: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"gonets: configuration error: {exc}", file=sys.stderr)
        return 2
    except UnknownPayment as exc:
        print(f"gonets: no payment {exc.args[0]}", file=sys.stderr)
        return 1
    except UnknownMessage as exc:
        print(f"gonets: no message {exc.args[0]}", file=sys.stderr)
        return 1
    except Unavailable as exc:
        if debugging(args):
            raise
        return _redis_down(exc.address)
    except GonetsError as exc:
        print(f"gonets: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gonets: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (gonets status ID | head -1): nothing more to say, to anyone
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        if debugging(args):
            raise
        import redis

        if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            return _redis_down(_redis_address())
        if isinstance(exc, OSError) and exc.filename:
            print(f"gonets: {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"gonets: {type(exc).__name__}: {exc} (--debug shows the traceback)",
              file=sys.stderr)
        return 1


def entry() -> None:
    """The console script: main()'s code, and no traceback of a broken pipe at exit."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = code or 1
    sys.exit(code)


if __name__ == "__main__":  # python -m cli.main: one module, whichever way it is reached
    import cli.main

    cli.main.entry()
