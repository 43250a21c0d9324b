"""The router: one intake from the stream → one work order (工单) in the ticket backend.

    classify (rules, then the learned model; in a thread) → route to a unit (谁主管谁负责,
    属地管理优先) → deadlines on the working-day calendar → knowledge-base answers for a
    consultation → create the ticket (idempotent on the intake id: a redelivered entry finds
    the ticket it already made). The citizen's status query reads the order itself
    (:mod:`channels.citizen_status`).

Every decision is written on the ticket (``explanation``) so a dispatcher can see why. An
intake that cannot be placed goes to manual dispatch (人工派单), never to the floor; a
deadline counted through a year without its official holiday arrangement is provisional
(marked on the ticket, recounted later: router.provisional), and one the calendar cannot
compute (``uncovered_years: error``) is left for the dispatcher with the reason, the ticket
still made.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from channels.intake import Contact, Intake, Location
from config.kinds import DemandType
from config.routing import RepeatConfig
from config.sla import SlaConfig
from config.textcheck import has_control, strip_control
from config.units import UnitsConfig
from router.calendar import CalendarError, WorkCalendar
from router.classify import Classification, Classifier
from router.deadlines import Deadlines, deadline_for
from router.gazetteer import Gazetteer
from router.kb import KnowledgeBase
from router.repeats import (
    Earlier,
    EarlierIndex,
    RepeatFinding,
    check,
    similarity_matrix,
)
from router.assign import route_intake
from router.ticket_store import EarlierOrder
from router.tickets import NewTicket, Ticket, TicketStatus

log = logging.getLogger(__name__)

KB_ANSWERS = 3
# An order in these states is done: a new demand about it is not a repeat of an open order.
CLOSED = frozenset({TicketStatus.REPLIED, TicketStatus.SURVEYED, TicketStatus.ARCHIVED})


@dataclass
class IntakeRouter:
    """Turns intakes into tickets; its :meth:`handle` is the intake consumer's handler."""

    classifier: Classifier
    units: UnitsConfig
    gazetteer: Gazetteer
    calendar: WorkCalendar
    sla: SlaConfig
    create_ticket: Callable[[NewTicket], Awaitable[tuple[Ticket, bool]]]
    kb: KnowledgeBase | None = None
    create_tickets: Callable[[list[NewTicket]], Awaitable[list[tuple[Ticket, bool]]]] | None = \
        None
    # Earlier orders of these citizens or at these places (phones, emails, app_users,
    # streets, addresses, since): repeats and related orders (TicketStore.earlier_orders).
    earlier_orders: Callable[..., Awaitable[list[EarlierOrder]]] | None = None
    repeats: RepeatConfig = field(default_factory=RepeatConfig)
    routed: int = 0
    manual: int = 0

    async def handle(self, intake: Intake) -> None:
        """Route one intake (idempotent: the stream may deliver it again)."""
        ticket, created = await self.create_ticket(await self.decide(intake))
        if created:
            self.routed += 1
            if ticket.unit_id is None:
                self.manual += 1

    async def handle_many(self, intakes: list[Intake]) -> None:
        """Route a batch: decide each, then create all tickets in one transaction (the ticket
        counter is bumped once). Idempotent like :meth:`handle`."""
        if self.create_tickets is None:
            for intake in intakes:
                await self.handle(intake)
            return
        intakes = [sanitised(i) for i in intakes]
        # One trip to a worker thread for the whole batch's classification, while the
        # database looks up the citizens' earlier orders.
        found, earlier = await asyncio.gather(
            asyncio.to_thread(lambda: [self.classifier.classify(_text_of(i)) for i in intakes]),
            self._earlier(intakes))
        assessed = await asyncio.to_thread(self._assess, intakes, earlier) if earlier \
            else [([], None)] * len(intakes)
        news = [self._ticket_for(intake, f, mine, scores)
                for intake, f, (mine, scores) in zip(intakes, found, assessed, strict=True)]
        for ticket, created in await self.create_tickets(news):
            if created:
                self.routed += 1
                if ticket.unit_id is None:
                    self.manual += 1

    async def decide(self, intake: Intake) -> NewTicket:
        """The ticket this intake becomes (no side effects)."""
        intake = sanitised(intake)
        # Classification is CPU work (n-grams, a linear model): not on the event loop.
        found = await asyncio.to_thread(self.classifier.classify, _text_of(intake))
        earlier = await self._earlier([intake])
        [(mine, scores)] = await asyncio.to_thread(self._assess, [intake], earlier) if earlier \
            else [([], None)]
        return self._ticket_for(intake, found, mine, scores)

    def _assess(self, intakes: list[Intake], earlier: list[Earlier]
                ) -> list[tuple[list[Earlier], list[float] | None]]:
        """Per intake: the earlier orders that can matter (same citizen or same place, and
        alike enough to be a repeat or related) with their similarities, for the whole batch in
        one sparse product (CPU: in a thread). A hot spot, hundreds of orders from one street,
        costs a row of the matrix, not hundreds of text comparisons."""
        index = EarlierIndex(earlier)
        wanted = [index.candidates(i) for i in intakes]
        if not any(wanted):
            return [([], None)] * len(intakes)
        matrix = similarity_matrix([(i.title, i.text) for i in intakes],
                                   [(e.title, e.text) for e in earlier])
        floor = min(self.repeats.same_citizen_similarity, self.repeats.related_similarity)
        out: list[tuple[list[Earlier], list[float] | None]] = []
        for row, idx in enumerate(wanted):
            cols = np.asarray(idx, dtype=np.intp)
            scores = matrix[row, cols] if idx else np.empty(0)
            keep = cols[scores >= floor]
            out.append(([earlier[j] for j in keep], [float(matrix[row, j]) for j in keep]))
        return out

    async def _earlier(self, intakes: list[Intake]) -> list[Earlier]:
        """Recent orders of the batch's citizens and at the batch's places, in one query."""
        if self.earlier_orders is None or not intakes:
            return []
        since = min(i.received_at for i in intakes) - timedelta(days=self.repeats.window_days)
        phones = {i.contact.phone for i in intakes if i.contact.phone}
        emails = {i.contact.email for i in intakes if i.contact.email}
        apps = {i.contact.app_user_id for i in intakes if i.contact.app_user_id}
        places = self.repeats.max_related > 0
        streets = {i.location.street for i in intakes if i.location.street and places}
        addresses = {i.location.address for i in intakes if i.location.address and places}
        if not (phones or emails or apps or streets or addresses):
            return []
        rows = await self.earlier_orders(phones=phones, emails=emails, app_users=apps,
                                         streets=streets, addresses=addresses, since=since,
                                         place_limit=self.repeats.place_lookback)
        return [Earlier(r.number, Contact(phone=r.citizen_phone, email=r.citizen_email,
                                          app_user_id=r.citizen_app_user_id),
                        r.title, r.text, Location(street=r.place_street,
                                                  address=r.place_address),
                        r.created_at, r.status not in CLOSED)
                for r in rows]

    def _ticket_for(self, intake: Intake, found: Classification,
                    mine: Sequence[Earlier] = (),
                    scores: Sequence[float] | None = None) -> NewTicket:
        """``mine``: the earlier orders sharing a citizen or place with ``intake``;
        ``scores``: their similarities to it."""
        text = _text_of(intake)
        decision = route_intake(intake, found.unit, self.units, self.gazetteer)
        deadlines, deadline_note = self._deadlines(found, intake.received_at)
        explanation: dict[str, Any] = {
            "classification": list(found.explain),
            "confidence": round(found.confidence, 3),
            "suggestions": [{"unit": unit, "p": round(p, 3)} for unit, p in found.top],
            "routing": {"rule": decision.rule.value, "explain": decision.explain},
        }
        if deadline_note:
            explanation["deadline"] = deadline_note
        repeat = check(intake, mine, intake.received_at, self.repeats, scores) if mine \
            else RepeatFinding()
        if repeat.explain:
            explanation["repeats"] = list(repeat.explain)
        if self.kb is not None and found.type is DemandType.consultation:
            # Articles are valid from/to Beijing dates: 00:30 on January 1 is January 1.
            explanation["kb"] = self._answers(text, self.calendar.local_date(intake.received_at))
        loc = intake.location
        return NewTicket(
            intake_id=intake.intake_id, acceptance_no=intake.acceptance_no,
            channel=intake.channel, type=found.type, urgency=found.urgency,
            unit_id=decision.unit_id, title=intake.title[:500], text=_ticket_text(intake),
            citizen_name=intake.contact.name, citizen_phone=intake.contact.phone,
            citizen_email=intake.contact.email,
            citizen_app_user_id=intake.contact.app_user_id,
            location={k: v for k, v in (("district", loc.district), ("street", loc.street),
                                        ("address", loc.address)) if v},
            sign_by=deadlines.sign_by if deadlines else None,
            handle_by=deadlines.handle_by if deadlines else None,
            deadlines_from=deadlines.accepted_at if deadlines else None,
            deadline_provisional=deadlines.provisional if deadlines else False,
            repeat_of=repeat.repeat_of,
            related_to=repeat.related[0] if repeat.related else None,
            explanation=explanation)

    def _deadlines(self, found: Classification,
                   accepted_at: datetime) -> tuple[Deadlines | None, str | None]:
        try:
            deadlines = deadline_for(found.type, found.urgency, accepted_at, self.calendar,
                                     self.sla)
        except CalendarError as exc:
            log.error("deadline not computed: %s", exc)
            return None, f"期限未能自动计算，请人工设定：{exc}"
        if deadlines.provisional:
            years = "、".join(map(str, deadlines.provisional_years))
            return deadlines, (
                f"期限为临时期限：{years} 年的放假安排尚未录入，按法定节假日规则计算（不含调休），"
                f"录入后自动重算 / provisional deadline: no official holiday arrangement for "
                f"{years} yet; counted on the statutory rules and recounted once it is entered")
        return deadlines, None

    def _answers(self, text: str, day: date) -> list[dict[str, Any]]:
        assert self.kb is not None
        return [{"id": h.article.id, "title": h.article.title, "unit": h.article.unit,
                 "score": h.score, "matched": list(h.matched)}
                for h in self.kb.search(text, on=day, limit=KB_ANSWERS)]


