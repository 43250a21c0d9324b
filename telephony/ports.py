"""The one thing the telephony logic needs from the AMI link: send an action, get a reply.

Kept as a Protocol so seat actions, queue admin and resync are tested against a recording
fake or the real link over a socket alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from telephony.actions import AmiAction
from telephony.events import AmiEvent


class AmiReply(Protocol):
    """A response: the ``Response`` message and, for list actions, the listed events."""

    @property
    def response(self) -> Mapping[str, str]: ...

    @property
    def events(self) -> Sequence[Mapping[str, str]]: ...


class ActionSender(Protocol):
    async def send(self, action: AmiAction, timeout: float | None = None) -> AmiReply: ...


class EventSource(Protocol):
    """Typed AMI events as they arrive (the dispatcher): an action that must wait for
    Asterisk's outcome, not only for its response, watches them."""

    def subscribe(self, listener: Callable[[AmiEvent], None]) -> Callable[[], None]: ...
