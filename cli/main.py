"""``gonets``: send, status, worker, run and friends. Each role is imported only when used."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable

from core.errors import ConfigError, GonetsError, InvalidInput, UnknownMessage

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

    producer = get_producer()
    if a.demo:
        return _demo(producer, a.demo, a.account, a.to)
    if not a.to or a.text is None:
        print("gonets send: --to and --text are required (or --demo N)", file=sys.stderr)
        return 2
    msg_id = producer.send_sms(a.to, a.text, sender=a.sender, account=a.account, lane=a.lane,
                               kind=a.kind, validity=a.validity,
                               idempotency_key=a.idempotency_key,
                               options=_parse_options(a.option))
    print(msg_id)
    return 0


def _demo(producer: Any, n: int, account: str | None, to: str | None) -> int:
    from tqdm import tqdm

    from core.contracts import Status

    ids = []
    base = 375291000000
    for i in range(n):
        phone = to or f"+{base + 1000 + i}"
        ids.append(producer.send_sms(phone, f"Gonets demo message {i + 1} of {n}",
                                     account=account))
    final: dict[str, str] = {}
    with tqdm(total=n, desc="final", unit="msg") as bar:
        while len(final) < n:
            pipe = producer.store.r.pipeline()
            pending = [i for i in ids if i not in final]
            for i in pending:
                pipe.hget(producer.store.msg_key(i), "status")
            for i, st in zip(pending, pipe.execute()):
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
    from producers import get_producer

    rec = get_producer().status(a.id)
    if a.json:
        print(json.dumps(rec, ensure_ascii=False, indent=2))
    else:
        from core.privacy import mask_phone

        print(f"{rec['id']}  {rec['status']}  account={rec['account']} "
              f"to={mask_phone(rec['phone'])} parts={rec.get('parts')} "
              f"provider_id={rec.get('provider_id', '-')} error={rec.get('error_code', '-')}")
        for ev in rec["history"]:
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev["at_ms"] / 1000))
            extra = " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("id", "status",
                                                                              "at_ms"))
            print(f"  {at}  {ev['status']:<10} {extra}")
    return 0


@command("poll")
def cmd_poll(a: argparse.Namespace) -> int:
    from producers import get_producer

    get_producer().poll_status(a.id)
    print(f"status poll queued for {a.id}")
    return 0


@command("worker")
def cmd_worker(a: argparse.Namespace) -> int:
    from workers.pool import run_pool

    if a.processes == 1:
        from core.observability import serve_metrics
        from core.settings import get_settings

        try:
            serve_metrics(get_settings().metrics_port)
        except OSError as exc:  # several workers on one host share the setting
            print(f"gonets worker: no /metrics: {exc}", file=sys.stderr)
    return run_pool(a.pool, threads=a.threads, processes=a.processes, health_port=a.health_port)


@command("scheduler")
def cmd_scheduler(a: argparse.Namespace) -> int:
    from core.settings import get_settings
    from scheduler.service import run

    _serve_health(a.health_port, get_settings().redis_url)
    return run()


@command("run")
def cmd_run(a: argparse.Namespace) -> int:
    from cli.run import run

    return run(threads=a.threads)


def _provider(account: str | None) -> Any:
    from core.settings import get_settings
    from core.store import redis_client
    from workers import providers
    from workers.providers.base import ProviderContext

    s = get_settings()
    acct = s.account(account) if account else s.account(s.default_account or s.accounts[0].name)
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
    from core.settings import get_settings

    s = get_settings()
    print(json.dumps({"redis_url": s.redis_url, "accounts": [
        {"name": x.name, "provider": x.provider, "base_urls": x.base_urls,
         "credentials": sorted(x.credentials)} for x in s.accounts]}, indent=2))
    return 0


@command("api")
def cmd_api(a: argparse.Namespace) -> int:
    from producers.http.serve import serve

    return serve(a.host, a.port, workers=a.workers)


@command("callbacks")
def cmd_callbacks(a: argparse.Namespace) -> int:
    from core.settings import get_settings
    from producers.http.callbacks import run_dispatcher

    settings = get_settings()
    _serve_health(a.health_port, settings.redis_url)
    return run_dispatcher(settings, threads=a.threads)


def _serve_health(port: int | None, redis_url: str) -> None:
    """``--health-port`` of a role without an HTTP server of its own: /healthz and /readyz
    (workers.health) fail while the process cannot reach Redis."""
    if port is None:
        return
    from workers import health

    health.register_check("redis", health.redis_check(redis_url))
    health.HealthServer(port).start()


@command("token")
def cmd_token(a: argparse.Namespace) -> int:
    from core.settings import get_settings
    from core.store import redis_client
    from producers.http.auth import Tokens

    s = get_settings()
    tokens = Tokens(redis_client(s.redis_url), s.namespace)
    if a.token_command == "create":
        t = tokens.create(a.producer, a.scopes)
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
    for t in tokens.list():
        print(f"{t['id']}  producer={t['producer']}  scopes={t['scopes']}")
    return 0


@command("pay")
def cmd_pay(a: argparse.Namespace) -> int:
    """MTS Money through bePaid: check, create, status, sweep, webhooks."""
    if a.pay_command == "webhooks":
        import uvicorn

        from core.settings import get_settings
        from producers.http.bepaid_webhook import make_app

        uvicorn.run(make_app(get_settings()), host=a.host, port=a.port, log_level="warning")
        return 0
    from producers.payments import get_payments

    pay = get_payments()
    if a.pay_command == "check":
        rec = pay.check_result(pay.check_mts_money(a.phone, account=a.account), wait_s=a.wait)
        print(json.dumps({k: rec.get(k) for k in ("id", "status", "result", "code", "message",
                                                  "friendly_message", "reason") if rec.get(k)},
                         ensure_ascii=False))
        return 0 if rec["status"] == "done" else 1
    if a.pay_command == "create":
        pay_id = pay.pay_mts_money(a.phone, a.amount, description=a.description,
                                   currency=a.currency, customer_answer=a.answer,
                                   check_id=a.check_id, account=a.account,
                                   return_url=a.return_url, idempotency_key=a.idempotency_key)
        print(pay_id)
        return 0
    if a.pay_command == "status":
        rec = pay.payment(a.id)
        if a.json:
            print(json.dumps(rec, ensure_ascii=False, indent=2))
            return 0
        from core.privacy import mask_phone

        print(f"{rec['id']}  {rec['status']}  account={rec['account']} "
              f"phone={mask_phone(rec['phone'])} amount={rec['amount']} {rec['currency']} "
              f"(minor units) uid={rec.get('uid', '-')} bepaid={rec.get('provider_status', '-')}")
        for ev in rec["history"]:
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev["at_ms"] / 1000))
            extra = " ".join(f"{k}={v}" for k, v in ev.items()
                             if k not in ("id", "kind", "status", "at_ms"))
            print(f"  {at}  {ev['status']:<10} {extra}")
        return 0
    if a.pay_command == "sweep":
        print("pending sweep queued for " + ", ".join(pay.sweep_pending_payments(a.account)))
        return 0
    return 2


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gonets", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("send", help="queue an SMS and print its id")
    p.add_argument("--to")
    p.add_argument("--text")
    p.add_argument("--sender")
    p.add_argument("--account")
    p.add_argument("--lane", default="bulk", choices=["urgent", "bulk"])
    p.add_argument("--kind", default="transactional", choices=["transactional", "promotional"])
    p.add_argument("--validity", type=int, help="minutes")
    p.add_argument("--idempotency-key")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="provider option, e.g. translit=1 or format=flash")
    p.add_argument("--demo", type=int, metavar="N",
                   help="send N sample messages and show their progress until all are final")

    p = sub.add_parser("status", help="show a message's status and history")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("poll", help="ask the provider for a message's status now")
    p.add_argument("id")

    p = sub.add_parser("worker", help="run the worker pool of one account")
    p.add_argument("--pool", required=True, help="account name")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--health-port", type=int, metavar="PORT",
                   help="serve /healthz (liveness) and /readyz (readiness) on this port")

    p = sub.add_parser("scheduler", help="run the scheduler: status sweeps, pending payments, "
                                         "balance checks (one leader at a time)")
    p.add_argument("--health-port", type=int, metavar="PORT",
                   help="serve /healthz and /readyz on this port")

    p = sub.add_parser("run", help="run everything locally: Redis, sandboxes, workers")
    p.add_argument("--threads", type=int, default=8)

    p = sub.add_parser("balance", help="the account's balance at the provider")
    p.add_argument("--account")

    p = sub.add_parser("cost", help="estimate what a message would cost, without sending")
    p.add_argument("--to", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--sender")
    p.add_argument("--account")
    p.add_argument("--option", action="append", metavar="KEY=VALUE")

    sub.add_parser("config", help="show the effective configuration (no secrets)")

    p = sub.add_parser("api", help="serve the HTTP API (uvicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")

    p = sub.add_parser("callbacks", help="deliver status callbacks (webhooks out)")
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--health-port", type=int, metavar="PORT",
                   help="serve /healthz and /readyz on this port")

    p = sub.add_parser("token", help="create, revoke or list HTTP API tokens")
    tsub = p.add_subparsers(dest="token_command", required=True)
    tp = tsub.add_parser("create", help="create a token and print it (once)")
    tp.add_argument("--producer", required=True, help="who owns the messages sent with it")
    tp.add_argument("--scopes", default="send,read", help="comma-separated: send,pay,read,consent")
    tp = tsub.add_parser("revoke", help="revoke a token by id (or by the token itself)")
    tp.add_argument("id")
    tsub.add_parser("list", help="list tokens (ids, producers, scopes; never the tokens)")

    from cli import bitrix24, consent, sentry, sms2, usage  # each registers its own subcommands

    for extra in (consent, sms2, usage, bitrix24, sentry):
        COMMANDS[extra.add_parser(sub)] = extra.run

    p = sub.add_parser("pay", help="MTS Money payments through bePaid")
    pay = p.add_subparsers(dest="pay_command", required=True)
    q = pay.add_parser("check", help="is MTS Money active for this number? (waits for it)")
    q.add_argument("--phone", required=True)
    q.add_argument("--account")
    q.add_argument("--wait", type=float, default=15.0, help="seconds to wait for the answer")
    q = pay.add_parser("create", help="queue a payment and print its id")
    q.add_argument("--phone", required=True)
    q.add_argument("--amount", type=int, required=True, help="minor units: 1050 = 10.50 BYN")
    q.add_argument("--description", required=True)
    q.add_argument("--currency", default="BYN")
    q.add_argument("--answer", choices=["accept", "decline"],
                   help="the customer's answer to the MTS Money terms")
    q.add_argument("--check-id")
    q.add_argument("--account")
    q.add_argument("--return-url")
    q.add_argument("--idempotency-key")
    q = pay.add_parser("status", help="show a payment's status and history")
    q.add_argument("id")
    q.add_argument("--json", action="store_true")
    q = pay.add_parser("sweep", help="look up every payment pending too long now")
    q.add_argument("--account")
    q = pay.add_parser("webhooks", help="run only the bePaid notification receiver")
    q.add_argument("--host", default="127.0.0.1")
    q.add_argument("--port", type=int, default=8089)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from core.observability import setup

    # logs and Sentry first: sentry-sdk's dramatiq integration must see the broker being built
    setup(args.command, account=getattr(args, "pool", None))
    try:
        return COMMANDS[args.command](args)
    except InvalidInput as exc:
        print(f"gonets: invalid {exc.field}: {exc.reason}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"gonets: configuration error: {exc}", file=sys.stderr)
        return 2
    except UnknownMessage as exc:
        print(f"gonets: no message {exc.args[0]}", file=sys.stderr)
        return 1
    except GonetsError as exc:
        print(f"gonets: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
