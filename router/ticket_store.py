"""The ticket backend's store: work orders and their audit trail in SQL (SQLite or PostgreSQL).

Every change is one short transaction that also writes its :class:`~db.tables.router.TicketEventRow`,
so the audit trail can never miss a change nor record one that did not happen.

Two properties hold across instances (scale-out), not only inside one process:

* **One ticket per intake.** ``tickets.intake_id`` is unique and :meth:`TicketStore.create`
  inserts with ``ON CONFLICT DO NOTHING``: a redelivered intake gets the ticket that exists.
* **Unique readable numbers.** The day's sequence comes from ``ticket_number_counters``, bumped
  by an upsert inside the creating transaction; a create that loses the intake race rolls back
  and gives its number back, so numbers have no gaps from redeliveries.

SQLite note: each transaction's first statement is a write. A SQLite transaction that reads
first and writes later cannot wait for the write lock (it fails at once with "database is
locked" when another connection committed in between); one that writes first waits for it
under the busy timeout like any other writer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from enum import Enum
from typing import Any, NamedTuple

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from channels.citizen_status import CitizenStatus
from channels.intake import utc_now
from config.routing import TicketSettings
from db.engine import dialect_insert
from db.tables.router import TicketEventRow, TicketNumberCounterRow, TicketOutboxRow, TicketRow
from router.tickets import (
    CITIZEN_STATUS,
    ROUTER,
    Actor,
    IllegalTransition,
    NewTicket,
    Ticket,
    TicketAction,
    TicketError,
    TicketEvent,
    TicketNotFound,
    TicketStatus,
    check_actor,
    format_number,
    next_status,
    number_day,
)

log = logging.getLogger(__name__)

A, S = TicketAction, TicketStatus

# Deadline that must have passed for 督办 (supervision), by status.
_DEADLINE_FOR_SUPERVISION = {
    S.DISPATCHED: "sign_by",
    S.SIGNED: "handle_by",
    S.HANDLING: "handle_by",
}


MAX_BATCH = 500
"""Tickets inserted per statement by :meth:`TicketStore.create_many` (28 columns a row stays
under the bound-parameter limits of asyncpg and SQLite)."""

_CREATE_ATTEMPTS = 5


DONE = frozenset({S.REPLIED, S.SURVEYED, S.ARCHIVED})
"""States in which the unit's work is done: such an order is never overdue."""


class EarlierOrder(NamedTuple):
    """What repeat and related-order detection needs of an earlier ticket."""

    number: str
    citizen_phone: str | None
    citizen_email: str | None
    citizen_app_user_id: str | None
    title: str
    text: str
    place_street: str | None
    place_address: str | None
    created_at: datetime
    status: str


class InvalidTicketChange(TicketError):
    """A transition was given data it does not take or lacks data it needs."""

    code = "invalid_ticket_change"


_PLACE_COLUMNS = ("place_street", "place_address")
_TICKET_COLUMNS = [c for c in TicketRow.__table__.columns
                   if c.name != "id" and c.name not in _PLACE_COLUMNS]


def _places(location: dict[str, Any]) -> dict[str, Any]:
    """The place columns of a ticket (copied out of ``location`` for indexed look-ups)."""
    street, address = location.get("street"), location.get("address")
    return {"place_street": street.strip()[:100] if street else None,
            "place_address": address.strip()[:300] if address else None}


def ticket_from_row(row: Any) -> Ticket:
    """A :class:`Ticket` from a row holding the ``tickets`` columns."""
    return Ticket.model_validate({c.name: getattr(row, c.name) for c in _TICKET_COLUMNS})


