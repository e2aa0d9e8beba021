"""Provider modules, one per provider type, found by name (no if/elif dispatch)."""

from __future__ import annotations

import importlib
from typing import Callable

from core.settings import Account
from workers.providers.base import Provider, ProviderContext

#: provider type -> "module:factory"; a factory takes (account, context) and returns a Provider
REGISTRY: dict[str, str] = {
    "smsc_http": "workers.providers.smsc_http:SmscHttp",
    "mts_rest": "workers.providers.mts_rest:MtsRest",
    "sms2_http": "workers.providers.sms2_http:Sms2Http",
    "smsc_smpp": "workers.providers.smsc_smpp:SmscSmpp",
    "mts_smpp": "workers.providers.mts_smpp:MtsSmpp",
}


def build(account: Account, ctx: ProviderContext) -> Provider:
    target = REGISTRY.get(account.provider)
    if target is None:
        raise NotImplementedError(f"provider type {account.provider!r} has no module yet")
    module, _, name = target.partition(":")
    factory: Callable[[Account, ProviderContext], Provider] = getattr(
        importlib.import_module(module), name)
    return factory(account, ctx)