def _clean(value: str | None) -> str | None:
    return None if value is None else strip_control(value)


def sanitised(intake: Intake) -> Intake:
    """``intake`` without control characters in the texts a ticket stores (the intake in the
    stream is left as the citizen sent it)."""
    texts = [intake.title, intake.text, intake.contact.name, intake.location.district,
             intake.location.street, intake.location.address]
    if intake.call is not None:
        texts += [intake.call.agent_summary, intake.call.transcript]
    if not any(v and has_control(v) for v in texts):
        return intake
    loc = intake.location
    update: dict[str, Any] = {
        "title": _clean(intake.title), "text": _clean(intake.text),
        "contact": intake.contact.model_copy(update={"name": _clean(intake.contact.name)}),
        "location": loc.model_copy(update={"district": _clean(loc.district),
                                           "street": _clean(loc.street),
                                           "address": _clean(loc.address)})}
    if intake.call is not None:
        update["call"] = intake.call.model_copy(update={
            "agent_summary": _clean(intake.call.agent_summary),
            "transcript": _clean(intake.call.transcript)})
    return intake.model_copy(update=update)


def _ticket_text(intake: Intake) -> str:
    """What the unit reads: the demand, then the call's transcript (speech recognition) when
    there is one, so every call's words are on its ticket."""
    if intake.call is not None and intake.call.transcript:
        return f"{intake.text}\n\n【通话转写】\n{intake.call.transcript}"
    return intake.text


def _text_of(intake: Intake) -> str:
    """What is classified: title, text and the agent's summary of a call."""
    text = f"{intake.title}\n{intake.text}".strip()
    if intake.call is not None and intake.call.agent_summary:
        text = f"{text}\n{intake.call.agent_summary}"
    return text