_ticket = ticket_from_row


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Enum members as their values (asyncpg binds exact types)."""
    return {k: v.value if isinstance(v, Enum) else v for k, v in values.items()}


class TicketStore:
    """Work orders on an (already migrated) engine; safe to use from many tasks and many
    instances at once."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: TicketSettings | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        outbox: bool = False,
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        """``outbox``: every new ticket also gets a ``ticket_outbox`` row in its creating
        transaction (``routing.outbound.enabled``); ``on_outbox`` is called after such a
        commit (the relay's ``wake``)."""
        self._engine = engine
        self._settings = settings or TicketSettings()
        self._clock = clock
        self._outbox = outbox
        self._on_outbox = on_outbox

    async def create(self, new: NewTicket, actor: Actor = ROUTER) -> tuple[Ticket, bool]:
        """Create the ticket for ``new.intake_id`` in status 受理 ``accepted``, with its number
        and its first audit event; return ``(ticket, True)``.

        If that intake already has a ticket (a redelivery, or a concurrent create that won),
        nothing is written and ``(existing ticket, False)`` is returned.
        """
        [result] = await self.create_many([new], actor)
        return result

    async def create_many(
        self, news: Sequence[NewTicket], actor: Actor = ROUTER
    ) -> list[tuple[Ticket, bool]]:
        """:meth:`create` for a batch (one transaction per :data:`MAX_BATCH` intakes, one
        counter bump for all of them): ``(ticket, created)`` per item, in order.

        The router's consumer reads the stream in batches; committing them together is what
        lifts throughput past the one-row-at-a-time bound of the day's counter row. An intake
        id repeated within the batch yields one ticket (created only on its first occurrence).
        """
        for new in news:
            check_actor(actor, A.ACCEPT, new.unit_id)
        tickets: dict[str, Ticket] = {}
        made: set[str] = set()
        for first in range(0, len(news), MAX_BATCH):
            chunk = {new.intake_id: new for new in news[first : first + MAX_BATCH]}
            for _attempt in range(_CREATE_ATTEMPTS):
                tickets.update(await self._by_intakes(chunk.keys() - tickets.keys()))
                pending = [new for intake_id, new in chunk.items() if intake_id not in tickets]
                if not pending:
                    break
                created = await self._insert(pending, actor)
                if created is not None:
                    tickets.update((t.intake_id, t) for t in created)
                    made.update(t.intake_id for t in created)
                    break
            else:  # pragma: no cover - needs a new concurrent winner on every attempt
                raise TicketError(f"工单创建冲突过多 ({_CREATE_ATTEMPTS} attempts lost a race)")
        results: list[tuple[Ticket, bool]] = []
        for new in news:
            results.append((tickets[new.intake_id], new.intake_id in made))
            made.discard(new.intake_id)  # a repeat within the batch is not created again
        return results

    async def _by_intakes(self, intake_ids: Iterable[str]) -> dict[str, Ticket]:
        wanted = list(intake_ids)
        if not wanted:
            return {}
        query = select(TicketRow.__table__).where(TicketRow.intake_id.in_(wanted))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {row.intake_id: _ticket(row) for row in rows}

    async def _insert(self, pending: list[NewTicket], actor: Actor) -> list[Ticket] | None:
        """Insert tickets for ``pending`` (none of which had one a moment ago) in one
        transaction; ``None``, with nothing written, if a concurrent create got one first."""
        now = self._clock()
        day = number_day(now)
        async with self._engine.connect() as conn:
            trans = await conn.begin()
            try:
                upsert = dialect_insert(conn.dialect.name)
                bump = upsert(TicketNumberCounterRow).values(day=day, last=len(pending))
                bump = bump.on_conflict_do_update(
                    index_elements=["day"],
                    set_={"last": TicketNumberCounterRow.last + len(pending)},
                ).returning(TicketNumberCounterRow.last)
                last = (await conn.execute(bump)).scalar_one()
                first = last - len(pending) + 1
                rows = [
                    _plain(new.model_dump())
                    | {
                        "number": format_number(self._settings.number_prefix, day, first + i),
                        "status": S.ACCEPTED.value,
                        "created_at": now,
                        "updated_at": now,
                        "extensions": 0,
                        "supervised": False,
                    }
                    for i, new in enumerate(pending)
                ]
                places = [row | _places(row["location"]) for row in rows]
                # executemany ("insertmanyvalues"): the statement is compiled once and cached;
                # a .values(rows) statement was recompiled per batch (bench/router.py: 46 % of
                # the router's time was SQLAlchemy compiling 500-row VALUES lists).
                add = upsert(TicketRow).on_conflict_do_nothing(
                    index_elements=["intake_id"]
                ).returning(TicketRow.id, TicketRow.intake_id)
                ids = {row.intake_id: row.id
                       for row in (await conn.execute(add, places)).all()}
                if len(ids) < len(pending):
                    # A concurrent create for one of these intakes committed first: give the
                    # numbers back (no gaps) and let the caller read the winner's ticket.
                    await trans.rollback()
                    return None
                event = {
                    "at": now,
                    "actor": str(actor),
                    "action": A.ACCEPT.value,
                    "from_status": None,
                    "to_status": S.ACCEPTED.value,
                    "note": "",
                }
                await conn.execute(
                    insert(TicketEventRow),
                    [event | {"ticket_id": ids[row["intake_id"]]} for row in rows],
                )
                if self._outbox:
                    await conn.execute(insert(TicketOutboxRow), [
                        {"ticket_id": ticket_id, "state": "pending", "attempts": 0,
                         "next_at": now, "created_at": now} for ticket_id in ids.values()])
                await trans.commit()
            except BaseException:
                if trans.is_active:
                    await trans.rollback()
                raise
        log.info("%d tickets created: %s..%s", len(rows), rows[0]["number"], rows[-1]["number"])
        if self._outbox and self._on_outbox is not None:
            self._on_outbox()
        return [Ticket.model_validate(row) for row in rows]

    async def get(self, number: str) -> Ticket:
        """The ticket with that number; :class:`TicketNotFound` if there is none."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(TicketRow.__table__).where(TicketRow.number == number))
            ).one_or_none()
        if row is None:
            raise TicketNotFound(number)
        return _ticket(row)

    async def by_intake(self, intake_id: str) -> Ticket | None:
        """The ticket made from that intake, if any."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(TicketRow.__table__).where(TicketRow.intake_id == intake_id)
                )
            ).one_or_none()
        return None if row is None else _ticket(row)

    async def citizen_status(self, acceptance_no: str) -> CitizenStatus | None:
        """What the citizen of acceptance number ``acceptance_no`` is told about its order
        (:data:`router.tickets.CITIZEN_STATUS`), or None while no order was made from it.

        Read at query time, so it cannot fall behind the order; one indexed look-up
        (``ix_tickets_acceptance_no``, revision 0008)."""
        query = (select(TicketRow.status).where(TicketRow.acceptance_no == acceptance_no)
                 # One order per intake and one intake per number; the newest, to be total.
                 .order_by(TicketRow.id.desc()).limit(1))
        async with self._engine.connect() as conn:
            status = (await conn.execute(query)).scalar_one_or_none()
        return None if status is None else CITIZEN_STATUS[TicketStatus(status)]

    async def listing(self, *, unit_id: str | None = None, status: TicketStatus | None = None,
                      limit: int = 100, before: str | None = None,
                      overdue_at: datetime | None = None,
                      manual: bool = False) -> list[Ticket]:
        """The newest ``limit`` tickets of one unit and/or in one status, older than ticket
        number ``before`` (paging); ``overdue_at``: only open orders whose handling deadline
        passed before then; ``manual``: only orders waiting for manual dispatch."""
        query = select(TicketRow.__table__).order_by(TicketRow.id.desc()).limit(limit)
        if unit_id is not None:
            query = query.where(TicketRow.unit_id == unit_id)
        if status is not None:
            query = query.where(TicketRow.status == status.value)
        if before is not None:
            query = query.where(TicketRow.id < select(TicketRow.id)
                                .where(TicketRow.number == before).scalar_subquery())
        if overdue_at is not None:
            query = query.where(TicketRow.handle_by < overdue_at,
                                TicketRow.status.not_in([st.value for st in DONE]))
        if manual:
            query = query.where(TicketRow.unit_id.is_(None))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_ticket(row) for row in rows]

    async def earlier_orders(self, *, phones: Collection[str] = (),
                             emails: Collection[str] = (), app_users: Collection[str] = (),
                             streets: Collection[str] = (), addresses: Collection[str] = (),
                             since: datetime, limit: int = 2000,
                             place_limit: int = 300) -> list[EarlierOrder]:
        """The orders since ``since`` of these citizens (up to ``limit``) and the newest
        ``place_limit`` at these places, with only the columns repeat detection compares.

        Two queries, run at the same time, each a set of indexed ``(column, created_at)``
        look-ups: a hot spot (hundreds of orders from one street) must neither crowd the
        citizens' own earlier orders out of the answer nor make every batch read all of them;
        its newest orders are the ones a new demand relates to."""
        citizens = [column.in_(list(values)) for column, values in (
            (TicketRow.citizen_phone, phones), (TicketRow.citizen_email, emails),
            (TicketRow.citizen_app_user_id, app_users)) if values]
        places = [column.in_([v.strip() for v in values]) for column, values in (
            (TicketRow.place_street, streets), (TicketRow.place_address, addresses)) if values]
        columns = [getattr(TicketRow, name) for name in EarlierOrder._fields]

        async def fetch(where: list[Any], most: int) -> list[EarlierOrder]:
            if not where or most <= 0:
                return []
            query = (select(*columns).where(TicketRow.created_at >= since)
                     .where(or_(*where)).order_by(TicketRow.id.desc()).limit(most))
            async with self._engine.connect() as conn:
                return [EarlierOrder(*row) for row in (await conn.execute(query)).all()]

        mine, near = await asyncio.gather(fetch(citizens, limit), fetch(places, place_limit))
        seen = {o.number for o in mine}
        return mine + [o for o in near if o.number not in seen]

    async def events(self, number: str) -> list[TicketEvent]:
        """The audit trail of a ticket, oldest first."""
        query = (
            select(TicketEventRow.__table__, TicketRow.number)
            .join(TicketRow, TicketRow.id == TicketEventRow.ticket_id)
            .where(TicketRow.number == number)
            .order_by(TicketEventRow.id)
        )
        async with self._engine.connect() as conn:
            rows: Sequence[Any] = (await conn.execute(query)).all()
        return [
            TicketEvent(
                ticket_number=row.number,
                at=row.at,
                actor=row.actor,
                action=TicketAction(row.action),
                from_status=None if row.from_status is None else TicketStatus(row.from_status),
                to_status=TicketStatus(row.to_status),
                note=row.note,
            )
            for row in rows
        ]

    async def provisional_open(self, *, after: str | None = None,
                               limit: int = MAX_BATCH) -> list[Ticket]:
        """Up to ``limit`` orders not done whose deadlines are provisional, oldest first,
        after ticket number ``after`` (paging)."""
        query = (select(TicketRow.__table__)
                 .where(TicketRow.deadline_provisional.is_(True),
                        TicketRow.status.not_in([st.value for st in DONE]))
                 .order_by(TicketRow.id).limit(limit))
        if after is not None:
            query = query.where(TicketRow.id > select(TicketRow.id)
                                .where(TicketRow.number == after).scalar_subquery())
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_ticket(row) for row in rows]

    async def reschedule(self, old: Ticket, *, sign_by: datetime | None,
                         handle_by: datetime | None, provisional: bool,
                         note: str) -> Ticket | None:
        """Replace the router's provisional deadlines of ``old`` with recounted ones and
        record it (action ``reschedule``, status unchanged, ``note`` saying old and new).

        Compare-and-set: nothing is written, and ``None`` returned, when the order changed
        since ``old`` was read (a person set its deadlines, or it was done)."""
        now = self._clock()
        table = TicketRow.__table__
        async with self._engine.connect() as conn:
            trans = await conn.begin()
            try:
                changed = await conn.execute(
                    update(TicketRow)
                    .where(TicketRow.number == old.number,
                           TicketRow.deadline_provisional.is_(True),
                           TicketRow.status == old.status.value,
                           TicketRow.sign_by.is_not_distinct_from(old.sign_by),
                           TicketRow.handle_by.is_not_distinct_from(old.handle_by))
                    .values(sign_by=sign_by, handle_by=handle_by,
                            deadline_provisional=provisional, updated_at=now))
                if changed.rowcount == 0:
                    await trans.rollback()
                    return None
                row = (await conn.execute(
                    select(table).where(TicketRow.number == old.number))).one()
                await conn.execute(insert(TicketEventRow).values(
                    ticket_id=row.id, at=now, actor=str(ROUTER), action=A.RESCHEDULE.value,
                    from_status=row.status, to_status=row.status, note=note))
                await trans.commit()
            except BaseException:
                if trans.is_active:
                    await trans.rollback()
                raise
        log.info("ticket %s: deadlines recounted (%s)", old.number, note)
        return _ticket(row)

    async def transition(
        self,
        number: str,
        action: TicketAction,
        actor: Actor,
        note: str = "",
        *,
        unit_id: str | None = None,
        sign_by: datetime | None = None,
        handle_by: datetime | None = None,
        survey_satisfied: bool | None = None,
        survey_note: str | None = None,
    ) -> Ticket:
        """Apply ``action`` by ``actor`` to ticket ``number`` and record it; return the ticket.

        Checks, in this order, with nothing written if one fails: the data fits the action
        (:class:`InvalidTicketChange`), the ticket exists (:class:`TicketNotFound`), the actor
        may act (:class:`PermissionDenied`; a unit only on its own orders, and before the
        status is revealed), the lifecycle allows it (:class:`IllegalTransition`, with
        :class:`ExtensionLimitReached` past the limit).

        Data per action: ``dispatch`` takes ``unit_id`` (required when the order has none or
        was returned) and new ``sign_by``/``handle_by``; ``extend`` takes the new ``handle_by``;
        ``reopen`` may set new deadlines; ``survey`` needs ``survey_satisfied`` (and an optional
        ``survey_note``). ``supervise`` (督办) only applies to an order past its deadline.
        """
        _check_data(
            action, unit_id=unit_id, sign_by=sign_by, handle_by=handle_by,
            survey_satisfied=survey_satisfied, survey_note=survey_note,
        )  # fmt: skip
        now = self._clock()
        table = TicketRow.__table__
        async with self._engine.connect() as conn:
            trans = await conn.begin()
            try:
                # Write first: takes the row lock (PostgreSQL) or the write lock (SQLite)
                # before reading, so two concurrent changes of one order serialise.
                touched = await conn.execute(
                    update(TicketRow).where(TicketRow.number == number).values(updated_at=now)
                )
                if touched.rowcount == 0:
                    raise TicketNotFound(number)
                row = (await conn.execute(select(table).where(TicketRow.number == number))).one()
                status = TicketStatus(row.status)
                check_actor(actor, action, row.unit_id)
                target = next_status(
                    status,
                    action,
                    extensions=row.extensions,
                    max_extensions=self._settings.max_extensions,
                    survey_satisfied=row.survey_satisfied,
                )
                changes = self._changes(
                    row, status, action, now, unit_id, sign_by, handle_by,
                    survey_satisfied, survey_note,
                )  # fmt: skip
                changes["status"] = target.value
                await conn.execute(
                    update(TicketRow).where(TicketRow.id == row.id).values(**changes)
                )
                await conn.execute(
                    insert(TicketEventRow).values(
                        ticket_id=row.id,
                        at=now,
                        actor=str(actor),
                        action=action.value,
                        from_status=status.value,
                        to_status=target.value,
                        note=note,
                    )
                )
                fresh = (await conn.execute(select(table).where(table.c.id == row.id))).one()
                await trans.commit()
            except BaseException:
                if trans.is_active:
                    await trans.rollback()
                raise
        log.info(
            "ticket %s: %s by %s, %s -> %s", number, action.value, actor, status.value, target.value
        )
        return _ticket(fresh)

    def _changes(
        self,
        row: Any,
        status: TicketStatus,
        action: TicketAction,
        now: datetime,
        unit_id: str | None,
        sign_by: datetime | None,
        handle_by: datetime | None,
        survey_satisfied: bool | None,
        survey_note: str | None,
    ) -> dict[str, Any]:
        """Column updates of ``action`` beyond the status (guards needing the row too)."""
        changes: dict[str, Any] = {}
        if sign_by is not None:
            changes["sign_by"] = sign_by
        if handle_by is not None:
            changes["handle_by"] = handle_by
        if sign_by is not None or handle_by is not None:
            # A person set the deadlines: they are no longer the router's to recount.
            changes["deadline_provisional"] = False
        if action is A.DISPATCH:
            if unit_id is None and (row.unit_id is None or status is S.RETURNED):
                raise InvalidTicketChange("派单需要指定承办单位 (dispatch needs unit_id)")
            if unit_id is not None:
                changes["unit_id"] = unit_id
        elif action is A.EXTEND:
            # An extension gives more time: a deadline that is not later than now and than
            # the current one would count against the limit and give none.
            if handle_by is None or handle_by <= now or (
                    row.handle_by is not None and handle_by <= row.handle_by):
                raise InvalidTicketChange(
                    "延期后的办理期限须晚于当前时间和原办理期限 (extension must move handle_by later)")
            changes["extensions"] = row.extensions + 1
        elif action is A.SUPERVISE:
            deadline: datetime | None = getattr(row, _DEADLINE_FOR_SUPERVISION[status])
            if deadline is None or now <= deadline:
                raise IllegalTransition(status, action, "工单未超期, 不能督办 (not overdue)")
            changes["supervised"] = True
        elif action is A.SURVEY:
            changes.update(
                survey_satisfied=survey_satisfied, survey_note=survey_note, surveyed_at=now
            )
        elif action is A.REOPEN:
            # The next callback starts afresh; the unsatisfied one stays in the audit trail.
            changes.update(survey_satisfied=None, survey_note=None, surveyed_at=None)
        return changes


_DATA_ACTIONS: dict[str, frozenset[TicketAction]] = {
    "unit_id": frozenset({A.DISPATCH}),
    "sign_by": frozenset({A.DISPATCH, A.REOPEN}),
    "handle_by": frozenset({A.DISPATCH, A.EXTEND, A.REOPEN}),
    "survey_satisfied": frozenset({A.SURVEY}),
    "survey_note": frozenset({A.SURVEY}),
}


def _check_data(action: TicketAction, **given: object) -> None:
    for name, value in given.items():
        if value is not None and action not in _DATA_ACTIONS[name]:
            raise InvalidTicketChange(f"操作 {action.value} 不接受 {name} (not taken by action)")
    if action is A.SURVEY and given["survey_satisfied"] is None:
        raise InvalidTicketChange("回访需要满意度 (survey needs survey_satisfied)")
    if action is A.EXTEND and given["handle_by"] is None:
        raise InvalidTicketChange("延期需要新的办理期限 (extend needs handle_by)")
