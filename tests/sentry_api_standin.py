"""A stand-in for the part of Sentry's web API that ``gonets sentry apply`` uses, written from
Sentry's API reference (docs.sentry.io/api/):

* Dashboards: list, create (``POST /api/0/organizations/{org}/dashboards/``), retrieve and
  edit (``GET``/``PUT …/dashboards/{dashboard_id}/``).  The list gives summaries (id, title,
  dateCreated, widgetDisplay); a dashboard's widgets and queries get ids and dates; a title
  already in use is refused (409).
* Metric alert rules: ``/api/0/organizations/{org}/alert-rules/`` and ``…/{alert_rule_id}/``;
  triggers get ids, ``timeWindow`` and thresholds come back as numbers of Sentry's own type.
* Issue alert rules: ``/api/0/projects/{org}/{project}/rules/`` and ``…/{rule_id}/``.
* Bearer-token auth (401 without it), cursor pagination through the ``Link`` header
  (``rel="next"; results="true"; cursor="…"``), 400 with field errors for an invalid body.

Objects live in memory; ``objects`` is the "Sentry UI" a test edits by hand."""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.support import shut_down

DISPLAY_TYPES = {"line", "area", "stacked_area", "bar", "table", "big_number", "top_n"}
WIDGET_TYPES = {"discover", "issue", "metrics", "error-events", "transaction-like", "spans",
                "logs", "release-health"}


