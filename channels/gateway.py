"""The port every channel adapter talks to: :class:`IntakeGateway`.

Adapters (web, app, mail, phone) are thin: they validate what arrived, build an
:class:`~channels.intake.IntakeDraft` and call :meth:`IntakeGateway.submit`. A returned
:class:`Accepted` means the intake is durable (in Redis, or in the local spool while Redis does
not answer); only then may a channel tell the citizen "受理" or mark a mail seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from channels.intake import Channel, IntakeDraft

Where = Literal["redis", "spool"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to a submission."""

    acceptance_no: str        # 受理编号, 16 digits: YYYYMMDD + node (2) + sequence (6)
    intake_id: str
    duplicate: bool           # this channel + external id was accepted before: same numbers
    where: Where              # where it is durable right now


@dataclass(frozen=True, slots=True)
class IntakeStatus:
    """What a citizen may learn by acceptance number (after proving the phone or app user)."""

    acceptance_no: str
    intake_id: str
    channel: Channel
    received_at: datetime
    status: str               # as accepted ("accepted"); the work order's status is read
                              # from the ticket store (channels.citizen_status), never copied here
    phone: str | None
    app_user_id: str | None
    thread_of: str | None


class IntakeGateway(Protocol):
    """Durable acceptance of intakes; implemented by :class:`channels.durable.DurableGateway`."""

    async def submit(self, draft: IntakeDraft) -> Accepted:
        """Make ``draft`` durable and return its numbers; idempotent on its idempotency key.

        Raises :class:`channels.errors.IntakeUnavailable` only when neither Redis nor the
        spool can take it (the channel must then answer 503 / leave the mail unseen)."""
        ...

    async def status(self, acceptance_no: str) -> IntakeStatus | None:
        """The intake's status, or None for an unknown number."""
        ...

    async def lookup(self, channel: Channel, external_id: str) -> str | None:
        """The acceptance number already given to ``channel`` + ``external_id`` (mail threads
        look up the Message-IDs in In-Reply-To / References), or None. Not for ``web``, whose
        key also names the submitter (:attr:`channels.intake.IntakeDraft.idempotency_key`)."""
        ...
