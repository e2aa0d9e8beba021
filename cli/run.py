"""``gonets run`` (``make run``): the whole system on this machine.

Starts a local Redis (unless ``GONETS_REDIS_URL`` is set) with its append-only file under
``./.gonets/``, every provider sandbox on free ports, one worker per configured pool, the
scheduler, the HTTP API and the callbacks dispatcher; prints the banner once they are ready.

It writes its environment to ``.gonets/run.env`` (absolute paths): the CLI reads that file
when neither ``GONETS_REDIS_URL`` nor ``GONETS_CONFIG`` is set (see ``cli.runfile``), and
another shell can ``source`` it.

Every child runs in a process group of its own, so Ctrl-C in the terminal reaches only
``gonets run``, which stops them in order: the API, the callbacks dispatcher, the scheduler
and the workers first (they drain in-flight work and release their locks), then the
sandboxes, Redis last.  A second Ctrl-C kills what is still draining.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cli.runfile import RUN_FILE, read_run_file, write_run_file
from core.embedded_redis import RedisServer, _die_with_parent
from core.settings import load_settings

STATE_DIR = Path(".gonets")
ROOT = Path(__file__).resolve().parent.parent
#: the shipped sandbox configuration (absolute: the CLI may run from any directory)
SANDBOX_CONFIG = ROOT / "config" / "sandbox.toml"
#: how long the system may take to become ready before the banner says what is missing
READY_TIMEOUT_S = 120.0
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
#: RUB in the SMSC and SMS2 sandboxes: 10,000-message batches many times over (1.50 a part)
SANDBOX_BALANCE = 1_000_000
#: the producer the CLI sends as (the demo token's): ``gonets send`` ids are readable over HTTP
DEMO_PRODUCER = "demo"


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


class _Stop(Exception):
    """Ctrl-C or SIGTERM while starting or running."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    relay: threading.Thread | None = None
    lines: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass


