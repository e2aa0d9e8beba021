"""MTS Belarus over SMPP v3.4 (smpp.mts.by; shared/providers/mts-belarus-sms-pro-and-bitrix.md
names the gateway and its protocol, nothing more).

The same engine as SMSC (``workers.smpp``) with MTS's configuration: no SMSC text
conventions (``__MAIL__``… would reach the subscriber verbatim), and no server-side duplicate
rule is documented, so a submit whose answer was lost is never resent before its receipt could
no longer come.
"""

from __future__ import annotations

from typing import Any, ClassVar

from workers.smpp.provider import SmppProvider


class MtsSmpp(SmppProvider):
    PROVIDER = "mts_smpp"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "duplicate_window_s": 0.0,
        "smsc_text_types": False,
    }
