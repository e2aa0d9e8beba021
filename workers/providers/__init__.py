"""Provider modules, one per provider type, found by name (no if/elif dispatch).

An SMS account's provider (``build``) implements ``base.Provider``; a payments account's
(``build_payments``) implements ``payment.PaymentProvider``.  Asking one kind for the other is
a ConfigError that names the account (``gonets balance --account bepaid`` says so).
"""

from __future__ import annotations

import importlib
from typing import Any

from core.settings import Account
from workers.providers.base import Provider, ProviderContext
from workers.providers.payment import PaymentProvider

#: provider type -> "module:factory"; a factory takes (account, context) and returns a Provider
REGISTRY: dict[str, str] = {
    "smsc_http": "workers.providers.smsc_http:SmscHttp",
    "mts_rest": "workers.providers.mts_rest:MtsRest",
    "sms2_http": "workers.providers.sms2_http:Sms2Http",
    "smsc_smpp": "workers.providers.smsc_smpp:SmscSmpp",
    "mts_smpp": "workers.providers.mts_smpp:MtsSmpp",
}
#: provider type -> "module:factory" returning a PaymentProvider
PAYMENT_REGISTRY: dict[str, str] = {
    "bepaid": "workers.providers.bepaid:Bepaid",
}


def _factory(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def build(account: Account, ctx: ProviderContext) -> Provider:
    """The SMS provider of an SMS account."""
    account.require("sms")  # a payments account: ConfigError naming it
    provider: Provider = _factory(REGISTRY[account.provider])(account, ctx)
    return provider


def build_payments(account: Account, ctx: ProviderContext) -> PaymentProvider:
    """The payment provider of a payments account."""
    account.require("payments")  # an SMS account: ConfigError naming it
    provider: PaymentProvider = _factory(PAYMENT_REGISTRY[account.provider])(account, ctx)
    return provider
