"""Every documented ``gonets`` command given bad arguments answers with one clear line and exit
code 2 (usage) or 1 (runtime failure), never a traceback; ``--debug`` shows the traceback."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent


def gonets(env: dict[str, str], *args: str, cwd: Path = ROOT,
           stdin: Any = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60, stdin=stdin)


def no_traceback(out: subprocess.CompletedProcess[str]) -> None:
    both = out.stdout + out.stderr
    assert "Traceback" not in both and 'File "' not in both, both


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
             ) -> list[tuple[str, ...]]:
    """Every leaf command of the parser: ('send',), ('pay', 'status'), ..."""
    out: list[tuple[str, ...]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += commands(sub, (*prefix, name)) or [(*prefix, name)]
    return out


ALL = commands(build_parser())

#: (arguments, exit code, what the one line says): usage errors 2, runtime failures 1
BAD = [
    (["send", "--to", "12", "--text", "x"], 2, "invalid to"),
    (["send", "--text", "x"], 2, "--to and --text are required"),
    (["send", "--demo", "0"], 2, "invalid demo"),
    (["send", "--to", "+375291234567", "--text", "x", "--option", "nokey"], 2,
     "invalid options"),
    (["send", "--to", "+375291234567", "--text", "x", "--account", "nope"], 2,
     "no account named 'nope'"),
    (["send", "--to", "+375291234567", "--text", "x", "--lane", "fast"], 2, "invalid choice"),
    (["status", "nope"], 1, "no message nope"),
    (["poll", "nope"], 1, "no message nope"),
    (["balance", "--account", "nope"], 2, "no account named 'nope'"),
    (["cost", "--to", "12", "--text", "x"], 2, "invalid to"),
    (["cost", "--to", "+375291234567"], 2, "--text"),
    (["token", "create", "--producer", "x", "--scopes", "root"], 2, "scopes"),
    (["token", "revoke", "nope"], 1, "no token nope"),
    (["consent", "grant", "--to", "12", "--source", "web"], 2, "invalid phone"),
    (["consent", "show", "--to", "+375291234567"], 1, "no consent recorded"),
    (["usage", "--account", "nope"], 2, "no account named 'nope'"),
    (["usage", "--days", "x"], 2, "invalid int value"),
    (["sms2", "mms", "--to", "+79161234567", "--subject", "s", "--text", "t",
      "--picture", "missing.png"], 2, "cannot read missing.png: No such file"),
    (["sms2", "add-batch", "--base", "b", "--file", "phones.txt"], 2,
     "cannot read phones.txt: No such file"),
    (["sms2", "balance"], 2, "no sms2_http account"),
    (["sms2", "balance", "--account", "smsc"], 2, "not an SMS2 account"),
    (["pay", "status", "bad"], 1, "no payment bad"),
    (["pay", "create", "--phone", "+375291234567", "--amount", "x", "--description", "d"], 2,
     "invalid int value"),
    (["worker", "--pool", "nope"], 2, "no account named 'nope'"),
    (["api", "--port", "x"], 2, "invalid int value"),
    (["run", "--threads", "x"], 2, "invalid int value"),
]


@pytest.mark.parametrize("args,code,says", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_arguments_are_one_line_and_an_exit_code(gonets_env, args, code, says):
    out = gonets(gonets_env, *args, cwd=Path(gonets_env["GONETS_CONFIG"]).parent)
    no_traceback(out)
    assert out.returncode == code, out.stderr
    said = (out.stderr or out.stdout).strip().splitlines()
    assert says in said[-1], said
    assert said[-1].startswith(("gonets: ", "gonets ", "no consent")), said


@pytest.mark.parametrize("cmd", ALL, ids=[" ".join(c) for c in ALL])
def test_every_command_refuses_an_unknown_option_without_a_traceback(cmd):
    """A command added later is covered too: it is found in the parser."""
    out = gonets({**os.environ, "PYTHONPATH": str(ROOT)}, *cmd, "--no-such-option")
    no_traceback(out)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("usage: gonets") and "error: " in out.stderr


def test_every_command_is_documented_in_help():
    """Every option says what it is for (--help), and no help shows literal backticks."""
    parser = build_parser()
    assert "`" not in parser.format_help()

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        assert "`" not in p.format_help(), path
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help, f"{path} {action.option_strings[0]} has no description"

    walk(parser, "gonets")


def _dead_redis_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.mark.parametrize("args", [
    ["send", "--to", "+375291234567", "--text", "x"], ["status", "abc"], ["poll", "abc"],
    ["token", "list"], ["consent", "show", "--to", "+375291234567"], ["usage"],
    ["pay", "status", "abc"],
], ids=lambda a: " ".join(a))
def test_stale_redis_address_says_redis_does_not_answer(gonets_env, args):
    url = _dead_redis_url()
    out = gonets({**gonets_env, "GONETS_REDIS_URL": url}, *args)
    no_traceback(out)
    assert out.returncode == 1
    assert f"Redis at {url} does not answer; is 'make run' running?" in out.stderr


def test_a_dead_redis_is_named_with_its_password_masked(gonets_env):
    url = _dead_redis_url().replace("//", "//:hunter2@")
    out = gonets({**gonets_env, "GONETS_REDIS_URL": url}, "send", "--to", "+375291234567",
                 "--text", "x")
    no_traceback(out)
    assert out.returncode == 1
    assert f"Redis at {url.replace('hunter2', '***')} does not answer" in out.stderr
    assert "hunter2" not in out.stderr
    shown = gonets({**gonets_env, "GONETS_REDIS_URL": url}, "config")
    assert shown.returncode == 0, shown.stderr
    assert '"redis_url": "redis://:***@' in shown.stdout and "hunter2" not in shown.stdout


def test_debug_shows_the_traceback(gonets_env):
    env = {**gonets_env, "GONETS_REDIS_URL": _dead_redis_url()}
    assert "Traceback" in gonets(env, "--debug", "status", "abc").stderr
    assert "Traceback" in gonets({**env, "GONETS_LOG_LEVEL": "debug"}, "status", "abc").stderr


def test_without_configuration_the_cli_says_how_to_get_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONETS_")}
    env.update(PYTHONPATH=str(ROOT), GONETS_RUN_FILE=str(tmp_path / "none"))
    for args in (["send", "--to", "+375291234567", "--text", "x"], ["status", "abc"],
                 ["balance"], ["pay", "status", "abc"], ["sms2", "balance"]):
        out = gonets(env, *args, cwd=tmp_path)
        no_traceback(out)
        assert out.returncode == 1
        assert "no configuration is loaded" in out.stderr and "make run" in out.stderr
        assert "no default_account" not in out.stderr


def test_a_closed_pipe_is_not_a_traceback(gonets_env, producer, store):
    msg_id = producer.send_sms("+375291234567", "pipe", producer="cli")
    for _ in range(30):
        store.r.rpush(f"gonets:msg:{msg_id}:history", '{"status": "queued", "at_ms": 1}')
    shell = subprocess.run(
        f"'{sys.executable}' -m cli.main status {msg_id} | head -1",
        shell=True, env=gonets_env, capture_output=True, text=True, timeout=60)
    assert msg_id in shell.stdout
    no_traceback(shell)
    assert "BrokenPipe" not in shell.stderr


def test_sms2_account_goes_after_the_action_like_everywhere(gonets_env):
    for args in (["sms2", "balance", "--account", "smsc"], ["sms2", "--account", "smsc",
                                                           "balance"]):
        out = gonets(gonets_env, *args)
        assert out.returncode == 2 and "'smsc' is not an SMS2 account" in out.stderr


def test_a_busy_port_is_one_line(gonets_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = gonets(gonets_env, "api", "--port", str(port))
    no_traceback(out)
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in out.stderr


def test_balance_and_cost_of_a_payments_account_are_errors(gonets_env, tmp_path):
    cfg = Path(gonets_env["GONETS_CONFIG"])
    cfg.write_text(cfg.read_text() + """
[accounts.pay]
provider = "bepaid"
base_urls = ["http://127.0.0.1:9"]
credentials = { shop_id = "env:X_SHOP", secret_key = "env:X_KEY" }
""")
    for args in (["balance", "--account", "pay"],
                 ["cost", "--account", "pay", "--to", "+375291234567", "--text", "x"]):
        out = gonets(gonets_env, *args)
        no_traceback(out)
        assert out.returncode == 2, out.stderr
        assert "'pay' is a payments account (bepaid), not an SMS account" in out.stderr \
            or "pay is a bepaid account: it sends no SMS" in out.stderr, out.stderr


def test_status_json_is_the_apis_shape_with_the_number_masked(gonets_env, producer):
    import json

    from producers.http.models import SmsOut

    msg_id = producer.send_sms("+375291234567", "json shape")
    out = gonets(gonets_env, "status", msg_id, "--json")
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    SmsOut.model_validate(rec)  # the API's model: its fields and types
    assert rec["to"] == "+37529*****67" and "375291234567" not in out.stdout
    assert isinstance(rec["parts"], int) and rec["history"][0]["status"] == "queued"
    assert "text" not in rec and "phone" not in rec
