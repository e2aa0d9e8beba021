"""The README's ten-minute tour, executed: its shell lines run, as written, in a second
"terminal" against ``gonets run`` (what ``make run`` starts), and the sandbox test numbers
table of the payments section is checked against the running system. A README example that
fails is a failing test."""

from __future__ import annotations

import json
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.test_run import READY, Run

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(heading: str) -> str:
    start = README.index(heading)
    end = README.find("\n## ", start + len(heading))
    return README[start:end if end > 0 else None]


def tour_lines() -> list[str]:
    """The shell lines of the tour's first sh block, minus `make run` (started by the test)."""
    block = re.search(r"```sh\n(.*?)```", section("## Ten-minute tour"), re.S)
    assert block is not None
    lines = [x for x in block.group(1).splitlines() if x.strip() and not x.startswith("#")]
    assert lines[0].startswith("make run")
    return lines[1:]


def payment_table() -> list[tuple[str, str, str]]:
    """(number, check result, final payment status) of each concrete row."""
    rows = []
    for line in section("## MTS Money payments").splitlines():
        m = re.match(r"\s*\| (\+\d+) \| `(\w+)`[^|]* \| `(\w+)`", line)
        if m:
            rows.append((m.group(1), m.group(2), m.group(3)))
    return rows


def test_the_readme_has_what_the_tour_test_reads():
    lines = tour_lines()
    assert any("gonets send" in x for x in lines) and any("gonets status" in x for x in lines)
    assert len(payment_table()) >= 4
    assert not any(x.startswith("export ") for x in tour_lines())  # nothing to copy again


def test_the_tour_runs_as_written(tmp_path: Path, user_env: dict[str, str], runs: list[Run]
                                  ) -> None:
    project = tmp_path / "clone"
    project.mkdir()
    (project / ".venv").symlink_to(ROOT / ".venv")  # the clone's `make run` made it
    run = Run(project, user_env, tmp_path / "run.log")
    runs.append(run)
    run.wait_for(READY)

    script = ["set -eu"]
    for i, line in enumerate(tour_lines()):
        script += [f"echo '::: {i}' >&2", line]
    script.append("echo \"::: id $id\" >&2")
    out = subprocess.run(["bash", "-c", "\n".join(script)], cwd=project, env=user_env,
                         capture_output=True, text=True, timeout=300)
    both = out.stdout + out.stderr
    last = re.findall(r"::: (\d+)", out.stderr)
    failed = tour_lines()[int(last[-1])] if last and out.returncode else ""
    assert out.returncode == 0, f"the README line\n  {failed}\nfailed:\n{both}"
    assert "Traceback" not in both
    msg_id = re.search(r"::: id ([0-9a-f]{32})", out.stderr)
    assert msg_id is not None, both
    assert f"{msg_id.group(1)}  " in out.stdout  # gonets status $id showed it
    assert '"sent": 50' in out.stdout  # the demo finished
    # the sandboxes have money for the README's 10,000-message batches many times over
    balance = re.search(r"^(\d+(?:\.\d+)?) RU[BR]$", out.stdout, re.M)
    assert balance is not None and float(balance.group(1)) > 10_000 * 1.5 * 10, out.stdout

    def gonets(*args: str) -> str:
        got = subprocess.run([str(project / ".venv" / "bin" / "gonets"), *args], cwd=project,
                             env=user_env, capture_output=True, text=True, timeout=60)
        assert "Traceback" not in got.stderr
        return got.stdout

    # the payments section's table of sandbox test numbers says what really happens: each
    # row checked and paid (the rows side by side, as several shoppers would), then every
    # payment followed to its final status
    def check_and_pay(phone: str, check: str) -> str:
        said = json.loads(gonets("pay", "check", "--phone", phone))
        assert said.get("result") == check, (phone, said)
        return gonets("pay", "create", "--phone", phone, "--amount", "1050",
                      "--description", "README table", "--answer", "accept").strip()

    def status_of(pay_id: str) -> str:
        return str(json.loads(gonets("pay", "status", pay_id, "--json"))["status"])

    table = payment_table()
    with ThreadPoolExecutor(len(table)) as pool:
        pay_ids = list(pool.map(check_and_pay, [p for p, _, _ in table],
                                [c for _, c, _ in table]))
        waiting = {pay_id: (phone, final) for (phone, _, final), pay_id in zip(table, pay_ids,
                                                                              strict=True)}
        deadline = time.monotonic() + 60
        while waiting:
            ids = list(waiting)
            for pay_id, status in zip(ids, pool.map(status_of, ids), strict=True):
                phone, final = waiting[pay_id]
                if status in ("successful", "failed", "expired", "declined", "rejected"):
                    assert status == final, (phone, status)
                    del waiting[pay_id]
                else:
                    assert time.monotonic() < deadline, (phone, status)
            if waiting:
                time.sleep(0.5)
    procs = run.processes()
    run.ctrl_c()
    assert run.proc.returncode == 0 and "Traceback" not in run.out()
    assert [p for p in procs if p.is_running() and p.status() != "zombie"] == []


@pytest.mark.parametrize("line", [x for x in section("## HTTP API").splitlines()
                                  if "gonets " in x and x.startswith("gonets ")])
def test_every_documented_cli_line_of_the_http_section_parses(line):
    """The HTTP section's gonets lines are real commands (parsed, not run)."""
    import shlex

    from cli.main import build_parser

    args = shlex.split(line.split("#")[0])[1:]
    args = [a if a != "<id>" else "x" for a in args]
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"{line!r}: {exc}")
