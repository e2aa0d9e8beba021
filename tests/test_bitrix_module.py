"""The 1C-Bitrix module (integrations/bitrix/gonets.sms) under PHPUnit against a real Gonets.

This test starts what the module talks to, as a shop would run it: ``gonets api``,
``gonets callbacks`` and a worker as processes, the SMSC sandbox, Redis, and the module's
callback endpoint under ``php -S``;
then runs integrations/bitrix/tests (PHPUnit) with their addresses in the environment.  Bitrix
itself cannot run here: the module loads on stand-ins of the Bitrix classes it calls
(integrations/bitrix/tests/standins, each naming the documented methods it covers).

php-cli, php-curl and phpunit (Debian packages) must be installed; `.ci/run` installs them.
Without them this test fails, it does not skip: a green suite must mean the module was tested.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "integrations" / "bitrix" / "gonets.sms"
PHP_TESTS = ROOT / "integrations" / "bitrix" / "tests"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install php-cli php-curl phpunit "
                    "(.ci/run does this); the 1C-Bitrix module cannot be tested without it")
    return path


def test_every_module_file_is_valid_php() -> None:
    php = _tool("php")
    files = sorted([*MODULE.rglob("*.php"), *PHP_TESTS.rglob("*.php")])
    assert len(files) > 20
    for f in files:
        got = subprocess.run([php, "-l", str(f)], capture_output=True, text=True)
        assert got.returncode == 0, got.stdout + got.stderr
    mods = subprocess.run([php, "-m"], capture_output=True, text=True).stdout.split()
    assert "curl" in mods, "php-curl is missing: apt-get install php-curl"


@pytest.fixture
def callback_endpoint(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The module's callback endpoint under ``php -S``, and the environment it shares with
    the PHPUnit run."""
    port = free_port()
    store = tmp_path / "b_messageservice_message.json"
    store.write_text("{}", encoding="utf-8")
    env = {"GONETS_TEST_MESSAGE_STORE": str(store),
           "GONETS_TEST_CALLBACK_URL": f"http://127.0.0.1:{port}/bitrix/tools/gonets.sms/"
                                       "callback.php"}
    yield env  # filled in by the test before the server starts


def _serve(php: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    port = env["GONETS_TEST_CALLBACK_URL"].split(":")[2].split("/")[0]
    fh = open(log, "wb")
    proc = subprocess.Popen([php, "-S", f"127.0.0.1:{port}", "callback_router.php"],
                            cwd=PHP_TESTS, env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(
                    "php -S did not start: " + log.read_text(errors="replace")) from None
            time.sleep(0.05)


class GonetsProcess:
    """``gonets <args>`` as its own process, ready once ``ready_url`` answers 200."""

    def __init__(self, env: dict[str, str], args: list[str], ready_url: str,
                 log: Path) -> None:
        self.log = log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", *args], env=env,
                                     cwd=ROOT, stdout=self._fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gonets {args[0]} did not start:\n" +
                                   log.read_text(errors="replace"))
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


def test_the_module_under_phpunit_against_gonets(
        gonets_env: dict[str, str], store: Any, smsc: Any, start_worker: Any,
        callback_endpoint: dict[str, str], tmp_path: Path) -> None:
    """`gonets api`, `gonets callbacks` and a worker as processes, as a shop would run them."""
    from producers.http.auth import Tokens

    php, phpunit = _tool("php"), _tool("phpunit")
    token = Tokens(store.r, store.ns).create("bitrixshop", "send,read,consent")
    # the module's callback endpoint runs on this host
    Tokens(store.r, store.ns).set_private_callbacks("bitrixshop", True)
    api_port, health_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    started: list[GonetsProcess] = []
    server = None
    try:
        started.append(GonetsProcess(gonets_env, ["api", "--port", str(api_port)],
                                     f"{api_url}/healthz", tmp_path / "api.log"))
        started.append(GonetsProcess(gonets_env, ["callbacks", "--threads", "4",
                                                  "--health-port", str(health_port)],
                                     f"http://127.0.0.1:{health_port}/readyz",
                                     tmp_path / "callbacks.log"))
        start_worker(threads=4)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GONETS_")}
        env.update(callback_endpoint)
        env.update(GONETS_TEST_API_URL=api_url, GONETS_TEST_TOKEN=token.token,
                   GONETS_TEST_CALLBACK_SECRET=token.callback_secret,
                   GONETS_TEST_SMSC_URL=smsc.urls[0])
        server = _serve(php, env, tmp_path / "php-server.log")
        got = subprocess.run([phpunit, "-c", str(PHP_TESTS / "phpunit.xml")], cwd=PHP_TESTS,
                             env=env, capture_output=True, text=True, timeout=400)
    finally:
        for p in reversed(started):
            p.stop()
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    out = got.stdout + got.stderr
    logs = "".join(f"\n--- {f.name}:\n" + f.read_text(errors="replace")
                   for f in sorted(tmp_path.glob("*.log")))
    assert got.returncode == 0, out + logs
    assert "OK (" in out, out  # PHPUnit says "OK, but ..." when anything was skipped
