"""Per-message options a producer may pass for one provider type, validated before enqueueing.

Each provider type has one model; unknown keys are errors.  A provider type without a model
accepts no options.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SmscHttpOptions(BaseModel):
    """SMSC HTTP ``send.php`` options (see smsc-http-api-1c-library.txt)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: 0 as is, 1 transliterate, 2 transliterate "mpaHc/Ium"-style
    translit: Literal[0, 1, 2] = 0
    #: delivery time: DDMMYYhhmm, h1-h2, 0ts (unix time) or +m (minutes from now)
    time: str | None = Field(None, pattern=r"^(\d{10}|\d{1,2}-\d{1,2}|0\d{9,10}|\+\d{1,5})$")
    #: most parts this message may be cut into; the send fails if it needs more
    maxsms: int | None = Field(None, ge=1, le=255)
    #: message format: sms, flash, push (wap-push), hlr, bin, bin_hex, ping, viber
    format: Literal["sms", "flash", "push", "hlr", "bin", "bin_hex", "ping", "viber"] = "sms"
    #: time zone offset (hours from Moscow) for ``time``
    tz: int | None = Field(None, ge=-12, le=12)


class Sms2HttpOptions(BaseModel):
    """SMS2 ``sms.cgi`` options (see sms2-http-gate.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: a Flash SMS, shown at once on the phone's screen
    flash: bool = False


OPTIONS: dict[str, type[BaseModel]] = {
    "smsc_http": SmscHttpOptions,
    "sms2_http": Sms2HttpOptions,
}
