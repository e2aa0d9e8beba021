"""The HTTP API's structure: the framework sits below the route modules, and ``app.py`` only
assembles them (no route module can import it, so no import circle can form again)."""

from __future__ import annotations

import ast
from pathlib import Path

import producers.http

HTTP = Path(producers.http.__file__).parent
#: modules that may import the assembled app: the server that runs it
ASSEMBLERS = {"app.py", "serve.py"}


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_no_module_below_the_app_imports_it():
    for path in sorted(HTTP.glob("*.py")):
        if path.name in ASSEMBLERS:
            continue
        assert "producers.http.app" not in _imports(path), path.name


def test_framework_imports_no_route_module():
    routes = {"sms", "consents", "payments", "smsc_webhook", "bepaid_webhook", "callbacks",
              "bitrix24"}
    for name in ("framework.py", "problem.py", "render.py"):
        imported = _imports(HTTP / name)
        assert not {f"producers.http.{r}" for r in routes} & imported, name
