"""The 1C-Bitrix module (integrations/bitrix/gonets.sms) under PHPUnit against a real Gonets.

This test starts what the module talks to: the API (uvicorn), a worker process, the SMSC
sandbox, Redis, the callbacks dispatcher, and the module's callback endpoint under ``php -S``;
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
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.api_support import api, api_settings, free_port, tokens  # noqa: F401 - fixtures

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
                raise RuntimeError("php -S did not start: " + log.read_text(errors="replace"))
            time.sleep(0.05)


def test_the_module_under_phpunit_against_gonets(
        api: Any, tokens: Any, smsc: Any, start_worker: Any, api_settings: Any,
        callback_endpoint: dict[str, str], tmp_path: Path) -> None:
    from producers.http.callbacks import Backoff, Dispatcher

    php, phpunit = _tool("php"), _tool("phpunit")
    token = tokens.create("bitrixshop", "send,read,consent")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONETS_")}
    env.update(callback_endpoint)
    env.update(GONETS_TEST_API_URL=api.url, GONETS_TEST_TOKEN=token.token,
               GONETS_TEST_CALLBACK_SECRET=token.callback_secret,
               GONETS_TEST_SMSC_URL=smsc.urls[0])
    server = _serve(php, env, tmp_path / "php-server.log")
    start_worker(threads=4)
    d = Dispatcher(api_settings, backoff=Backoff(first_s=0.1, max_s=0.5), threads=4)
    t = d.start_thread()
    try:
        got = subprocess.run([phpunit, "-c", str(PHP_TESTS / "phpunit.xml")], cwd=PHP_TESTS,
                             env=env, capture_output=True, text=True, timeout=400)
    finally:
        d.stop()
        t.join(10)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    out = got.stdout + got.stderr
    assert got.returncode == 0, out + "\n--- php -S:\n" + \
        (tmp_path / "php-server.log").read_text(errors="replace")
    assert "OK (" in out, out  # PHPUnit says "OK, but ..." when anything was skipped
