"""``gonets sentry apply``: the dashboards and alert rules in ``ops/sentry/`` put into a Sentry
organization and project through Sentry's web API, idempotently.

Definitions are JSON in the request format of Sentry's API, one file per object:

* ``dashboards/*.json``: organization dashboards (``/api/0/organizations/{org}/dashboards/``),
  matched by ``title``;
* ``alerts/metric-*.json``: metric alert rules (``/api/0/organizations/{org}/alert-rules/``),
  matched by ``name``;
* ``alerts/issue-*.json``: issue alert rules (``/api/0/projects/{org}/{project}/rules/``),
  matched by ``name``.

A file named ``*.per-account.json`` is applied once per SMS account of the configuration, with
``{account}`` replaced by its name; ``{project}`` is the ``--project`` slug everywhere.

For each definition: absent in Sentry -> created; present but differing in any field the
definition sets (someone edited it by hand) -> put back with PUT; equal -> left alone.  Fields
Sentry adds (ids, dates, authors) are not compared, and nothing we do not define is deleted.
``--dry-run`` prints the plan and changes nothing.  The token comes from ``SENTRY_AUTH_TOKEN``
(scopes ``org:write``, ``alerts:write``, ``project:write``), never from the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "ops" / "sentry"
TOKEN_ENV = "SENTRY_AUTH_TOKEN"


class ApplyError(Exception):
    """Sentry answered something we cannot go on from (auth, validation, not found)."""


def add_parser(sub: argparse._SubParsersAction) -> str:  # type: ignore[type-arg]
    p = sub.add_parser("sentry", help="Sentry dashboards and alert rules as code")
    ss = p.add_subparsers(dest="sentry_command", required=True)
    a = ss.add_parser("apply", help="create or update the dashboards and alert rules in "
                                    "ops/sentry/ (idempotent; token from $SENTRY_AUTH_TOKEN)")
    a.add_argument("--org", required=True, help="organization slug")
    a.add_argument("--project", required=True, help="project slug Gonets reports to")
    a.add_argument("--url", default=os.environ.get("SENTRY_URL", "https://sentry.io"),
                   help="Sentry's address (default $SENTRY_URL or https://sentry.io)")
    a.add_argument("--definitions", type=Path, default=DEFAULT_DIR,
                   help="directory with dashboards/ and alerts/ (default: ops/sentry)")
    a.add_argument("--account", action="append", dest="accounts", metavar="NAME",
                   help="account for the per-account rules (default: every SMS account "
                        "of the configuration)")
    a.add_argument("--dry-run", action="store_true", help="print what would change, change "
                                                          "nothing")
    return "sentry"


def run(a: argparse.Namespace) -> int:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        print(f"gonets sentry: set {TOKEN_ENV} to a Sentry auth token "
              "(org:write, alerts:write, project:write)", file=sys.stderr)
        return 2
    accounts = a.accounts if a.accounts else _sms_accounts()
    try:
        defs = load_definitions(a.definitions, project=a.project, accounts=accounts)
        with SentryApi(a.url, token) as api:
            changes = apply(api, defs, org=a.org, project=a.project, dry_run=a.dry_run)
    except ApplyError as exc:
        print(f"gonets sentry: {exc}", file=sys.stderr)
        return 1
    for c in changes:
        print(c.line(a.dry_run))
    n = sum(c.action != "unchanged" for c in changes)
    print(f"{n} to change, {len(changes) - n} unchanged" if a.dry_run
          else f"{n} changed, {len(changes) - n} unchanged")
    return 0


def _sms_accounts() -> list[str]:
    from core.settings import get_settings

    return [x.name for x in get_settings().sms_accounts()]


# --- definitions ------------------------------------------------------------------------

@dataclass
class Definition:
    kind: str  # dashboard | metric_alert | issue_alert
    key: str  # title or name: how it is found again in Sentry
    body: dict[str, Any]
    source: str


def _fill(value: Any, subs: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in subs.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, subs) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, subs) for v in value]
    return value


def load_definitions(root: Path, *, project: str, accounts: list[str]) -> list[Definition]:
    if not (root / "dashboards").is_dir() and not (root / "alerts").is_dir():
        raise ApplyError(f"no dashboards/ or alerts/ in {root}")
    out: list[Definition] = []
    files = sorted((root / "dashboards").glob("*.json")) + sorted((root / "alerts").glob("*.json"))
    for f in files:
        try:
            body = json.loads(f.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ApplyError(f"{f}: not valid JSON: {exc}") from exc
        if f.parent.name == "dashboards":
            kind, key = "dashboard", "title"
        elif f.name.startswith("metric-"):
            kind, key = "metric_alert", "name"
        elif f.name.startswith("issue-"):
            kind, key = "issue_alert", "name"
        else:
            raise ApplyError(f"{f}: an alert file is named metric-*.json or issue-*.json")
        per_account = f.name.endswith(".per-account.json")
        for account in accounts if per_account else [None]:
            subs = {"project": project, **({"account": account} if account else {})}
            filled = _fill(body, subs)
            if not isinstance(filled.get(key), str) or not filled[key]:
                raise ApplyError(f"{f}: needs a {key!r}")
            out.append(Definition(kind, filled[key], filled, f.name))
    keys = [(d.kind, d.key) for d in out]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise ApplyError(f"two definitions with one name: {sorted(dup)}")
    return out


# --- comparing --------------------------------------------------------------------------

def differences(want: Any, have: Any, path: str = "") -> list[str]:
    """Where ``have`` (Sentry's copy) departs from ``want`` (ours), in the fields ours sets:
    keys Sentry adds are ignored; lists must match item by item."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [path or "."]
        out: list[str] = []
        for k, v in want.items():
            out += differences(v, have.get(k), f"{path}.{k}" if path else k)
        return out
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return [path]
        out = []
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            out += differences(w, h, f"{path}[{i}]")
        return out
    if isinstance(want, (int, float)) and not isinstance(want, bool) \
            and isinstance(have, (int, float)) and not isinstance(have, bool):
        return [] if float(want) == float(have) else [path]
    if isinstance(want, (int, float)) and isinstance(have, str):  # Sentry echoes some as text
        try:
            return [] if float(have) == float(want) else [path]
        except ValueError:
            return [path]
    return [] if want == have else [path]


# --- Sentry's API -----------------------------------------------------------------------

class SentryApi:
    """The few documented endpoints ``apply`` uses, with bearer auth, pagination (``Link``
    header cursors) and retries on 429/5xx and connection errors."""

    def __init__(self, base_url: str, token: str, *, attempts: int = 4) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/") + "/api/0", timeout=30,
                                 headers={"Authorization": f"Bearer {token}"})
        self.attempts = attempts

    def __enter__(self) -> SentryApi:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.http.close()

    def request(self, method: str, path: str, body: Any = None,
                params: dict[str, str] | None = None) -> httpx.Response:
        delay = 0.5
        for attempt in range(self.attempts):
            try:
                resp = self.http.request(method, path, json=body, params=params)
            except httpx.TransportError as exc:
                if attempt == self.attempts - 1:
                    raise ApplyError(f"{method} {path}: {exc}") from exc
            else:
                if resp.status_code == 429 or resp.status_code >= 500:
                    if attempt == self.attempts - 1:
                        raise ApplyError(f"{method} {path}: HTTP {resp.status_code}")
                    wait = resp.headers.get("Retry-After")
                    delay = float(wait) if wait and wait.isdigit() else delay
                elif resp.status_code >= 400:
                    raise ApplyError(f"{method} {path}: HTTP {resp.status_code}: "
                                     f"{resp.text[:300]}")
                else:
                    return resp
            time.sleep(delay)
            delay *= 2
        raise ApplyError(f"{method} {path}: no answer")  # pragma: no cover

    def list(self, path: str) -> Iterator[dict[str, Any]]:
        params: dict[str, str] = {"per_page": "100"}
        while True:
            resp = self.request("GET", path, params=params)
            data = resp.json()
            if not isinstance(data, list):
                raise ApplyError(f"GET {path}: expected a list")
            yield from data
            nxt = _next_cursor(resp.headers.get("Link", ""))
            if nxt is None:
                return
            params = {"per_page": "100", "cursor": nxt}

    def get(self, path: str) -> dict[str, Any]:
        data = self.request("GET", path).json()
        if not isinstance(data, dict):
            raise ApplyError(f"GET {path}: expected an object")
        return data


