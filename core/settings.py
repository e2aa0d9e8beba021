"""One typed settings object for every role.

Sources, later ones winning:
  1. defaults below;
  2. the TOML config file named by ``GONETS_CONFIG`` (accounts live only here);
  3. ``GONETS_*`` environment variables for the top-level scalar settings.

Unknown keys are an error that names the key, in the file and in the environment.  Credentials
are never values in the file: each is a reference, ``env:VAR`` (an environment variable) or
``file:/path`` (a mounted Kubernetes secret), resolved when a provider needs it.

Endpoint strings may contain ``${VAR}``; it is replaced from the environment when the file is
read, so one file can point at sandboxes on ports chosen at start-up.
"""

from __future__ import annotations

import os
import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import ConfigError

ProviderType = Literal["smsc_http", "smsc_smpp", "mts_rest", "mts_smpp", "sms2_http", "bepaid"]
#: what an account of each provider type does: send SMS, or take MTS Money payments
AccountKind = Literal["sms", "payments"]
PROVIDER_KINDS: dict[ProviderType, AccountKind] = {
    "smsc_http": "sms", "smsc_smpp": "sms", "mts_rest": "sms", "mts_smpp": "sms",
    "sms2_http": "sms", "bepaid": "payments",
}

_ENV_PREFIX = "GONETS_"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    """Traffic limits of one account. Units are in the names."""

    rate_per_s: float = Field(30.0, gt=0, description="SMS parts per second, cluster-wide")
    flood_max_messages: int = Field(50, gt=0, description="messages to one number in a burst")
    flood_gap_s: float = Field(30.0, gt=0, description="a burst lasts while gaps stay under this")
    duplicate_window_s: float = Field(60.0, ge=0)
    max_parts: int = Field(10, gt=0, le=255, description="longest message accepted, in parts")
    #: the scheduler's balance check alerts (once per incident) when the balance is under this
    min_balance: float | None = Field(None, description="low-balance alert threshold; None: none")
    #: pacing tolerance: how much later than its slot a send may still be written (checked
    #: where the bytes leave; later, the slot is given up and the next one booked)
    pacing_jitter_ms: float = Field(15.0, ge=0, le=500)
    #: pacing safety margin for what that check cannot see (the instant between the check and
    #: the write, network jitter); slots are (1 s + jitter + margin) / rate apart, so no
    #: 1-second window at the provider holds more than rate_per_s (workers/traffic/pacing.py)
    pacing_margin_ms: float = Field(15.0, ge=0, le=500)
    #: optional hours, in ``timezone``, when bulk and promotional messages may go:
    #: ``"HH:MM[:SS]-HH:MM[:SS]"`` (may wrap midnight); outside them they wait (``deferred``)
    send_window: str | None = Field(None, pattern=r"^\d{2}:\d{2}(:\d{2})?-\d{2}:\d{2}(:\d{2})?$")
    timezone: str = "Europe/Minsk"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


#: account keys whose string values may contain ${VAR}
_EXPANDED = ("base_urls", "smpp_host", "smpp_port", "smpp_backup_host", "options")


