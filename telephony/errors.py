"""One error root for the telephony package; panoramisk and socket errors are wrapped here."""

from __future__ import annotations


class TelephonyError(Exception):
    """Root of every error raised by :mod:`telephony`."""


class UnsafeActionValue(TelephonyError, ValueError):
    """A value meant for an AMI action contains CR, LF, NUL or breaks its field's pattern."""

    def __init__(self, field: str, value: str, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"AMI field {field!r}: {reason} (value {value!r})")


class AmiNotConnected(TelephonyError):
    """The AMI link is down (or not logged in); the action was not sent."""


class AmiTimeout(TelephonyError):
    """Asterisk sent no response to an action within its timeout."""


class AmiActionFailed(TelephonyError):
    """Asterisk answered ``Response: Error`` (its ``Message`` is kept)."""

    def __init__(self, action: str, message: str) -> None:
        self.action = action
        self.message = message
        super().__init__(f"AMI {action} failed: {message}")


class AmiActionLost(TelephonyError):
    """The link dropped after a non-idempotent action was sent and before its response.

    Asterisk may or may not have executed it (an ``Originate`` may already be dialling), so it
    is never sent again automatically; the caller decides.
    """
