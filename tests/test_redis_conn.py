"""Redis addresses and outages as a producer sees them: one factory reads both URL forms
(``redis://`` and ``redis+sentinel://``), names an address with its password masked, and a
producer whose Redis does not answer raises ``Unavailable`` naming it (the HTTP API: 503)."""

from __future__ import annotations

import socket

import httpx
import pytest
import redis

from core.broker import build_broker
from core.errors import ConfigError, Unavailable
from core.redis_conn import SentinelAddress, connect, describe, parse_sentinel
from core.settings import Settings
from producers import Producer
from producers.http.app import create_app
from producers.http.auth import NewToken
from tests.support import free_socket, serve_asgi


def _dead_url(password: str = "") -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    auth = f":{password}@" if password else ""
    return f"redis://{auth}127.0.0.1:{port}/0"


# --- URLs ----------------------------------------------------------------------------------

def test_sentinel_urls_parse_into_sentinels_master_and_db() -> None:
    got = parse_sentinel("redis+sentinel://:s%40cret@10.0.0.1:26379,redis-1,[::1]:26380/mymaster/2"
                         "?sentinel_password=x")
    assert got == SentinelAddress(
        sentinels=(("10.0.0.1", 26379), ("redis-1", 26379), ("::1", 26380)), master="mymaster",
        db=2, password="s@cret", sentinel_password="x")
    assert parse_sentinel("redis+sentinel://h/m").db == 0


@pytest.mark.parametrize("url, says", [
    ("redis+sentinel://:pw@/mymaster/0", "at least one Sentinel"),
    ("redis+sentinel://:pw@h1:26379,h2:26379", "name the master"),
    ("redis+sentinel://:pw@h1:26379/mymaster/zero", "is a number"),
    ("redis+sentinel://:pw@h1:port/mymaster", "is not a port"),
    ("redis+sentinel://:pw@h1/mymaster?sentinel_pasword=x", "unknown parameter"),
])
def test_a_bad_sentinel_url_is_a_config_error_without_the_password(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        connect(url)
    assert says in str(e.value) and "pw" not in str(e.value)


@pytest.mark.parametrize("url, shown", [
    ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
    ("redis://gonets:hunter2@redis:6379/0", "redis://gonets:***@redis:6379/0"),
    ("redis://redis:6379/0?password=hunter2", "redis://redis:6379/0?password=***"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis+sentinel://:hunter2@a:1,b:2/mymaster/0?sentinel_password=hunter2",
     "redis+sentinel://:***@a:1,b:2/mymaster/0"),
])
def test_addresses_are_named_with_passwords_masked(url: str, shown: str) -> None:
    assert describe(url) == shown


# --- a producer whose Redis does not answer ------------------------------------------------

def test_send_sms_without_redis_raises_unavailable_naming_the_address(settings: Settings) -> None:
    url = _dead_url("hunter2")
    dead = settings.model_copy(update={"redis_url": url})
    broker = build_broker(dead)
    try:
        producer = Producer(dead, broker=broker)
        with pytest.raises(Unavailable) as e:
            producer.send_sms("+375291234567", "hello")
        with pytest.raises(Unavailable):
            producer.status("0" * 32)
    finally:
        broker.close()
    masked = url.replace("hunter2", "***")
    assert e.value.system == "Redis" and e.value.address == masked
    assert f"Redis at {masked} does not answer" in str(e.value) and "hunter2" not in str(e.value)
    assert isinstance(e.value.__cause__, redis.ConnectionError)  # the cause is kept


def test_the_http_api_answers_503_when_the_producer_finds_redis_down(
        api_settings: Settings, token: NewToken) -> None:
    """Tokens answer (their Redis is up); the producer's Redis is down: 503 with Retry-After,
    not a 500."""
    dead = api_settings.model_copy(update={"redis_url": _dead_url()})
    broker = build_broker(dead)
    try:
        app = create_app(api_settings, producer=Producer(dead, broker=broker))
        with serve_asgi(app, free_socket()) as url:
            r = httpx.post(f"{url}/v1/sms", json={"to": "+375291234567", "text": "hello"},
                           headers={"Authorization": f"Bearer {token.token}"}, timeout=30)
    finally:
        broker.close()
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["retry-after"] == "5"
