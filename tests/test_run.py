"""``gonets run`` (what ``make run`` starts), driven as a user does: start it, wait for the
banner, use the CLI from another directory without exporting anything, Ctrl-C (SIGINT to the
terminal's process group), start it again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import redis

from cli import runfile

ROOT = Path(__file__).resolve().parent.parent
#: what the runs below are given: a drain timeout the test can wait for, and a leader lock that
#: would keep a second start from leading for most of a minute if the first left it behind
DRAIN_S = 20
LOCK_TTL_S = 60
#: messages sent in one batch right before the first run's Ctrl-C
BACKLOG = 120
READY = "Ctrl-C stops everything"


class Run:
    """One ``gonets run`` in its own process group (as a shell runs a foreground job)."""

    def __init__(self, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.started = time.monotonic()
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "run", "--threads",
                                          "2"], cwd=cwd, env=env, stdout=fh,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def out(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, text: str, timeout_s: float = 120) -> float:
        deadline = time.monotonic() + timeout_s
        while text not in self.out():
            assert self.proc.poll() is None, self.out()
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.out()}"
            time.sleep(0.1)
        return time.monotonic() - self.started

    def processes(self) -> list[psutil.Process]:
        """Every process it started, Redis included (they are in process groups of their own,
        so they are found as children, not by group)."""
        return psutil.Process(self.proc.pid).children(recursive=True)

    def ctrl_c(self) -> float:
        """SIGINT to the process group, as the terminal sends it; seconds until it exited."""
        t0 = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(DRAIN_S + 30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"gonets run did not stop:\n{self.out()}") from None
        return time.monotonic() - t0

    def kill(self) -> None:
        for p in [*self.processes(), psutil.Process(self.proc.pid)]:
            try:
                p.kill()
            except psutil.Error:
                pass
        self.proc.wait()


def _gone(procs: list[psutil.Process]) -> list[str]:
    deadline = time.monotonic() + 5
    while True:
        alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return [" ".join(p.cmdline()) for p in alive]
        time.sleep(0.1)


def demo_statuses(redis_url: str) -> Counter[str]:
    """The statuses of the demo producer's messages (the README's and the backlog): all of
    them are listed, none is lost."""
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        idx = r.zrange("gonets:producer:demo:sms", 0, -1)
        pipe = r.pipeline()
        for i in idx:
            pipe.hget(f"gonets:msg:{i}", "status")
        statuses = pipe.execute()
    finally:
        r.close()
    assert len(idx) == BACKLOG + 1 and None not in statuses
    return Counter(statuses)


def gonets(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_run_as_a_user_starts_serves_stops_in_order_and_starts_again(
        tmp_path: Path, user_env: dict[str, str], runs: list[Run]) -> None:
    project = tmp_path / "project"
    elsewhere = project / "docs" / "notes"  # the user's shell is somewhere else
    elsewhere.mkdir(parents=True)
    run_env = {**user_env, "GONETS_DRAIN_TIMEOUT_S": str(DRAIN_S),
               "GONETS_SCHEDULER_LOCK_TTL_S": str(LOCK_TTL_S)}

    first = Run(project, run_env, tmp_path / "run1.log")
    runs.append(first)
    first.wait_for(READY)
    out = first.out()
    # "starting…" first, the banner only once everything listens; one line per child line
    assert out.index("gonets run: starting") < out.index("=== Gonets is running ===")
    assert out.index("pool smsc consuming") < out.index("=== Gonets is running ===")
    assert not re.search(r"\S\[(worker|api|scheduler|callbacks|sandbox)", out)
    assert "b'" not in out  # no raw bytes (b'SMSC') in what the user reads
    run_file = project / ".gonets" / "run.env"
    values = runfile.read_run_file(run_file)
    assert Path(values["GONETS_CONFIG"]).is_absolute()
    assert f"source {run_file}" in out

    sent = gonets(elsewhere, user_env, "send", "--to", "+375291234567", "--text",
                  "Hello from the README")
    assert sent.returncode == 0, sent.stderr
    msg_id = sent.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", msg_id)
    deadline = time.monotonic() + 60
    while True:
        st = gonets(elsewhere, user_env, "status", msg_id)
        assert st.returncode == 0, st.stderr
        if st.stdout.split()[1] == "delivered":
            break
        assert time.monotonic() < deadline, st.stdout
        time.sleep(0.5)
    assert "375291234567" not in st.stdout  # the number is masked
    # the CLI sent it as the demo producer: the demo token reads it over HTTP
    api, token = values["GONETS_RUN_API"], values["GONETS_RUN_TOKEN"]
    got = httpx.get(f"{api}/v1/sms/{msg_id}", headers={"Authorization": f"Bearer {token}"})
    assert got.status_code == 200 and got.json()["status"] == "delivered"
    listed = httpx.get(f"{api}/v1/sms", headers={"Authorization": f"Bearer {token}"}).json()
    assert msg_id in [m["id"] for m in listed["items"]]

    # a backlog in flight when Ctrl-C comes: four seconds of it at the account's 30/s
    batch = {"messages": [{"to": f"+37529{1000000 + i}", "text": f"backlog {i}"}
                          for i in range(BACKLOG)]}
    assert httpx.post(f"{api}/v1/sms/batch", json=batch, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}).json()["accepted"] == BACKLOG
    # (most of it still waiting to be sent)
    assert demo_statuses(values["GONETS_REDIS_URL"])["queued"] > BACKLOG / 2
    procs = first.processes()
    names = {" ".join(p.cmdline()) for p in procs}
    assert any("redis-server" in n for n in names) and any("sandbox" in n for n in names)
    took = first.ctrl_c()
    out = first.out()
    assert first.proc.returncode == 0, out
    assert took < DRAIN_S, out  # within the drain timeout
    assert "Traceback" not in out and "CRITICAL" not in out, out
    assert "could not release" not in out and "lease store unreachable" not in out, out
    assert "every process stopped" in out
    assert _gone(procs) == []
    assert not run_file.exists()  # the CLI does not point at a system that is gone
    stale = gonets(elsewhere, user_env, "status", msg_id)
    assert stale.returncode == 1 and "no configuration is loaded" in stale.stderr
    assert "Traceback" not in stale.stderr

    # the order: the workers stopped (and the scheduler released its lock) before Redis did
    second = Run(project, run_env, tmp_path / "run2.log")
    runs.append(second)
    second.wait_for(READY)
    # no stale leader lock or bind lease: leading at once, no pool standing by
    leader_after = second.wait_for("now the leader", timeout_s=LOCK_TTL_S)
    assert leader_after < LOCK_TTL_S / 2, second.out()
    assert "standing by" not in second.out()
    # the backlog was kept: what the first run left queued, the second sends
    url = runfile.read_run_file(run_file)["GONETS_REDIS_URL"]
    deadline = time.monotonic() + 90
    while (now := demo_statuses(url))["queued"]:
        assert time.monotonic() < deadline, now
        time.sleep(0.5)
    procs = second.processes()
    second.ctrl_c()
    assert second.proc.returncode == 0
    assert "Traceback" not in second.out()
    assert _gone(procs) == []


def test_run_with_an_external_redis_leaves_it_running(tmp_path: Path, user_env: dict[str, str],
                                                      redis_url: str, runs: list[Run]) -> None:
    run = Run(tmp_path, {**user_env, "GONETS_REDIS_URL": redis_url,
                         "GONETS_DRAIN_TIMEOUT_S": str(DRAIN_S)}, tmp_path / "run.log")
    runs.append(run)
    run.wait_for(READY)
    assert runfile.read_run_file(tmp_path / ".gonets" / "run.env")["GONETS_REDIS_URL"] \
        == redis_url
    assert not (tmp_path / ".gonets" / "redis").exists()
    procs = run.processes()
    run.ctrl_c()
    assert run.proc.returncode == 0 and "Traceback" not in run.out()
    assert _gone(procs) == []
    assert redis.Redis.from_url(redis_url).ping()  # not ours to stop


def test_the_cli_finds_the_run_file_from_anywhere(tmp_path: Path, monkeypatch) -> None:
    """In a subdirectory by walking up; outside the project through the project the command
    is installed from; never over what the environment says already."""
    project = tmp_path / "project"
    (project / ".gonets").mkdir(parents=True)
    written = runfile.write_run_file(project / ".gonets" / "run.env",
                                     {"GONETS_REDIS_URL": "redis://127.0.0.1:1/0",
                                      "GONETS_CONFIG": "/a path/with 'quotes'.toml"})
    assert oct(written.stat().st_mode & 0o777) == "0o600"  # it holds the demo token
    sub = project / "a" / "b"
    sub.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.setattr(runfile, "PROJECT", tmp_path / "not-a-project")
    assert runfile.find_run_file(sub, {}) == written
    assert runfile.find_run_file(outside, {}) is None
    monkeypatch.setattr(runfile, "PROJECT", project)
    assert runfile.find_run_file(outside, {}) == written
    env: dict[str, str] = {}
    assert runfile.load_run_environment(env, cwd=outside) == written
    assert env["GONETS_CONFIG"] == "/a path/with 'quotes'.toml"
    # sourced by a shell, the same values
    shown = subprocess.run(["sh", "-c", f". '{written}' && printf %s \"$GONETS_CONFIG\""],
                           capture_output=True, text=True, check=True).stdout
    assert shown == env["GONETS_CONFIG"]
    mine = {"GONETS_CONFIG": "/mine.toml"}
    assert runfile.load_run_environment(mine, cwd=sub) is None and mine == {
        "GONETS_CONFIG": "/mine.toml"}


def test_make_run_installs_only_the_runtime_dependencies():
    """`make run` on a fresh clone installs the package, not its test extra (schemathesis,
    hadolint, ...); `make install` / `make test` add that."""
    run = subprocess.run(["make", "-n", "-B", "run"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert "pip install --quiet -e ." in run and "[test]" not in run
    assert "gonets run" in run
    full = subprocess.run(["make", "-n", "-B", "test"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout
    assert "-e '.[test]'" in full


def test_a_second_run_in_the_same_directory_is_refused(tmp_path: Path, user_env: dict[str, str],
                                                      runs: list[Run]) -> None:
    """Two runs would share one Redis data directory; the second says so and leaves the
    first (and its run file) alone."""
    first = Run(tmp_path, {**user_env, "GONETS_DRAIN_TIMEOUT_S": str(DRAIN_S)},
                tmp_path / "run1.log")
    runs.append(first)
    first.wait_for(READY)
    second = subprocess.run([sys.executable, "-m", "cli.main", "run"], cwd=tmp_path,
                            env=user_env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert f"gonets run is already running here (pid {first.proc.pid})" in second.stdout
    assert "Traceback" not in second.stdout + second.stderr
    assert (tmp_path / ".gonets" / "run.env").exists() and first.proc.poll() is None
    first.ctrl_c()
    assert first.proc.returncode == 0


def test_children_do_not_outlive_a_killed_run(tmp_path: Path, user_env: dict[str, str],
                                              runs: list[Run]) -> None:
    """In process groups of their own no Ctrl-C reaches them, so a `gonets run` killed with
    SIGKILL (no chance to stop them) must not leave Redis or workers behind."""
    run = Run(tmp_path, user_env, tmp_path / "run.log")
    runs.append(run)
    run.wait_for(READY)
    procs = run.processes()
    assert any("redis-server" in " ".join(p.cmdline()) for p in procs)
    run.proc.kill()
    run.proc.wait()
    # each gets SIGTERM at once and stops as it does on a normal stop (the sandboxes close
    # their listeners and sessions; slow on a loaded host), never lives on
    deadline = time.monotonic() + 90
    while [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, [p.cmdline() for p in procs if p.is_running()]
        time.sleep(0.2)


def test_signals_in_a_burst_stop_the_sandboxes_and_the_run(tmp_path: Path,
                                                           user_env: dict[str, str],
                                                           runs: list[Run]) -> None:
    """A signal handler that takes a lock deadlocks when the signal lands while the main
    thread holds it: a burst of SIGTERMs (and a double Ctrl-C) still stops everything."""
    sb = subprocess.Popen([sys.executable, "-m", "sandbox"], env=user_env, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert sb.stdout is not None and sb.stdout.readline()
        for _ in range(50):
            sb.send_signal(signal.SIGTERM)
        assert sb.wait(60) == 0
    finally:
        if sb.poll() is None:
            sb.kill()
            sb.wait()
    run = Run(tmp_path, user_env, tmp_path / "run.log")
    runs.append(run)
    run.wait_for(READY)
    procs = run.processes()
    for _ in range(2):
        os.killpg(run.proc.pid, signal.SIGINT)
    run.proc.wait(DRAIN_S + 30)
    assert run.proc.returncode == 0 and "Traceback" not in run.out(), run.out()
    assert _gone(procs) == []
