"""Settings: typed, from GONETS_* and a TOML file; unknown keys are errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import load_settings

GOOD = """
default_account = "a"
[accounts.a]
provider = "smsc_http"
base_urls = ["${SMSC_URL}"]
credentials = { login = "env:A_LOGIN", password = "file:/run/secrets/a" }
route_prefixes = ["375"]
"""


def cfg(tmp_path: Path, text: str) -> dict[str, str]:
    p = tmp_path / "g.toml"
    p.write_text(text)
    return {"GONETS_CONFIG": str(p), "SMSC_URL": "http://127.0.0.1:1"}


def test_file_and_env_are_read(tmp_path: Path) -> None:
    s = load_settings({**cfg(tmp_path, GOOD), "GONETS_REDIS_URL": "redis://h:1/2",
                       "GONETS_RETENTION_S": "60"})
    assert s.redis_url == "redis://h:1/2" and s.retention_s == 60
    assert s.account("a").base_urls == ["http://127.0.0.1:1"]
    assert s.route("375291234567").name == "a"


@pytest.mark.parametrize("text, key", [
    (GOOD + "colour = 'blue'\n", "colour"),
    (GOOD.replace("route_prefixes", "route_prefix"), "route_prefix"),
    (GOOD + "[accounts.a.limits]\nrate_per_sec = 3\n", "rate_per_sec"),
])
def test_unknown_key_in_file_is_an_error_naming_it(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key) as e:
        load_settings(cfg(tmp_path, text))
    assert "unknown key" in str(e.value)


def test_unknown_env_setting_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GONETS_REDIS_ULR"):
        load_settings({**cfg(tmp_path, GOOD), "GONETS_REDIS_ULR": "redis://x"})


def test_secret_in_the_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="never the secret itself"):
        load_settings(cfg(tmp_path, GOOD.replace("env:A_LOGIN", "hunter2")))


def test_secrets_resolve_from_env_and_files_and_name_what_is_missing(tmp_path: Path,
                                                                     monkeypatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    s = load_settings(cfg(tmp_path, GOOD.replace("/run/secrets/a", str(secret))))
    a = s.account("a")
    assert a.secret("password") == "s3cret"
    monkeypatch.delenv("A_LOGIN", raising=False)
    with pytest.raises(ConfigError, match="A_LOGIN is not set"):
        a.secret("login")
    monkeypatch.setenv("A_LOGIN", "me")
    assert a.secret("login") == "me"


def test_missing_endpoint_variable_is_named(tmp_path: Path) -> None:
    env = cfg(tmp_path, GOOD)
    del env["SMSC_URL"]
    with pytest.raises(ConfigError, match="SMSC_URL"):
        load_settings(env)


def test_bad_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg(tmp_path, "this is = = not toml"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({"GONETS_CONFIG": str(tmp_path / "nope.toml")})


def test_shipped_sandbox_config_is_valid() -> None:
    root = Path(__file__).resolve().parent.parent
    env = {"GONETS_CONFIG": str(root / "config" / "sandbox.toml")}
    import re

    for var in set(re.findall(r"\$\{(\w+)\}", (root / "config" / "sandbox.toml").read_text())):
        env[var] = "http://127.0.0.1:1"
    s = load_settings(env)
    assert s.accounts


BOTH = GOOD + """
[accounts.pay]
provider = "bepaid"
credentials = { shop_id = "env:SHOP", secret_key = "env:KEY" }
route_prefixes = ["37529"]
options = { currencies = ["BYN"] }
"""


def test_every_provider_type_is_an_sms_or_a_payments_account() -> None:
    from typing import get_args

    from core.settings import PROVIDER_KINDS, ProviderType

    assert set(PROVIDER_KINDS) == set(get_args(ProviderType))


def test_sms_and_payment_accounts_are_told_apart(tmp_path: Path) -> None:
    s = load_settings(cfg(tmp_path, BOTH))
    assert [a.name for a in s.sms_accounts()] == ["a"]
    assert [a.name for a in s.payment_accounts()] == ["pay"]
    assert s.route("375291234567").name == "a"  # a payments account never routes an SMS
    assert s.payment_account("pay").kind == "payments"
    with pytest.raises(ConfigError, match=r"'pay' is a payments account \(bepaid\), not an SMS "
                                          r"account; sms accounts: \['a'\]"):
        s.sms_account("pay")
    with pytest.raises(ConfigError, match="'a' is an SMS account"):
        s.payment_account("a")


def test_an_sms_operation_on_a_payments_account_is_a_clear_error(tmp_path: Path) -> None:
    # what `gonets balance --account pay` and `gonets cost --account pay` ask for
    import redis

    from workers import providers
    from workers.providers.base import ProviderContext

    s = load_settings(cfg(tmp_path, BOTH))
    ctx = ProviderContext(s, redis.Redis())  # never connected: refused before any I/O
    with pytest.raises(ConfigError, match="'pay' is a payments account"):
        providers.build(s.account("pay"), ctx)
    with pytest.raises(ConfigError, match="'a' is an SMS account"):
        providers.build_payments(s.account("a"), ctx)


def test_bepaid_options_are_validated_the_one_way_producers_and_workers_read_them(
        tmp_path: Path) -> None:
    from core.provider_options import bepaid_options

    s = load_settings(cfg(tmp_path, BOTH))
    assert bepaid_options(s.account("pay")).pending_lookup_after_s == 300.0
    bad = load_settings(cfg(tmp_path, BOTH.replace("currencies = [\"BYN\"]",
                                                   "currencies = [\"BYN\"], lookup_s = 1")))
    with pytest.raises(ConfigError, match=r"accounts\.pay\.options\.lookup_s: unknown key"):
        bepaid_options(bad.account("pay"))


def test_every_provider_types_account_options_are_checked_without_provider_code(
        tmp_path: Path) -> None:
    from typing import get_args

    from core.provider_options import ACCOUNT_OPTIONS, check_account_options
    from core.settings import ProviderType

    assert set(ACCOUNT_OPTIONS) == set(get_args(ProviderType))
    s = load_settings(cfg(tmp_path, GOOD.replace('route_prefixes', 'options = { fmt = 3 }\n'
                                                                  'route_prefixes')))
    assert check_account_options(s.account("a")).fmt == 3  # type: ignore[attr-defined]
    bad = load_settings(cfg(tmp_path, GOOD.replace('route_prefixes', 'options = { fmt = 2 }\n'
                                                                    'route_prefixes')))
    with pytest.raises(ConfigError, match=r"accounts\.a\.options\.fmt"):
        check_account_options(bad.account("a"))
