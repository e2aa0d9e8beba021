"""``gonets run`` (what ``make run`` starts): everything comes up on the embedded default, a
message sent with the printed instructions is delivered, and Ctrl-C stops every process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("external_redis", [False, True], ids=["embedded", "GONETS_REDIS_URL"])
def test_run_sends_a_message_and_ctrl_c_stops_everything(tmp_path: Path, request,
                                                         external_redis: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONETS_")}
    env.update(PYTHONPATH=str(ROOT), GONETS_CONFIG=str(ROOT / "config" / "sandbox.toml"))
    if external_redis:
        env["GONETS_REDIS_URL"] = request.getfixturevalue("redis_url")
    log = tmp_path / "run.log"
    with open(log, "wb") as fh:
        run = subprocess.Popen([sys.executable, "-m", "cli.main", "run", "--threads", "2"],
                               cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C stops everything" not in log.read_text(errors="replace"):
            assert run.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        out = log.read_text()
        exports = dict(re.findall(r"export (\w+)=(\S+)", out.replace(" GONETS_", "\nexport GONETS_")))
        assert exports["GONETS_REDIS_URL"].startswith("redis://127.0.0.1:")
        if external_redis:
            assert exports["GONETS_REDIS_URL"] == env["GONETS_REDIS_URL"]
        children = psutil.Process(run.pid).children(recursive=True)
        assert len(children) >= (2 if external_redis else 3)  # redis, sandboxes, a worker
        cli_env = {**env, **exports}
        # wait for the workers to be ready before sending
        while out.count("ready") < 1:
            time.sleep(0.1)
            out = log.read_text()
        sent = subprocess.run([sys.executable, "-m", "cli.main", "send", "--to",
                               "+375291234567", "--text", "Hello from the README"],
                              env=cli_env, cwd=tmp_path, capture_output=True, text=True,
                              check=True)
        msg_id = sent.stdout.strip()
        assert re.fullmatch(r"[0-9a-f]{32}", msg_id)
        deadline = time.monotonic() + 60
        while True:
            st = subprocess.run([sys.executable, "-m", "cli.main", "status", msg_id],
                                env=cli_env, cwd=tmp_path, capture_output=True, text=True)
            if " delivered " in st.stdout.splitlines()[0] + " ":
                break
            assert time.monotonic() < deadline, st.stdout + st.stderr
            time.sleep(0.5)
        assert "375291234567" not in st.stdout  # the number is masked
        assert (tmp_path / ".gonets" / "redis").is_dir() != external_redis
        if external_redis:
            r = redis.Redis.from_url(env["GONETS_REDIS_URL"])
            assert r.hget(f"gonets:msg:{msg_id}", "status") == b"delivered"
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(60)
        except subprocess.TimeoutExpired:
            run.kill()
            raise
    assert run.returncode == 0, log.read_text()
    assert "every process stopped" in log.read_text()
    time.sleep(0.5)
    assert [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
