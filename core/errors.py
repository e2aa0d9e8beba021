"""The one shallow error tree of Gonets, drawn once and translated at the boundaries.

    GonetsError
     ├── InvalidInput            bad input from a producer; names the field; nothing enqueued
     ├── ConfigError             bad settings or config file; names the key
     ├── Unavailable             a system Gonets needs (Redis) does not answer; names it and
     │                           its address (password masked); nothing was enqueued, try again
     └── ProviderError           anything a provider said or did; keeps ``code`` and ``raw``
          ├── RetryLater         network trouble, 5xx, throttled, queue overflow: try again later
          │    ├── SlowDown      the provider asked us to slow down (MTS 5, SMPP 0x58, SMSC 251)
          │    └── OutcomeUnknown the request may have reached the provider: look it up before
          │                      resending
          ├── NoLookup           the provider cannot be asked whether it took a message whose
          │                      answer was lost (MTS REST, SMS2): the account's
          │                      ``on_lost_answer`` policy decides (resend or give up)
          ├── AlreadyAccepted    a resend after a lost answer was refused as a duplicate of the
          │                      first copy (SMS2 ``message duplication``): the first was taken
          ├── Permanent          this message can never go (bad number, spam filter, blacklist);
          │                      with ``alert`` set it also raises an account alert and pauses
          │                      the pool (MTS 10: sender name not registered)
          └── AccountProblem     the account is unusable (no funds, unregistered sender, forbidden
                                 IP, bad credentials): alert, pause the pool, keep the messages

Provider modules raise these with ``raise X(...) from exc`` so the cause is kept; codes live in
attributes, never in ``args[1]``.
"""

from __future__ import annotations


class GonetsError(Exception):
    """Base of every Gonets error."""


class InvalidInput(GonetsError, ValueError):
    """A producer was given bad input. ``field`` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ConfigError(GonetsError):
    """Settings or the config file are wrong. The message names the key."""


class Unavailable(GonetsError):
    """A system Gonets needs does not answer (Redis down, a Sentinel failover in progress).

    ``system`` names it, ``address`` is where it was looked for (any password masked),
    ``reason`` the underlying error's name; the cause is kept (``raise ... from exc``)."""

    def __init__(self, system: str, address: str, reason: str) -> None:
        super().__init__(f"{system} at {address} does not answer ({reason}); try again")
        self.system = system
        self.address = address
        self.reason = reason


class UnknownMessage(GonetsError, KeyError):
    """No record with this id exists (never created, or expired after retention)."""


class ProviderError(GonetsError):
    """Something a provider said or did.

    ``code`` is the provider's own code as a string (kept raw), ``provider`` names the provider
    type, ``detail`` is a human text without personal data.
    """

    def __init__(self, detail: str, *, code: str | None = None, provider: str = "") -> None:
        super().__init__(detail if code is None else f"{detail} (code {code})")
        self.detail = detail
        self.code = code
        self.provider = provider


class RetryLater(ProviderError):
    """Transient: the same request may succeed later.

    ``delay_s`` is a hint, if the provider gave one."""

    def __init__(self, detail: str, *, code: str | None = None, provider: str = "",
                 delay_s: float | None = None) -> None:
        super().__init__(detail, code=code, provider=provider)
        self.delay_s = delay_s


class SlowDown(RetryLater):
    """The provider says we send too fast. Requeue with a delay and lower the account's rate."""


class OutcomeUnknown(RetryLater):
    """The request may or may not have been accepted (timeout after sending, reset, 5xx).

    Whoever retries must first look the message up at the provider, never blindly resend.
    """


#: ``on_lost_answer`` values (an account option of providers without a lookup, see NoLookup)
LOST_ANSWER_POLICIES = ("auto", "resend", "give_up")


class NoLookup(ProviderError):
    """The provider has no way to be asked "did you take message X?" (no lookup by a reference
    of ours, and the lost answer carried the only id), so a send whose answer was lost cannot
    be checked. ``on_lost_answer`` is the account's policy: ``resend`` (errs toward delivery:
    the message may arrive twice), ``give_up`` (errs toward one copy: the record ends
    ``unknown``) or ``auto`` (urgent transactional messages are resent, others given up)."""

    def __init__(self, detail: str, *, provider: str = "", on_lost_answer: str = "auto") -> None:
        super().__init__(detail, provider=provider)
        self.on_lost_answer = on_lost_answer


class AlreadyAccepted(ProviderError):
    """A resend of a message whose first answer was lost was refused as a duplicate of that
    first copy (SMS2's ``Error: message duplication``): the provider took the first copy, whose
    id was in the lost answer. Its delivery cannot be followed; it was not rejected."""


class Permanent(ProviderError):
    """This message can never be delivered as it is. The record fails (or is rejected)."""

    def __init__(self, detail: str, *, code: str | None = None, provider: str = "",
                 rejected: bool = False, alert: str | None = None) -> None:
        super().__init__(detail, code=code, provider=provider)
        #: True when the provider refused it up front (bad number, forbidden) rather than
        #: failing to deliver it; the record's status becomes ``rejected`` instead of ``failed``.
        self.rejected = rejected
        #: when set, the failure says something about the account too (an unregistered sender
        #: name): the message fails AND the account is alerted once and its pool pauses
        self.alert = alert


class AccountProblem(ProviderError):
    """The account cannot send at all until someone acts. Messages are kept, the pool pauses."""

    def __init__(self, detail: str, *, code: str | None = None, provider: str = "",
                 alert: str = "account") -> None:
        super().__init__(detail, code=code, provider=provider)
        #: short machine name of the alert: ``no_funds``, ``sender``, ``ip``, ``credentials``
        self.alert = alert
