"""An in-memory :class:`channels.gateway.IntakeGateway` for adapter unit tests, and an
in-memory :class:`channels.citizen_status.OrderStatusLookup`.

Adapter tests use it to see exactly what an adapter submitted; the durable gateway itself is
tested against real Redis in ``test_durable.py``. ``fail`` makes every submit raise
:class:`IntakeUnavailable` (Redis and spool both down). The real order look-up (the ticket
store) is tested on the real databases in ``tests/router`` and ``tests/e2e``."""

from __future__ import annotations

import uuid

from channels.citizen_status import CitizenStatus, OrderStatusUnavailable
from channels.errors import IntakeUnavailable
from channels.gateway import Accepted, IntakeStatus
from channels.intake import Channel, Intake, IntakeDraft


class MemoryGateway:
    def __init__(self) -> None:
        self.intakes: list[Intake] = []
        self.by_key: dict[str, Intake] = {}
        self.fail = False
        self._seq = 0

    async def submit(self, draft: IntakeDraft) -> Accepted:
        if self.fail:
            raise IntakeUnavailable("test: gateway down")
        known = self.by_key.get(draft.idempotency_key)
        if known is not None:
            return Accepted(known.acceptance_no, known.intake_id, True, "redis")
        self._seq += 1
        intake = Intake(**draft.model_dump(), intake_id=uuid.uuid4().hex,
                        acceptance_no=f"{draft.received_at:%Y%m%d}01{self._seq:06d}")
        self.intakes.append(intake)
        self.by_key[draft.idempotency_key] = intake
        return Accepted(intake.acceptance_no, intake.intake_id, False, "redis")

    async def status(self, acceptance_no: str) -> IntakeStatus | None:
        for i in self.intakes:
            if i.acceptance_no == acceptance_no:
                return IntakeStatus(i.acceptance_no, i.intake_id, i.channel, i.received_at,
                                    "accepted", i.contact.phone, i.contact.app_user_id,
                                    i.thread_of)
        return None

    async def lookup(self, channel: Channel, external_id: str) -> str | None:
        known = self.by_key.get(f"{channel}:{external_id}")
        return None if known is None else known.acceptance_no


class MemoryOrders:
    """Work orders' citizen statuses by acceptance number; ``asked`` records every look-up,
    ``down`` makes them raise :class:`OrderStatusUnavailable` (the ticket store not
    answering)."""

    def __init__(self) -> None:
        self.statuses: dict[str, CitizenStatus] = {}
        self.asked: list[str] = []
        self.down = False

    async def __call__(self, acceptance_no: str) -> CitizenStatus | None:
        self.asked.append(acceptance_no)
        if self.down:
            raise OrderStatusUnavailable("test: ticket store down")
        return self.statuses.get(acceptance_no)
