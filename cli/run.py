"""``gonets run`` (``make run``): the whole system on this machine.

Starts a local Redis (unless ``GONETS_REDIS_URL`` is set) with its append-only file under
``./.gonets/``, every provider sandbox on free ports, one worker per configured pool, and
prints where everything listens.  Ctrl-C stops every process it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.embedded_redis import RedisServer
from core.settings import load_settings

STATE_DIR = Path(".gonets")
SANDBOX_CONFIG = Path("config/sandbox.toml")
#: sandbox credentials (the sandbox's own defaults; not secrets)
SANDBOX_ENV = {
    "GONETS_SANDBOX_SMSC_LOGIN": "gonets",
    "GONETS_SANDBOX_SMSC_PASSWORD": "sandbox",
    "GONETS_SANDBOX_MTS_CLIENT_ID": "gonets",
    "GONETS_SANDBOX_MTS_CLIENT_SECRET": "sandbox",
    "GONETS_SANDBOX_SMS2_USER": "gonets",
    "GONETS_SANDBOX_SMS2_PASS": "sandbox",
    "GONETS_SANDBOX_SMPP_MTS_LOGIN": "gonets2",
    "GONETS_SANDBOX_BEPAID_SHOP_ID": "361",
    "GONETS_SANDBOX_BEPAID_SECRET_KEY": "sandbox-secret-key",
}


def sandbox_env(info: dict[str, object]) -> dict[str, str]:
    """Environment variables the sandbox config refers to, from ``python -m sandbox``'s line."""
    env = dict(SANDBOX_ENV)
    for name, where in info.items():
        if isinstance(where, list):
            for i, url in enumerate(where, 1):
                env[f"GONETS_SANDBOX_{name.upper()}_{i}"] = str(url)
        elif isinstance(where, dict):
            for k, v in where.items():
                env[f"GONETS_SANDBOX_{name.upper()}_{k.upper()}"] = str(v)
        else:
            env[f"GONETS_SANDBOX_{name.upper()}"] = str(where)
    return env


def run(threads: int = 8) -> int:
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    redis_server: RedisServer | None = None
    env = dict(os.environ)
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        print("\ngonets run: stopping…", flush=True)
        for _, p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for name, p in reversed(procs):
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if redis_server is not None:
            redis_server.stop()
        print("gonets run: every process stopped", flush=True)

    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        STATE_DIR.mkdir(exist_ok=True)
        if not env.get("GONETS_REDIS_URL"):
            # absolute: redis-server changes into --dir before it opens its log file
            redis_server = RedisServer((STATE_DIR / "redis").resolve(), persist=True).start()
            env["GONETS_REDIS_URL"] = redis_server.url
        env.setdefault("GONETS_CONFIG", str(SANDBOX_CONFIG))

        sb = subprocess.Popen([sys.executable, "-m", "sandbox"], stdout=subprocess.PIPE, env=env)
        procs.append(("sandbox", sb))
        assert sb.stdout is not None
        line = sb.stdout.readline()
        if not line:
            raise RuntimeError("the sandboxes did not start")
        info = json.loads(line)
        env.update(sandbox_env(info))
        from producers.http.serve import demo_token, pick_port

        api_port = pick_port(8080)
        # bePaid's notifications go to the HTTP API started below (/v1/webhooks/bepaid/<account>)
        env["GONETS_SANDBOX_WEBHOOKS_URL"] = f"http://127.0.0.1:{api_port}"

        settings = load_settings(env)
        for acct in settings.accounts:  # a bePaid account's pool is its payments pool
            p = subprocess.Popen([sys.executable, "-m", "cli.main", "worker", "--pool", acct.name,
                                  "--threads", str(threads)], env=env)
            procs.append((f"worker {acct.name}", p))
        roles = [*EXTRA_ROLES, ("api", ["api", "--port", str(api_port)]),
                 ("callbacks", ["callbacks"])]
        for name, extra in roles:
            procs.append((name, subprocess.Popen([sys.executable, "-m", "cli.main", *extra],
                                                 env=env)))
        token = demo_token(env["GONETS_REDIS_URL"], settings.namespace, STATE_DIR / "demo_token")

        print("\n=== Gonets is running ===")
        print(f"Redis:     {env['GONETS_REDIS_URL']}"
              + (f"  (data in {STATE_DIR}/redis)" if redis_server else ""))
        for name, where in info.items():
            print(f"Sandbox:   {name:<10} {where}")
        for name, p in procs[1:]:
            print(f"Process:   {name} (pid {p.pid})")
        print("\nIn another shell:")
        print(f"  export GONETS_REDIS_URL={env['GONETS_REDIS_URL']} "
              f"GONETS_CONFIG={env['GONETS_CONFIG']}")
        for k, v in sandbox_env(info).items():
            print(f"  export {k}={v}")
        print(f"  export GONETS_SANDBOX_WEBHOOKS_URL={env['GONETS_SANDBOX_WEBHOOKS_URL']}")
        print("  .venv/bin/gonets send --to +375291234567 --text 'Hello from Gonets'")
        print("  .venv/bin/gonets status <id>")
        print("  .venv/bin/gonets send --demo 50")
        print(f"\nHTTP API:  http://127.0.0.1:{api_port}  (OpenAPI: /openapi.json)")
        print(f"Demo token (producer 'demo', every scope; kept in {STATE_DIR}/demo_token):")
        print(f"  {token}")
        print(f"  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json'"
              f" -d '{{\"to\": \"+375291234567\", \"text\": \"Hello\"}}'"
              f" http://127.0.0.1:{api_port}/v1/sms")
        print("Ctrl-C stops everything.\n", flush=True)
        while True:
            for name, p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {p.returncode}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        stop_all()
        return 0
    except Exception as exc:
        print(f"gonets run: {exc}", file=sys.stderr)
        stop_all()
        return 1


#: (label, gonets arguments) of further roles started by ``gonets run`` (scheduler, HTTP API)
EXTRA_ROLES: list[tuple[str, list[str]]] = [("scheduler", ["scheduler"])]