def _expand(value: Any, env: dict[str, str], where: str) -> Any:
    if isinstance(value, list):
        return [_expand(v, env, where) for v in value]
    if isinstance(value, dict):  # options: e.g. a webhook URL on a port chosen at start-up
        return {k: _expand(v, env, f"{where}.{k}") for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in env:
            raise ConfigError(f"{where} refers to ${{{name}}}, which is not set in the environment")
        return env[name]

    return _VAR.sub(sub, value)


def resolve_secret(ref: str, where: str) -> str:
    """Resolve a credential reference (``env:VAR`` or ``file:/path``) now. Raises ConfigError
    naming ``where`` (the setting), never the value."""
    kind, _, target = ref.partition(":")
    if kind == "env":
        value = os.environ.get(target)
        if value is None:
            raise ConfigError(f"{where}: environment variable {target} is not set")
        return value
    if kind != "file":
        raise ConfigError(f"{where} must be a reference 'env:VAR' or 'file:/path', "
                          "never the secret itself")
    try:
        return Path(target).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {target}") from exc


class Account(_Strict):
    """One provider account: the unit of credentials, limits and worker pool."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    provider: ProviderType
    #: credential name -> reference (``env:VAR`` or ``file:/path``); never a literal secret
    credentials: dict[str, str] = Field(default_factory=dict)
    #: HTTP base URLs, tried in order (the first is primary, the rest are fallbacks)
    base_urls: list[str] = Field(default_factory=list)
    smpp_host: str | None = None
    smpp_port: int | None = Field(None, gt=0, lt=65536)
    smpp_backup_host: str | None = None
    #: E.164 digit prefixes routed to this account when a producer names no account (each
    #: account's list is a one-account route, tried after the ``[[routes]]``)
    route_prefixes: list[str] = Field(default_factory=list)
    #: what one SMS part costs on this account, for routes with ``prefer = "cheapest"``
    price_per_part: float | None = Field(None, ge=0)
    default_sender: str | None = None
    limits: Limits = Field(default_factory=Limits)
    timeout_s: float = Field(10.0, gt=0)
    #: provider-specific settings; each provider validates its own (unknown keys are errors there)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("credentials")
    @classmethod
    def _refs_only(cls, v: dict[str, str]) -> dict[str, str]:
        for key, ref in v.items():
            if not (ref.startswith("env:") or ref.startswith("file:")):
                raise ValueError(
                    f"credential {key!r} must be a reference 'env:VAR' or 'file:/path', "
                    "never the secret itself"
                )
        return v

    def secret(self, key: str) -> str:
        """Resolve credential ``key`` now. Raises ConfigError naming the key, never the value."""
        ref = self.credentials.get(key)
        if ref is None:
            raise ConfigError(f"accounts.{self.name}.credentials.{key} is not configured")
        return resolve_secret(ref, f"accounts.{self.name}.credentials.{key}")

    def has_secret(self, key: str) -> bool:
        return key in self.credentials

    @property
    def kind(self) -> AccountKind:
        """``sms`` (an SMS pool: send, status, balance) or ``payments`` (MTS Money)."""
        return PROVIDER_KINDS[self.provider]

    def require(self, kind: AccountKind) -> Account:
        """This account, or a ConfigError naming it when it is of the other kind."""
        if self.kind != kind:
            raise ConfigError(f"account {self.name!r} is {_KIND_WORDS[self.kind]} "
                              f"({self.provider}), not {_KIND_WORDS[kind]}")
        return self


class RouteMatch(_Strict):
    """Which messages a route takes; an absent key matches everything."""

    #: E.164 digit prefixes (one or a list)
    prefix: list[str] | None = None
    #: ISO 3166 region codes of the number ("BY", "RU"; one or a list)
    country: list[str] | None = None
    kind: Literal["transactional", "promotional"] | None = None
    lane: Literal["urgent", "bulk"] | None = None

    @field_validator("prefix", "country", mode="before")
    @classmethod
    def _one_or_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("prefix")
    @classmethod
    def _digits(cls, v: list[str] | None) -> list[str] | None:
        for p in v or []:
            if not p.isdigit():
                raise ValueError(f"prefix {p!r} must be E.164 digits")
        return v

    @field_validator("country")
    @classmethod
    def _region(cls, v: list[str] | None) -> list[str] | None:
        for c in v or []:
            if not re.fullmatch(r"[A-Z]{2}", c):
                raise ValueError(f"country {c!r} must be an ISO 3166 code like 'BY'")
        return v


class Route(_Strict):
    """An ordered list of SMS accounts for the messages ``match`` takes (``core/routing.py``):
    a message goes to the first usable one and moves on when that one cannot take it."""

    #: names the route in metrics, alerts and records (default: its accounts joined by "+")
    name: str | None = Field(None, pattern=r"^[a-z][a-z0-9_+-]{0,79}$")
    match: RouteMatch = Field(default_factory=RouteMatch)
    accounts: list[str] = Field(min_length=1)
    #: a provider unreachable this long (every try since failed) hands the route to the next
    failover_after_s: float = Field(30.0, gt=0)
    #: ``order``: the accounts in the order given; ``cheapest``: by ``price_per_part``
    #: (accounts without a price after those with one), the order given for ties
    prefer: Literal["order", "cheapest"] = "order"

    @property
    def key(self) -> str:
        """The route's name (given, or its accounts joined by "+")."""
        return self.name or "+".join(self.accounts)

    @property
    def scope(self) -> str:
        """Whose duplicate window, idempotency keys and flood counts a message shares: its
        account's on a one-account route, else the route's (``@name``)."""
        return self.accounts[0] if len(self.accounts) == 1 else "@" + self.key

    def matches(self, e164_digits: str, region: str | None, kind: str, lane: str) -> bool:
        m = self.match
        return ((m.prefix is None or any(e164_digits.startswith(p) for p in m.prefix))
                and (m.country is None or region in m.country)
                and (m.kind is None or m.kind == kind) and (m.lane is None or m.lane == lane))


class Settings(_Strict):
    """Everything a Gonets process needs to know."""

    #: ``None`` means the embedded Redis of ``gonets run`` (see core.embedded_redis)
    redis_url: str = "redis://127.0.0.1:6379/0"
    config: str | None = None
    namespace: str = Field("gonets", pattern=r"^[a-z][a-z0-9_-]*$")
    retention_s: int = Field(30 * 24 * 3600, gt=0, description="how long final records are kept")
    events_maxlen: int = Field(1_000_000, gt=0, description="approximate cap of the event stream")
    default_region: str = Field("BY", min_length=2, max_length=2)
    default_account: str | None = None
    log_level: str = "INFO"
    sentry_dsn: str | None = None
    #: share of API requests and jobs traced in Sentry (0: tracing off); failed jobs are kept
    sentry_traces_sample_rate: float = Field(0.0, ge=0.0, le=1.0)
    environment: str = "development"
    #: dramatiq: a killed worker's messages come back after this long without its heartbeat
    heartbeat_timeout_s: float = Field(10.0, gt=0)
    #: how often a worker heartbeats and runs queue maintenance (brings back dead workers' work)
    maintenance_interval_s: float = Field(2.0, gt=0)
    #: an idle queue's consumer looks at it this often even without a doorbell ring
    #: (core/doorbell.py: a ring lost costs at most this much latency, never a job)
    idle_poll_s: float = Field(10.0, gt=0)
    #: how long a worker waits for in-flight work on SIGTERM
    drain_timeout_s: float = Field(60.0, gt=0)
    #: after an account problem (no funds, bad credentials...) its pool pauses this long, then
    #: one message tries again; messages are kept meanwhile
    account_pause_s: float = Field(60.0, gt=0)
    #: a message whose send outcome is unknown is looked up this long after the attempt, and
    #: a lookup that fails is tried again (as a lookup, never a send) after twice as long each
    #: time, up to ``lookup_retry_max_s``
    lookup_retry_s: float = Field(5.0, gt=0)
    lookup_retry_max_s: float = Field(300.0, gt=0)
    # --- scheduler (``gonets scheduler``)
    #: when the status sweep runs (cron, UTC); ``status_sweep_every_s`` overrides it
    status_sweep_cron: str = "5 * * * *"
    status_sweep_every_s: float | None = Field(None, gt=0)
    #: a submitted message with no final status after this long is closed as ``unknown``
    status_give_up_s: int = Field(3 * 24 * 3600, gt=0)
    #: a queued or deferred message unchanged this long is reconciled by the status sweep:
    #: if no send job of it is left in the queues, its send job is enqueued again
    reconcile_after_s: float = Field(600.0, gt=0)
    #: ids read from the index and enqueued per status-poll job
    status_sweep_batch: int = Field(500, gt=0, le=10_000)
    payment_sweep_every_s: float = Field(300.0, gt=0)
    balance_check_every_s: float = Field(900.0, gt=0)
    #: the leader lock expires this long after its holder stops renewing it
    scheduler_lock_ttl_s: float = Field(30.0, gt=0)
    #: Prometheus ``/metrics`` port of workers and the scheduler; 0 picks none (off)
    metrics_port: int = Field(0, ge=0, lt=65536)
    #: ``json`` (one object per line), ``text``, or ``auto`` (text in a terminal, else JSON)
    log_format: Literal["auto", "json", "text"] = "auto"
    release: str | None = None
    accounts: tuple[Account, ...] = ()
    #: ``[[routes]]``: ordered accounts with failover, tried in file order (``core/routing.py``)
    routes: tuple[Route, ...] = ()

    @model_validator(mode="after")
    def _check_accounts(self) -> Settings:
        names = [a.name for a in self.accounts]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"account names must be unique; repeated: {sorted(dup)}")
        if self.default_account is not None and self.default_account not in names:
            raise ValueError(f"default_account {self.default_account!r} is not one of the accounts")
        sms = {a.name for a in self.accounts if a.kind == "sms"}
        seen: set[str] = set()
        for i, r in enumerate(self.routes):
            for a in r.accounts:
                if a not in names:
                    raise ValueError(f"routes.{i}.accounts: no account named {a!r}; "
                                     f"configured: {names}")
                if a not in sms:
                    raise ValueError(f"routes.{i}.accounts: {a!r} is not an SMS account")
            if len(set(r.accounts)) != len(r.accounts):
                raise ValueError(f"routes.{i}.accounts: an account is named twice")
            if r.key in seen:
                raise ValueError(f"routes.{i}.name: another route is named {r.key!r}")
            seen.add(r.key)
        return self

    def account(self, name: str) -> Account:
        for a in self.accounts:
            if a.name == name:
                return a
        configured = [a.name for a in self.accounts]
        raise ConfigError(f"no account named {name!r}; configured: {configured}")

    def sms_accounts(self) -> tuple[Account, ...]:
        """The accounts that send SMS, in file order."""
        return tuple(a for a in self.accounts if a.kind == "sms")

    def payment_accounts(self) -> tuple[Account, ...]:
        """The accounts that take MTS Money payments (bePaid), in file order."""
        return tuple(a for a in self.accounts if a.kind == "payments")

    def sms_account(self, name: str) -> Account:
        """``account(name)``, refused with a ConfigError when it sends no SMS."""
        return self._of_kind(name, "sms")

    def payment_account(self, name: str) -> Account:
        """``account(name)``, refused with a ConfigError when it takes no payments."""
        return self._of_kind(name, "payments")

    def _of_kind(self, name: str, kind: AccountKind) -> Account:
        acct = self.account(name)
        try:
            return acct.require(kind)
        except ConfigError as exc:
            others = [a.name for a in self.accounts if a.kind == kind]
            raise ConfigError(f"{exc}; {kind} accounts: {others}") from None

    def route(self, e164_digits: str) -> Account:
        """The first account of the route of a (transactional, bulk) message to a number."""
        return self.account(self.route_for(e164_digits).accounts[0])

    def route_for(self, e164_digits: str, *, kind: str = "transactional",
                  lane: str = "bulk") -> Route:
        """The route of a message: the first ``[[routes]]`` entry that matches it; else the
        longest matching ``route_prefixes`` of an account; else ``default_account``; else the
        only SMS account (each of the last three is a one-account route)."""
        region: str | None = None
        if any(r.match.country is not None for r in self.routes):
            from core.routing import region_of

            region = region_of(e164_digits)
        for r in self.routes:
            if r.matches(e164_digits, region, kind, lane):
                return r
        best: tuple[int, Account] | None = None
        for a in self.sms_accounts():
            for p in a.route_prefixes:
                if e164_digits.startswith(p) and (best is None or len(p) > best[0]):
                    best = (len(p), a)
        if best is not None:
            return Route(accounts=[best[1].name])
        if self.default_account:
            return Route(accounts=[self.account(self.default_account).name])
        sms = self.sms_accounts()
        if len(sms) == 1:
            return Route(accounts=[sms[0].name])
        raise ConfigError("no route takes this number and no default_account is set")

    def route_named(self, name: str) -> Route | None:
        """The ``[[routes]]`` entry called ``name`` (None: not configured any more)."""
        return next((r for r in self.routes if r.key == name), None)