class Output:
    """One writer for every child's lines: each is written whole, prefixed with its role."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.seen: dict[str, list[str]] = {}

    def line(self, text: str) -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def child_line(self, child: Child, text: str) -> None:
        with self.lock:
            child.lines.append(text)
            del child.lines[:-50]  # keep the last few for an error report
            self.out.write(f"[{child.name}] {text}\n")
            self.out.flush()


class Runner:
    def __init__(self, threads: int, out: IO[str] | None = None) -> None:
        self.threads = threads
        self.out = Output(out or sys.stdout)
        self.children: list[Child] = []
        self.redis: RedisServer | None = None
        self.env = dict(os.environ)
        self.state = STATE_DIR.resolve()
        self.stopping = False
        self.hurry = False
        self.drain_s = 60.0
        self.children_owned = True
        self.said_hurry = False

    # --- signals
    def _on_signal(self, signum: int, frame: object) -> None:
        if not self.stopping:
            self.stopping = True
            raise _Stop()
        # nothing that takes a lock here (the main thread may hold the output's): the stop
        # loop sees the flag and says it
        self.hurry = True

    # --- children
    def spawn(self, name: str, argv: list[str]) -> Child:
        proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)
        child = Child(name, proc)
        self.children.append(child)
        return child

    def relay(self, child: Child) -> None:
        def pump() -> None:
            assert child.proc.stdout is not None
            for raw in child.proc.stdout:
                self.out.child_line(child, raw.decode("utf-8", "replace").rstrip("\r\n"))

        child.relay = threading.Thread(target=pump, name=f"relay-{child.name}", daemon=True)
        child.relay.start()

    def gonets(self, name: str, *args: str) -> Child:
        child = self.spawn(name, [sys.executable, "-m", "cli.main", *args])
        self.relay(child)
        return child

    def _check_alive(self) -> None:
        for c in self.children:
            if not c.alive():
                if c.relay is not None:
                    c.relay.join(1)
                raise RuntimeError(f"{c.name} exited with code {c.proc.returncode} "
                                   "(its last lines are above)")

    # --- start
    def start(self) -> dict[str, Any]:
        self.out.line("gonets run: starting Redis, the sandboxes, the workers, the scheduler "
                      "and the HTTP API…")
        self.state.mkdir(exist_ok=True)
        other = running_here(self.state / RUN_FILE)
        if other is not None:
            self.children_owned = False
            raise RuntimeError(f"gonets run is already running here (pid {other}); stop it "
                               "first, or start this one in another directory")
        env = self.env
        if not env.get("GONETS_REDIS_URL"):
            # assigned before it starts: a Ctrl-C while it starts still stops it
            self.redis = RedisServer(self.state / "redis", persist=True, own_group=True)
            self.redis.start()
            env["GONETS_REDIS_URL"] = self.redis.url
        if env.get("GONETS_CONFIG"):
            env["GONETS_CONFIG"] = str(Path(env["GONETS_CONFIG"]).resolve())
        else:
            env["GONETS_CONFIG"] = str(SANDBOX_CONFIG)
        # children write to our pipe: text logs, not the JSON a pipe gets by default
        env.setdefault("GONETS_LOG_FORMAT", "text")
        env["PYTHONUNBUFFERED"] = "1"
        sb = self.spawn("sandbox", [sys.executable, "-m", "sandbox", "--balance",
                                      str(SANDBOX_BALANCE)])
        assert sb.proc.stdout is not None
        first = sb.proc.stdout.readline()
        if not first:
            raise RuntimeError("the sandboxes did not start")
        info: dict[str, Any] = json.loads(first)
        self.relay(sb)
        env.update(sandbox_env(info))
        from producers.http.serve import demo_token, pick_port

        api_port = pick_port(8080)
        # bePaid's notifications go to the HTTP API started below (/v1/webhooks/bepaid/<account>)
        env["GONETS_SANDBOX_WEBHOOKS_URL"] = f"http://127.0.0.1:{api_port}"
        settings = load_settings(env)
        self.drain_s = settings.drain_timeout_s
        pools = [a.name for a in settings.accounts]
        workers = {name: self.gonets(f"worker {name}", "worker", "--pool", name,
                                     "--threads", str(self.threads)) for name in pools}
        for name, extra in EXTRA_ROLES:
            self.gonets(name, *extra)
        self.gonets("api", "api", "--port", str(api_port))
        self.gonets("callbacks", "callbacks")
        token = demo_token(env["GONETS_REDIS_URL"], settings.namespace,
                           self.state / "demo_token")
        from core.store import redis_client
        from producers.http.auth import Tokens

        secret = Tokens(redis_client(env["GONETS_REDIS_URL"]),
                        settings.namespace).callback_secret(DEMO_PRODUCER) or ""
        missing = self.wait_ready(workers, api_port)
        api = f"http://127.0.0.1:{api_port}"
        run_env = {"GONETS_REDIS_URL": env["GONETS_REDIS_URL"],
                   "GONETS_CONFIG": env["GONETS_CONFIG"],
                   **sandbox_env(info),
                   "GONETS_SANDBOX_WEBHOOKS_URL": env["GONETS_SANDBOX_WEBHOOKS_URL"],
                   "GONETS_RUN_PRODUCER": DEMO_PRODUCER, "GONETS_RUN_API": api,
                   "GONETS_RUN_TOKEN": token, "GONETS_RUN_PID": str(os.getpid())}
        run_file = write_run_file(self.state / RUN_FILE, run_env)
        self.banner(info, api, token, secret, run_file, missing)
        return info

    def wait_ready(self, workers: dict[str, Child], api_port: int) -> list[str]:
        """Wait until every pool consumes (or stands by for its SMPP bind), the scheduler
        runs and the API accepts connections. Returns what is still not ready at the timeout."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            self._check_alive()
            missing = [f"worker {n}" for n, c in workers.items()
                       if not any(f"pool {n} consuming" in x
                                  or "standing by" in x for x in c.lines)]
            sched = [c for c in self.children if c.name == "scheduler"]
            if sched and not any("scheduler: ready" in x for x in sched[0].lines):
                missing.append("scheduler")
            try:
                with socket.create_connection(("127.0.0.1", api_port), timeout=0.5):
                    pass
            except OSError:
                missing.append("api")
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.1)

    def banner(self, info: dict[str, Any], api: str, token: str, secret: str, run_file: Path,
               missing: list[str]) -> None:
        say = self.out.line
        lines = ["", "=== Gonets is running ===",
                 f"Redis:     {self.env['GONETS_REDIS_URL']}"
                 + (f"  (data in {self.state / 'redis'})" if self.redis else "")]
        lines += [f"Sandbox:   {name:<10} {where}" for name, where in info.items()]
        lines += [f"Process:   {c.name} (pid {c.proc.pid})" for c in self.children]
        if missing:
            lines.append(f"Not ready after {READY_TIMEOUT_S:.0f} s: {', '.join(missing)} "
                         "(see their lines above)")
        lines += [
            "",
            f"HTTP API:  {api}  (OpenAPI: /openapi.json)",
            f"Demo token (producer '{DEMO_PRODUCER}', every scope; kept in "
            f"{self.state / 'demo_token'}):",
            f"  {token}",
            f"Callback secret of '{DEMO_PRODUCER}' (checks X-Gonets-Signature): {secret}",
            "",
            "The gonets command finds this system by itself (it reads "
            f"{run_file}); try:",
            "  .venv/bin/gonets send --to +375291234567 --text 'Hello from Gonets'",
            "  .venv/bin/gonets status <id>",
            "  .venv/bin/gonets send --demo 50",
            "For curl and other tools in another shell:",
            f"  source {run_file}",
            "  curl -s -H \"Authorization: Bearer $GONETS_RUN_TOKEN\" "
            "-H 'Content-Type: application/json' "
            "-d '{\"to\": \"+375291234567\", \"text\": \"Hello\"}' $GONETS_RUN_API/v1/sms",
            "Ctrl-C stops everything.",
            "",
        ]
        for x in lines:
            say(x)

    # --- stop
    def stop(self) -> None:
        self.stopping = True
        run_file = self.state / RUN_FILE
        if self.children_owned:  # not the file of another run we refused to disturb
            try:
                run_file.unlink()
            except FileNotFoundError:
                pass
        roles = [c for c in self.children if c.name != "sandbox"]
        if any(c.alive() for c in roles):
            self.out.line(f"gonets run: stopping: the workers finish their jobs in flight "
                          f"(at most {self.drain_s:.0f} s)…")
        self._stop_stage(roles, self.drain_s + 5)
        self._stop_stage([c for c in self.children if c.name == "sandbox"], 10)
        if self.redis is not None:
            self.redis.stop()
        for c in self.children:
            if c.relay is not None:
                c.relay.join(2)
        self.out.line("gonets run: every process stopped")

    def _stop_stage(self, stage: list[Child], timeout_s: float) -> None:
        for c in stage:
            c.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while any(c.alive() for c in stage) and time.monotonic() < deadline and not self.hurry:
            time.sleep(0.05)
        if self.hurry and any(c.alive() for c in stage) and not self.said_hurry:
            self.said_hurry = True
            self.out.line("gonets run: Ctrl-C again: killing what is still draining "
                          "(its unfinished jobs are requeued, not lost)")
        for c in stage:
            if c.alive():
                self.out.line(f"gonets run: {c.name} did not stop; killing it")
                c.signal(signal.SIGKILL)
            c.proc.wait()

    # --- the whole run
    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        code = 0
        try:
            self.start()
            while True:
                self._check_alive()
                time.sleep(0.25)
        except _Stop:
            self.out.line("")
        except Exception as exc:
            self.out.line(f"gonets run: {exc}")
            code = 1
        self.stop()
        return code


def running_here(run_file: Path) -> int | None:
    """The pid of a ``gonets run`` that wrote ``run_file`` and still runs, else None."""
    import psutil

    try:
        pid = int(read_run_file(run_file).get("GONETS_RUN_PID", ""))
        proc = psutil.Process(pid)
        if pid != os.getpid() and "run" in proc.cmdline() and proc.status() != "zombie":
            return pid
    except (OSError, ValueError, psutil.Error):
        pass
    return None


def run(threads: int = 8) -> int:
    return Runner(threads).run()


#: (label, gonets arguments) of further roles started by ``gonets run``
EXTRA_ROLES: list[tuple[str, list[str]]] = [("scheduler", ["scheduler"])]