class SentryApiStandIn:
    def __init__(self, token: str, org: str, project: str, page_size: int = 2) -> None:
        self.token, self.org, self.project = token, org, project
        self.page_size = page_size
        #: kind -> id -> object, as Sentry keeps it
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            "dashboard": {}, "metric_alert": {}, "issue_alert": {}}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._next_id = 100
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _go(self, method: str) -> None:
                url = urlparse(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                with outer.lock:
                    outer.requests.append((method, url.path))
                    code, body, headers = outer.handle(method, url.path, parse_qs(url.query),
                                                       raw, self.headers.get("Authorization"))
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._go("GET")

            def do_POST(self) -> None:
                self._go("POST")

            def do_PUT(self) -> None:
                self._go("PUT")

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        shut_down(self.server)
        self.server.server_close()

    # --- routing
    def _route(self, path: str) -> tuple[str, str | None] | None:
        o, p = re.escape(self.org), re.escape(self.project)
        for kind, pattern in (("dashboard", rf"/api/0/organizations/{o}/dashboards/"),
                              ("metric_alert", rf"/api/0/organizations/{o}/alert-rules/"),
                              ("issue_alert", rf"/api/0/projects/{o}/{p}/rules/")):
            m = re.fullmatch(pattern + r"(?:(\d+)/)?", path)
            if m:
                return kind, m.group(1)
        return None

    def handle(self, method: str, path: str, query: dict[str, list[str]], raw: bytes,
               auth: str | None) -> tuple[int, Any, dict[str, str]]:
        if auth != f"Bearer {self.token}":
            return 401, {"detail": "Invalid token"}, {}
        route = self._route(path)
        if route is None:
            return 404, {"detail": "The requested resource does not exist"}, {}
        kind, oid = route
        store = self.objects[kind]
        if oid is None and method == "GET":
            return self._page(kind, path, query)
        if oid is None and method == "POST":
            body, err = self._valid(kind, raw)
            if err:
                return 400, err, {}
            key = "title" if kind == "dashboard" else "name"
            if kind == "dashboard" and any(o["title"] == body[key] for o in store.values()):
                return 409, {"detail": "Dashboard with that title already exists."}, {}
            obj = self._stored(kind, self._id(), body)
            store[obj["id"]] = obj
            return 201, copy.deepcopy(obj), {}
        if oid is None or oid not in store:
            return 404, {"detail": "The requested resource does not exist"}, {}
        if method == "GET":
            return 200, copy.deepcopy(store[oid]), {}
        if method == "PUT":
            body, err = self._valid(kind, raw)
            if err:
                return 400, err, {}
            body.pop("id", None)
            obj = self._stored(kind, oid, body, created=store[oid]["dateCreated"])
            store[oid] = obj
            return 200, copy.deepcopy(obj), {}
        return 405, {"detail": f'Method "{method}" not allowed.'}, {}

    def _page(self, kind: str, path: str, query: dict[str, list[str]]
              ) -> tuple[int, Any, dict[str, str]]:
        per_page = min(int((query.get("per_page") or ["100"])[0]), self.page_size)
        cursor = (query.get("cursor") or ["0:0:0"])[0]
        offset = int(cursor.split(":")[1])
        items = sorted(self.objects[kind].values(), key=lambda o: int(o["id"]))
        page = items[offset:offset + per_page]
        if kind == "dashboard":  # the list has summaries, not widgets' queries
            page = [{"id": d["id"], "title": d["title"], "dateCreated": d["dateCreated"],
                     "createdBy": d["createdBy"],
                     "widgetDisplay": [w["displayType"] for w in d["widgets"]]}
                    for d in page]
        more = offset + per_page < len(items)
        link = (f'<{self.url}{path}?&cursor=0:{max(offset - per_page, 0)}:1>; rel="previous"; '
                f'results="{"true" if offset else "false"}"; '
                f'cursor="0:{max(offset - per_page, 0)}:1", '
                f'<{self.url}{path}?&cursor=0:{offset + per_page}:0>; rel="next"; '
                f'results="{"true" if more else "false"}"; cursor="0:{offset + per_page}:0"')
        return 200, copy.deepcopy(page), {"Link": link}

    def _id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    # --- validation: the required fields of each create/edit body
    def _valid(self, kind: str, raw: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return {}, {"detail": "JSON parse error"}
        if not isinstance(body, dict):
            return {}, {"detail": "expected an object"}
        errors: dict[str, list[str]] = {}
        if kind == "dashboard":
            if not body.get("title"):
                errors["title"] = ["This field is required."]
            for i, w in enumerate(body.get("widgets") or []):
                if w.get("displayType") not in DISPLAY_TYPES:
                    errors[f"widgets[{i}].displayType"] = ["not a valid choice"]
                if w.get("widgetType") not in WIDGET_TYPES:
                    errors[f"widgets[{i}].widgetType"] = ["not a valid choice"]
                if not w.get("queries"):
                    errors[f"widgets[{i}].queries"] = ["This field is required."]
                for q in w.get("queries") or []:
                    if set(q.get("aggregates", [])) | set(q.get("columns", [])) \
                            != set(q.get("fields", [])):
                        errors[f"widgets[{i}].queries"] = ["fields must be the columns and "
                                                           "the aggregates"]
        elif kind == "metric_alert":
            for f in ("name", "aggregate", "timeWindow", "projects", "triggers"):
                if body.get(f) in (None, "", []):
                    errors[f] = ["This field is required."]
            trig = body.get("triggers") or []
            if trig and trig[0].get("label") != "critical":
                errors["triggers"] = ["Must have a critical trigger first"]
            if body.get("projects") and body["projects"] != [self.project]:
                errors["projects"] = ["Invalid project"]
        else:
            for f in ("name", "actionMatch", "frequency", "actions", "conditions"):
                if body.get(f) in (None, "", []):
                    errors[f] = ["This field is required."]
        return body, (errors or None)

    # --- what Sentry stores and answers: the body plus ids, dates, authors, its own types
    def _stored(self, kind: str, oid: str, body: dict[str, Any],
                created: str = "2026-12-03T09:00:00.000000Z") -> dict[str, Any]:
        obj = copy.deepcopy(body)
        obj.update(id=oid, dateCreated=created)
        if kind == "dashboard":
            obj["createdBy"] = {"id": "1", "name": "ops"}
            obj.setdefault("projects", [])
            obj.setdefault("filters", {})
            for w in obj.get("widgets") or []:
                w.update(id=self._id(), dashboardId=oid, dateCreated=created)
                w.setdefault("thresholds", None)
                for q in w.get("queries") or []:
                    q.update(id=self._id(), widgetId=w["id"], isHidden=False)
        elif kind == "metric_alert":
            obj["timeWindow"] = float(obj["timeWindow"])
            obj["status"] = 0
            obj["createdBy"] = {"id": 1, "name": "ops"}
            for t in obj.get("triggers") or []:
                t.update(id=self._id(), alertRuleId=oid,
                         alertThreshold=float(t["alertThreshold"]),
                         thresholdType=obj.get("thresholdType", 0),
                         resolveThreshold=obj.get("resolveThreshold"))
        else:
            obj["createdBy"] = {"id": 1, "name": "ops"}
            obj["projects"] = [self.project]
            obj["status"] = "active"
            for c in obj.get("conditions") or []:
                c.setdefault("name", c["id"].rsplit(".", 1)[-1])
        return obj