_KIND_WORDS: dict[AccountKind, str] = {"sms": "an SMS account",
                                       "payments": "a payments account"}

_SCALARS = {
    name for name, f in Settings.model_fields.items()
    if name not in ("accounts", "config", "routes")
}


def _flatten_error(exc: ValidationError, where: str) -> ConfigError:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"]
        if not loc and msg.startswith("Value error, "):  # a whole-settings check names its key
            parts.append(msg[len("Value error, "):])
            continue
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{where}{loc}: {msg}")
    return ConfigError("; ".join(parts))


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build the settings from ``environ`` (default ``os.environ``) and the file it names."""
    env = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    config = env.get("GONETS_CONFIG")
    if config:
        try:
            raw = tomllib.loads(Path(config).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"GONETS_CONFIG: cannot read {config}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"GONETS_CONFIG: {config} is not valid TOML: {exc}") from exc
        accounts = raw.pop("accounts", [])
        if isinstance(accounts, dict):  # [accounts.NAME] tables
            accounts = [{"name": k, **v} for k, v in accounts.items()]
        for acct in accounts:
            if isinstance(acct, dict):
                for key in _EXPANDED:
                    if key in acct:
                        acct[key] = _expand(acct[key], env,
                                            f"accounts.{acct.get('name', '?')}.{key}")
        data.update(raw)
        data["accounts"] = accounts
        data["config"] = config
    for key, value in env.items():
        if not key.startswith(_ENV_PREFIX) or key == "GONETS_CONFIG":
            continue
        field = key[len(_ENV_PREFIX):].lower()
        if field.startswith(("sandbox_", "test_", "run_")):
            continue  # reserved for the sandbox, the test harness and `gonets run`
        if field not in _SCALARS:
            raise ConfigError(f"{key}: unknown setting (known: "
                              f"{', '.join('GONETS_' + s.upper() for s in sorted(_SCALARS))})")
        data[field] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise _flatten_error(exc, "") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
