"""``gonets bitrix24 install|show``: make Gonets an SMS provider of a Bitrix24 portal.

``install`` takes the portal's host name, the application's client id and secret (as
references, ``env:VAR`` or ``file:/path``, like every Gonets credential), the public address
of this Gonets API, and the authorization code the portal gives the application (open the
URL ``install`` prints without ``--code``).  It exchanges the code for OAuth tokens,
registers the sender (``messageservice.sender.add``) whose handler is
``<api-url>/v1/integrations/bitrix24/<producer>``, and stores the installation.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> str:  # type: ignore[type-arg]
    p = sub.add_parser("bitrix24", help="make Gonets an SMS provider of a Bitrix24 portal")
    acts = p.add_subparsers(dest="b24_command", required=True)
    a = acts.add_parser("install", help="register the sender on the portal and store what "
                                        "Gonets needs to report statuses")
    a.add_argument("--producer", required=True, help="whose messages these are (e.g. shop)")
    a.add_argument("--portal", required=True, help="the portal's host, e.g. shop.bitrix24.by")
    a.add_argument("--client-id", required=True,
                   help="the application's client_id as a reference: env:VAR or file:/path")
    a.add_argument("--client-secret", required=True,
                   help="the application's client_secret as a reference: env:VAR or "
                        "file:/path")
    a.add_argument("--api-url", required=True,
                   help="this Gonets API's public https address, e.g. https://sms.example.by")
    a.add_argument("--code", help="the authorization code the portal gave the application "
                                  "(run without it to see where to get it)")
    a.add_argument("--name", default="Gonets SMS", help="the sender's name on the portal")
    s = acts.add_parser("show", help="show a producer's installation (no tokens)")
    s.add_argument("--producer", required=True, help="whose installation to show")
    return "bitrix24"


def run(a: argparse.Namespace) -> int:
    from core.errors import ConfigError
    from core.settings import get_settings
    from core.store import Store
    from producers.http import bitrix24_portal as b24

    store = Store.from_settings(get_settings())
    installs = b24.Installations(store)
    if a.b24_command == "show":
        inst = installs.load(a.producer)
        if inst is None:
            print(f"no Bitrix24 installation for {a.producer}", file=sys.stderr)
            return 1
        print(b24.dumps_installation(inst))
        print(f"application token bound: {'yes' if inst.app_token_sha256 else 'not yet'}")
        return 0

    portal = a.portal.strip().lower().removeprefix("https://").rstrip("/")
    if not b24.PORTAL.match(portal):
        print(f"--portal: {a.portal!r} is not a host name like shop.bitrix24.by",
              file=sys.stderr)
        return 2
    api_url = a.api_url.rstrip("/")
    if not (api_url.startswith("https://") or api_url.startswith("http://")):
        print("--api-url must be the http(s) address the portal reaches this API at",
              file=sys.stderr)
        return 2
    try:
        client_id = b24.resolve_ref(a.client_id, "--client-id")
        client_secret = b24.resolve_ref(a.client_secret, "--client-secret")
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if not a.code:
        print("Open this address as a portal administrator, allow the application, and run "
              "again with --code set to the `code` parameter of the address it returns to:\n"
              f"  https://{portal}/oauth/authorize/?client_id={client_id}")
        return 2
    handler = f"{api_url}/v1/integrations/bitrix24/{a.producer}"
    code = b24.sender_code(a.producer)
    with b24.http_client() as client:
        try:
            tokens = b24.oauth(client, {"grant_type": "authorization_code",
                                        "client_id": client_id, "client_secret": client_secret,
                                        "code": a.code})
            inst = b24.Installation(
                producer=a.producer, portal=portal, member_id=str(tokens.get("member_id", "")),
                code=code, handler=handler, client_id=a.client_id,
                client_secret=a.client_secret)
            installs.save(inst)
            installs.set_tokens(a.producer, tokens)
            portal_api = b24.Portal(installs, a.producer, client)
            existing = portal_api.call("messageservice.sender.list", {})
            if isinstance(existing, list) and code in existing:
                # registered before (a reinstall): the handler address may have changed
                portal_api.call("messageservice.sender.delete", {"CODE": code})
            portal_api.call("messageservice.sender.add", {
                "CODE": code, "TYPE": "SMS", "HANDLER": handler, "NAME": a.name,
                "DESCRIPTION": "SMS through Gonets: statuses come back on their own"})
        except b24.PortalError as exc:
            print(f"the portal refused: {exc}", file=sys.stderr)
            return 1
    print(f"sender {code} registered on {portal}; the portal posts messages to {handler}")
    print("statuses go back through `gonets callbacks` (keep it running)")
    return 0