def _next_cursor(link: str) -> str | None:
    """Sentry's ``Link: <…>; rel="next"; results="true"; cursor="…"``."""
    for part in link.split(","):
        if 'rel="next"' in part and 'results="true"' in part:
            m = re.search(r'cursor="([^"]+)"', part)
            if m:
                return m.group(1)
    return None


# --- applying ---------------------------------------------------------------------------

@dataclass
class Change:
    definition: Definition
    action: str  # create | update | unchanged
    fields: list[str] = field(default_factory=list)

    def line(self, dry_run: bool) -> str:
        d = self.definition
        what = f"{d.kind.replace('_', ' ')} {d.key!r} ({d.source})"
        if self.action == "unchanged":
            return f"unchanged  {what}"
        verb = {"create": "would create" if dry_run else "created",
                "update": "would update" if dry_run else "updated"}[self.action]
        extra = f": {', '.join(self.fields[:8])}" + (" …" if len(self.fields) > 8 else "") \
            if self.fields else ""
        return f"{verb:<12} {what}{extra}"


def _paths(kind: str, org: str, project: str) -> tuple[str, str]:
    """(collection path, item path with {id})."""
    if kind == "dashboard":
        base = f"/organizations/{org}/dashboards/"
    elif kind == "metric_alert":
        base = f"/organizations/{org}/alert-rules/"
    else:
        base = f"/projects/{org}/{project}/rules/"
    return base, base + "{id}/"


def apply(api: SentryApi, defs: list[Definition], *, org: str, project: str,
          dry_run: bool = False) -> list[Change]:
    changes: list[Change] = []
    existing: dict[str, dict[str, str]] = {}
    for d in defs:
        base, item = _paths(d.kind, org, project)
        if d.kind not in existing:
            key = "title" if d.kind == "dashboard" else "name"
            existing[d.kind] = {str(x.get(key)): str(x["id"]) for x in api.list(base)
                                if "id" in x}
        found = existing[d.kind].get(d.key)
        if found is None:
            if not dry_run:
                made = api.request("POST", base, d.body).json()
                existing[d.kind][d.key] = str(made.get("id", ""))
            changes.append(Change(d, "create"))
            continue
        have = api.get(item.format(id=found))
        diff = differences(d.body, have)
        if not diff:
            changes.append(Change(d, "unchanged"))
            continue
        if not dry_run:
            api.request("PUT", item.format(id=found), _for_put(d.body, have))
        changes.append(Change(d, "update", diff))
    return changes


def _for_put(want: dict[str, Any], have: dict[str, Any]) -> dict[str, Any]:
    """PUT replaces the object: our definition, with its id (dashboards carry it)."""
    body = dict(want)
    if "id" in have:
        body["id"] = have["id"]
    return body
