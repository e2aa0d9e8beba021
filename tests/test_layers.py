"""DESIGN.md's import rules: a producer enqueues by queue and actor name from the shared
contracts, so it installs and runs without provider code; the scheduler enqueues through the
producers like any other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imported(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def _offenders(package: str, forbidden: str) -> list[str]:
    return [f"{p.relative_to(ROOT)} imports {m}"
            for p in sorted((ROOT / package).rglob("*.py"))
            for m in sorted(_imported(p))
            if m == forbidden or m.startswith(forbidden + ".")]


def test_producers_never_import_worker_code() -> None:
    assert _offenders("producers", "workers") == []


def test_the_scheduler_never_imports_worker_code() -> None:
    assert _offenders("scheduler", "workers") == []


def test_the_shared_package_imports_no_role() -> None:
    """core/ is what every role needs; a role it imported would come along into all of them
    (a tracing hook reads worker records through a reader the worker installs instead)."""
    assert [o for role in ("workers", "producers", "scheduler", "cli")
            for o in _offenders("core", role)] == []
