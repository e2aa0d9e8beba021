"""``python -m sandbox``: every provider sandbox in one process, on free ports.

Prints one JSON line mapping each sandbox to its URLs (or host:port), then serves until
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from collections.abc import Callable
from typing import Any

from sandbox import bepaid, mts_rest, smpp_smsc, sms2_http, smsc_http

#: name -> starter returning (stop function, address info). Sandboxes of later providers add
#: themselves here.
STARTERS: dict[str, Callable[[str], tuple[Callable[[], None], Any]]] = {}
#: keyword arguments of a sandbox's app (``--balance``: the money of the paying sandboxes)
APP_KW: dict[str, dict[str, Any]] = {}


def _smsc_http(host: str) -> tuple[Callable[[], None], Any]:
    _, server = smsc_http.serve(host, [0, 0], **APP_KW.get("smsc_http", {}))
    return server.stop, server.urls()


STARTERS["smsc_http"] = _smsc_http


def _mts_rest(host: str) -> tuple[Callable[[], None], Any]:
    _, server = mts_rest.serve(host, 0)
    return server.stop, server.urls()


def _sms2_http(host: str) -> tuple[Callable[[], None], Any]:
    _, server = sms2_http.serve(host, 0, **APP_KW.get("sms2_http", {}))
    return server.stop, server.urls()


STARTERS["mts_rest"] = _mts_rest
STARTERS["sms2_http"] = _sms2_http


def _smpp_smsc(host: str) -> tuple[Callable[[], None], Any]:
    sb, http = smpp_smsc.serve(host, tls=True)

    def stop() -> None:
        sb.stop()
        http.stop()

    return stop, {**sb.info(), "control": http.urls()[0]}


STARTERS["smpp_smsc"] = _smpp_smsc


def _bepaid(host: str) -> tuple[Callable[[], None], Any]:
    app, server = bepaid.serve(host, 0)

    def stop() -> None:
        app.stop()
        server.stop()

    return stop, server.urls()[0]


STARTERS["bepaid"] = _bepaid


def main() -> None:
    ap = argparse.ArgumentParser(description="Run every provider sandbox")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--balance", type=float, metavar="RUB",
                    help="start the SMSC and SMS2 sandboxes with this balance (`gonets run` "
                         "gives enough for the README's examples)")
    args = ap.parse_args()
    if args.balance is not None:
        APP_KW["smsc_http"] = {"balance": args.balance}
        APP_KW["sms2_http"] = {"balance": args.balance}
    stops = []
    info = {}
    for name, start in STARTERS.items():
        stop, where = start(args.host)
        stops.append(stop)
        info[name] = where
    # the handler only flips a flag: one that takes a lock (Event.set) deadlocks when the
    # signal lands while this thread holds that lock (inside Event.wait).  It is in place
    # before the addresses are printed: whoever reads them may stop us at once.
    signals: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: signals.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: signals.append(signum))
    print(json.dumps(info), flush=True)
    while not signals:
        time.sleep(0.2)
    for stop in stops:
        stop()


if __name__ == "__main__":
    main()
