"""A recording stand-in for the AMI link, for checking the exact action sequences against the
traces without a socket. (The end-to-end tests run the same code over the real link and the
PBX simulator.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from telephony.actions import AmiAction


@dataclass(frozen=True)
class Reply:
    response: Mapping[str, str]
    events: Sequence[Mapping[str, str]] = ()


@dataclass
class RecordingSender:
    """Records what would go on the wire; ActionIDs numbered like the traces (a-1, a-2 ...)."""

    first_id: int = 1
    wire: list[str] = field(default_factory=list)
    sent: list[AmiAction] = field(default_factory=list)

    async def send(self, action: AmiAction, timeout: float | None = None) -> Reply:
        self.wire.append(action.to_wire(f"a-{self.first_id + len(self.wire)}"))
        self.sent.append(action)
        return Reply({"Response": "Success"})
