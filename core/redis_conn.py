"""Every Redis client of Gonets is built here, from ``GONETS_REDIS_URL``.

Two forms of the URL:

    redis://[[user]:password@]host[:port][/db]          one Redis (also rediss://, unix://)
    redis+sentinel://[[user]:password@]host1[:port],host2[:port],.../master_name[/db]

The second asks the Sentinels (port 26379 by default) which server is the master named
``master_name`` and talks to it; after a failover the next command goes to the new master
(redis-py's ``Sentinel.master_for``).  The password is the master's (and its replicas');
Sentinels that need a password of their own take ``?sentinel_password=...``.  A client that
finds the master gone (refused, or demoted to a replica that answers READONLY) raises
``redis.ConnectionError`` and asks the Sentinels again on its next command.

``describe(url)`` names the address with the password masked, for errors and logs;
``unavailable(url)`` turns "Redis does not answer" into ``core.errors.Unavailable``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from core.errors import ConfigError, Unavailable

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
#: the longest a question to one Sentinel may take (connect, or answer)
SENTINEL_TIMEOUT_S = 2.0

#: what "Redis does not answer" looks like: refused, timed out, loading its data, no master
#: known to the Sentinels (a ConnectionError), a replica that answers READONLY or MASTERDOWN
DOWN: tuple[type[Exception], ...] = (
    redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError,
    redis.exceptions.MasterDownError, redis.exceptions.TryAgainError)


@dataclass(frozen=True)
class SentinelAddress:
    """A ``redis+sentinel://`` URL, parsed."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    def describe(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        auth = ":***@" if self.password else ""
        return f"{SENTINEL_SCHEME}://{auth}{hosts}/{self.master}/{self.db}"


def is_sentinel(url: str) -> bool:
    return url.strip().lower().startswith(SENTINEL_SCHEME + "://")


def _host_port(part: str, url_desc: str) -> tuple[str, int]:
    if part.startswith("["):  # [::1]:26379
        host, _, rest = part[1:].partition("]")
        port_s = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_s = part.rpartition(":") if ":" in part else (part, "", "")
    if not host:
        raise ConfigError(f"redis_url {url_desc}: a Sentinel host is empty")
    if port_s and not (port_s.isdigit() and 0 < int(port_s) < 65536):
        raise ConfigError(f"redis_url {url_desc}: {port_s!r} is not a port")
    return host, int(port_s) if port_s else SENTINEL_PORT


def parse_sentinel(url: str) -> SentinelAddress:
    """Parse ``redis+sentinel://[[user]:password@]h1[:p],h2[:p]/master[/db][?sentinel_password=]``.
    Raises ConfigError naming what is wrong (never the password)."""
    rest = url.strip()[len(SENTINEL_SCHEME) + 3:]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    desc = f"{SENTINEL_SCHEME}://{':***@' if password else ''}{hosts}/{path}"
    sentinels = tuple(_host_port(p.strip(), desc) for p in hosts.split(",") if p.strip())
    if not sentinels:
        raise ConfigError(f"redis_url {desc}: name at least one Sentinel host[:port]")
    master, _, db_s = path.strip("/").partition("/")
    if not master:
        raise ConfigError(f"redis_url {desc}: name the master after the hosts "
                          f"({SENTINEL_SCHEME}://host1:26379,host2:26379/mymaster/0)")
    if db_s and not db_s.isdigit():
        raise ConfigError(f"redis_url {desc}: the database after the master name is a number")
    params = parse_qs(query, keep_blank_values=True)
    unknown = set(params) - {"sentinel_password"}
    if unknown:
        raise ConfigError(f"redis_url {desc}: unknown parameter {sorted(unknown)[0]!r} "
                          "(known: sentinel_password)")
    sp = params.get("sentinel_password", [None])[-1]
    return SentinelAddress(sentinels=sentinels, master=unquote(master),
                           db=int(db_s) if db_s else 0,
                           username=unquote(user) or None,
                           password=unquote(password) or None, sentinel_password=sp or None)


def describe(url: str) -> str:
    """The address of ``url`` for people: the URL with any password masked."""
    try:
        if is_sentinel(url):
            return parse_sentinel(url).describe()
        u = urlsplit(url)
        netloc = u.netloc
        if u.password is not None:
            netloc = f"{u.username or ''}:***@{netloc.rpartition('@')[2]}"
        query = "&".join(
            f"{k}=***" if k.endswith("password") else f"{k}={v}"
            for k, vs in parse_qs(u.query, keep_blank_values=True).items() for v in vs)
        return urlunsplit((u.scheme, netloc, u.path, query, ""))
    except (ConfigError, ValueError):
        return "an unparsable redis_url"


def connect(url: str, *, decode_responses: bool = True, socket_timeout: float | None = 30,
            socket_connect_timeout: float | None = 5, health_check_interval: int = 30,
            retry_on_timeout: bool = True, **extra: Any) -> redis.Redis:
    """A client for ``url`` (either form above). The defaults are the long-lived roles':
    decoded strings, timeouts, a health check of idle connections, one retry on a timeout."""
    opts: dict[str, Any] = dict(
        decode_responses=decode_responses, socket_timeout=socket_timeout,
        socket_connect_timeout=socket_connect_timeout,
        health_check_interval=health_check_interval, retry_on_timeout=retry_on_timeout, **extra)
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **opts)
    addr = parse_sentinel(url)
    # a Sentinel that does not answer within seconds is skipped for the next one, at once: no
    # retries (redis-py's default for a client it builds itself is 10, with backoff: seconds
    # lost on a dead Sentinel by every new client)
    sentinel_kwargs: dict[str, Any] = {
        "retry": Retry(NoBackoff(), 0),
        "socket_timeout": min(socket_timeout or SENTINEL_TIMEOUT_S, SENTINEL_TIMEOUT_S),
        "socket_connect_timeout": min(socket_connect_timeout or SENTINEL_TIMEOUT_S,
                                      SENTINEL_TIMEOUT_S)}
    if addr.sentinel_password:
        sentinel_kwargs["password"] = addr.sentinel_password
    sentinel = Sentinel(list(addr.sentinels), sentinel_kwargs=sentinel_kwargs)
    client: redis.Redis = sentinel.master_for(
        addr.master, redis_class=redis.Redis, db=addr.db, username=addr.username,
        password=addr.password, **opts)
    return client


@contextlib.contextmanager
def unavailable(url: str) -> Iterator[None]:
    """Inside: Redis not answering raises ``Unavailable`` naming its address (masked), with
    redis-py's error as the cause. Other Redis errors (a script's bug) pass unchanged."""
    try:
        yield
    except DOWN as exc:
        raise Unavailable("Redis", describe(url), type(exc).__name__) from exc


class _HasSettings(Protocol):
    @property
    def settings(self) -> Any: ...


P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H", bound=_HasSettings)


def raises_unavailable(method: Callable[Concatenate[H, P], R]) -> Callable[Concatenate[H, P], R]:
    """A method of an object with ``settings`` (a producer) that raises ``Unavailable`` naming
    ``settings.redis_url`` when Redis does not answer, instead of redis-py's errors."""

    @functools.wraps(method)
    def wrapper(self: H, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with unavailable(self.settings.redis_url):
            return method(self, *args, **kwargs)

    return wrapper
