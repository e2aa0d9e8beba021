"""SMSC over SMPP v3.4 (shared/providers/smsc-smpp.md): smpp.smscentre.com:3700, backup
smpp2, TLS on 3443; ``MCONn``/``ISO``/``SINGLE`` flags; message types through the text
(``__MAIL__``…), receipts with SMSC's TLVs 0x2000–0x2004, HLR results, query_sm.

The engine is ``workers.smpp``; this module is its SMSC configuration.
"""

from __future__ import annotations

from typing import Any, ClassVar

from workers.smpp.provider import SmppProvider


class SmscSmpp(SmppProvider):
    PROVIDER = "smsc_smpp"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "duplicate_window_s": 60.0,  # "not more than one identical request … within a minute"
        "smsc_text_types": True,
    }
