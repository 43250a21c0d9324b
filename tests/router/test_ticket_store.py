"""The ticket store on the real PostgreSQL and on SQLite files: creation once per intake,
unique numbers across instances, the lifecycle with its audit trail, permissions, migrations."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, func, inspect, select, text
from sqlalchemy import bindparam as sa_bindparam
from sqlalchemy.ext.asyncio import AsyncEngine

from config.routing import TicketSettings
from db.engine import create_engine, downgrade, head_revision, migrate, schema_revision
from db.tables import Base
from db.tables.router import TicketEventRow, TicketNumberCounterRow, TicketRow
from router.ticket_store import InvalidTicketChange, TicketStore
from router.tickets import (
    ROUTER,
    Actor,
    ExtensionLimitReached,
    IllegalTransition,
    NewTicket,
    PermissionDenied,
    Ticket,
    TicketAction,
    TicketNotFound,
    TicketStatus,
)

DatabaseFactory = Callable[[], Awaitable[str]]
EngineFactory = Callable[..., Awaitable[AsyncEngine]]

S, A = TicketStatus, TicketAction
OFFICE = Actor("office", "zhang")
UNIT = Actor("unit", "district.chaoyang")
OTHER_UNIT = Actor("unit", "gov.housing")
TICKET_TABLES = {"tickets", "ticket_events", "ticket_number_counters", "ticket_outbox"}


class Clock:
    """A settable clock (the store's idea of now)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Beijing

    def __call__(self) -> datetime:
        return self.now


def new_ticket(intake_id: str | None = None, **overrides: object) -> NewTicket:
    fields: dict[str, object] = {
        "intake_id": intake_id or secrets.token_hex(16),
        "acceptance_no": "2026112300000001",
        "channel": "phone",
        "type": "complaint",
        "urgency": "general",
        "unit_id": UNIT.name,
        "title": "小区噪音扰民",
        "text": "楼下商铺每晚十一点后仍有噪音 😡",
        "citizen_phone": "13800138000",
        "location": {"district": "朝阳区", "address": "某路 1 号"},
        "sign_by": datetime(2026, 11, 23, 3, 0, tzinfo=UTC),
        "handle_by": datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
        "explanation": {"rule": "keywords", "words": ["噪音"]},
    }
    return NewTicket.model_validate(fields | overrides)


async def count(engine: AsyncEngine, row: type[Base]) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(row))).scalar_one()


async def dispatched(store: TicketStore) -> Ticket:
    ticket, _ = await store.create(new_ticket())
    await store.transition(ticket.number, A.REVIEW, ROUTER)
    return await store.transition(ticket.number, A.DISPATCH, ROUTER)


# ---------------------------------------------------------------------------------------------
# Migrations


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


async def test_migration_up_and_down(engine_factory: EngineFactory) -> None:
    engine = await engine_factory(migrated=False)
    await migrate(engine)
    assert await schema_revision(engine) == await head_revision() == "0010"
    async with engine.connect() as conn:
        assert TICKET_TABLES <= await conn.run_sync(_tables)

    await downgrade(engine, "0002")
    async with engine.connect() as conn:
        tables = await conn.run_sync(_tables)
    assert "ticket_outbox" not in tables and "tickets" in tables

    await downgrade(engine, "0001")
    assert await schema_revision(engine) == "0001"
    async with engine.connect() as conn:
        tables = await conn.run_sync(_tables)
    assert not TICKET_TABLES & tables
    assert {"calls", "queue_intervals"} <= tables

    await downgrade(engine)
    assert await schema_revision(engine) is None
    await migrate(engine)  # nothing left behind that blocks the way up
    assert await schema_revision(engine) == "0010"


async def test_migration_0003_copies_places_of_earlier_tickets(
        engine_factory: EngineFactory) -> None:
    """Tickets made before 0003 get their street/address columns filled on the way up, so
    related-order look-ups find them too."""
    engine = await engine_factory(migrated=False)
    await migrate(engine, "0002")
    now = datetime(2026, 11, 23, 2, tzinfo=UTC)
    row = {"number": "GD202611230001", "intake_id": "a" * 32, "acceptance_no": "1" * 16,
           "channel": "web", "type": "complaint", "urgency": "general", "status": "accepted",
           "title": "t", "text": "x", "created_at": now, "updated_at": now,
           "explanation": {}, "extensions": 0, "supervised": False}
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO tickets (number, intake_id, acceptance_no, channel, type, urgency,"
            " status, title, text, location, created_at, updated_at, explanation, extensions,"
            " supervised) VALUES (:number, :intake_id, :acceptance_no, :channel, :type,"
            " :urgency, :status, :title, :text, :location, :created_at, :updated_at,"
            " :explanation, :extensions, :supervised)").bindparams(
                sa_bindparam("location", type_=TicketRow.__table__.c.location.type),
                sa_bindparam("explanation", type_=TicketRow.__table__.c.explanation.type)),
            [row | {"location": {"street": "幸福街道", "address": "幸福小区3栋"}},
             row | {"number": "GD202611230002", "intake_id": "b" * 32, "location": {}}])
    await migrate(engine)
    async with engine.connect() as conn:
        got = (await conn.execute(text(
            "SELECT number, place_street, place_address FROM tickets ORDER BY number"))).all()
    assert [tuple(r) for r in got] == [("GD202611230001", "幸福街道", "幸福小区3栋"),
                                       ("GD202611230002", None, None)]


async def test_migration_0010_keeps_earlier_orders_final(engine_factory: EngineFactory) -> None:
    """Orders made before 0010 were counted on a known calendar: not provisional, nothing to
    recount; down again, the columns go."""
    engine = await engine_factory(migrated=False)
    await migrate(engine, "0005")
    now = datetime(2026, 11, 23, 2, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO tickets (number, intake_id, acceptance_no, channel, type, urgency,"
            " status, title, text, location, created_at, updated_at, explanation, extensions,"
            " supervised) VALUES ('GD20261123000001', :intake_id, '2026112300000001', 'web',"
            " 'complaint', 'general', 'dispatched', 't', 'x', :location, :now, :now,"
            " :explanation, 0, false)").bindparams(
                sa_bindparam("location", type_=TicketRow.__table__.c.location.type),
                sa_bindparam("explanation", type_=TicketRow.__table__.c.explanation.type),
                sa_bindparam("now", type_=TicketRow.__table__.c.created_at.type)),
            {"intake_id": "c" * 32, "location": {}, "explanation": {}, "now": now})
    await migrate(engine)
    store = TicketStore(engine)
    ticket = await store.get("GD20261123000001")
    assert not ticket.deadline_provisional and ticket.deadlines_from is None
    assert await store.provisional_open() == []
    await downgrade(engine, "0005")
    async with engine.connect() as conn:
        columns = await conn.run_sync(
            lambda c: {col["name"] for col in inspect(c).get_columns("tickets")})
    assert not {"deadline_provisional", "deadlines_from"} & columns


async def test_migration_matches_the_models(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()

    def diff(conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


# ---------------------------------------------------------------------------------------------
# Creation


async def test_create_stores_everything_and_writes_the_first_event(
    engine_factory: EngineFactory,
) -> None:
    clock = Clock()
    store = TicketStore(await engine_factory(), clock=clock)
    new = new_ticket()
    ticket, created = await store.create(new)

    assert created
    assert ticket.number == "GD20261123000001"
    assert ticket.status is S.ACCEPTED
    assert ticket.created_at == clock.now
    stored = await store.get(ticket.number)
    assert stored == ticket
    assert stored.citizen_phone == "13800138000"  # in full: the unit calls back
    assert "13800138000" not in repr(stored)
    assert stored.text == new.text and stored.location == new.location
    assert stored.explanation == {"rule": "keywords", "words": ["噪音"]}
    assert stored.sign_by == new.sign_by and stored.sign_by is not None
    assert stored.sign_by.tzinfo is UTC
    [event] = await store.events(ticket.number)
    assert (event.actor, event.action, event.from_status, event.to_status) == (
        "router",
        A.ACCEPT,
        None,
        S.ACCEPTED,
    )
    assert await store.by_intake(new.intake_id) == ticket


async def test_create_is_idempotent_under_concurrency(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()
    store = TicketStore(engine)
    new = new_ticket()

    results = await asyncio.gather(*(store.create(new) for _ in range(10)))

    assert len({ticket.number for ticket, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert await count(engine, TicketRow) == 1
    assert await count(engine, TicketEventRow) == 1
    # The losers gave their numbers back: the next ticket is number 2, not 11.
    ticket, created = await store.create(new_ticket())
    assert created and ticket.number.endswith("000002")
    # And a later redelivery writes nothing.
    again, created = await store.create(new)
    assert not created and again.number == results[0][0].number
    assert await count(engine, TicketEventRow) == 2


async def test_numbers_are_unique_across_instances(database_factory: DatabaseFactory) -> None:
    url = await database_factory()
    await migrate(url)
    engines = [await asyncio.to_thread(create_engine, url) for _ in range(2)]
    try:
        stores = [TicketStore(engine) for engine in engines]
        tickets = await asyncio.gather(*(stores[i % 2].create(new_ticket()) for i in range(50)))
        numbers = sorted(ticket.number for ticket, _ in tickets)
        day = numbers[0][2:10]
        assert numbers == [f"GD{day}{n:06d}" for n in range(1, 51)]
        async with engines[0].connect() as conn:
            last = await conn.scalar(select(TicketNumberCounterRow.last))
        assert last == 50
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_batch_creates_once_per_intake(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()
    store = TicketStore(engine)
    old, _ = await store.create(new_ticket())
    fresh = [new_ticket() for _ in range(3)]
    batch = [fresh[0], new_ticket(old.intake_id), fresh[1], fresh[0], fresh[2]]

    results = await store.create_many(batch)

    assert [created for _, created in results] == [True, False, True, False, True]
    assert results[1][0] == old and results[3][0] == results[0][0]
    assert sorted(t.number[-6:] for t in {r[0].number: r[0] for r in results}.values()) == [
        "000001", "000002", "000003", "000004"
    ]  # fmt: skip
    assert await count(engine, TicketRow) == await count(engine, TicketEventRow) == 4
    assert [(await store.get(t.number)) for t, _ in results] == [t for t, _ in results]


async def test_overlapping_batches_across_instances(database_factory: DatabaseFactory) -> None:
    url = await database_factory()
    await migrate(url)
    engines = [await asyncio.to_thread(create_engine, url) for _ in range(2)]
    try:
        stores = [TicketStore(engine) for engine in engines]
        news = [new_ticket() for _ in range(40)]
        # Five overlapping batches from two instances at once: 40 intakes offered 80 times.
        batches = [news[0:20], news[10:30], news[20:40], news[30:40], news[0:10] + news[35:]]
        results = await asyncio.gather(
            *(stores[i % 2].create_many(batch) for i, batch in enumerate(batches))
        )
        by_intake: dict[str, set[str]] = {}
        created = 0
        for result in results:
            for ticket, made in result:
                by_intake.setdefault(ticket.intake_id, set()).add(ticket.number)
                created += made
        assert created == 40
        assert all(len(numbers) == 1 for numbers in by_intake.values())
        numbers = sorted(n for numbers in by_intake.values() for n in numbers)
        assert [int(n[-6:]) for n in numbers] == list(range(1, 41))  # no gaps, no repeats
        assert await count(engines[0], TicketRow) == 40
    finally:
        for engine in engines:
            await engine.dispose()


async def test_the_sequence_starts_again_each_beijing_day(engine_factory: EngineFactory) -> None:
    clock = Clock()
    store = TicketStore(await engine_factory(), TicketSettings(number_prefix="HX"), clock=clock)
    clock.now = datetime(2026, 11, 23, 15, 59, tzinfo=UTC)  # 23:59 Beijing
    first, _ = await store.create(new_ticket())
    clock.now += timedelta(minutes=2)  # 00:01 on the 24th
    second, _ = await store.create(new_ticket())
    assert (first.number, second.number) == ("HX20261123000001", "HX20261124000001")


# ---------------------------------------------------------------------------------------------
# Lifecycle


async def test_the_whole_lifecycle_leaves_an_audit_trail(engine_factory: EngineFactory) -> None:
    clock = Clock()
    store = TicketStore(await engine_factory(), clock=clock)
    ticket, _ = await store.create(new_ticket(unit_id=None))
    steps = [
        (A.REVIEW, OFFICE, {}),
        (A.DISPATCH, OFFICE, {"unit_id": UNIT.name}),
        (A.SIGN, UNIT, {}),
        (A.HANDLE, UNIT, {}),
        (A.REPLY, UNIT, {}),
        (A.SURVEY, OFFICE, {"survey_satisfied": True, "survey_note": "满意"}),
        (A.ARCHIVE, OFFICE, {}),
    ]
    for action, actor, data in steps:
        clock.now += timedelta(minutes=5)
        ticket = await store.transition(
            ticket.number,
            action,
            actor,
            f"{action.value} note",
            **data,  # type: ignore[arg-type]
        )
        assert ticket.updated_at == clock.now
    assert ticket.status is S.ARCHIVED
    assert ticket.unit_id == UNIT.name
    assert ticket.survey_satisfied is True and ticket.survey_note == "满意"

    events = await store.events(ticket.number)
    assert [(e.actor, e.action, e.from_status, e.to_status) for e in events] == [
        ("router", A.ACCEPT, None, S.ACCEPTED),
        ("office:zhang", A.REVIEW, S.ACCEPTED, S.REVIEWED),
        ("office:zhang", A.DISPATCH, S.REVIEWED, S.DISPATCHED),
        ("unit:district.chaoyang", A.SIGN, S.DISPATCHED, S.SIGNED),
        ("unit:district.chaoyang", A.HANDLE, S.SIGNED, S.HANDLING),
        ("unit:district.chaoyang", A.REPLY, S.HANDLING, S.REPLIED),
        ("office:zhang", A.SURVEY, S.REPLIED, S.SURVEYED),
        ("office:zhang", A.ARCHIVE, S.SURVEYED, S.ARCHIVED),
    ]
    assert events[3].note == "sign note"
    assert [e.at for e in events] == sorted(e.at for e in events)


async def test_the_citizen_reads_each_step_off_the_order(engine_factory: EngineFactory) -> None:
    """``citizen_status`` is the order's status through ``CITIZEN_STATUS``, at every step (a
    return and re-dispatch, an unsatisfied callback and its re-handling included)."""
    store = TicketStore(await engine_factory())
    assert await store.citizen_status("2026112300000001") is None       # no order yet
    ticket, _ = await store.create(new_ticket())
    other, _ = await store.create(new_ticket(acceptance_no="2026112300000002"))
    assert await store.citizen_status("2026112300000001") == "accepted"
    steps = [
        (A.REVIEW, OFFICE, {}, "accepted"),
        (A.DISPATCH, OFFICE, {}, "dispatched"),
        (A.SIGN, UNIT, {}, "signed"),
        (A.RETURN, UNIT, {}, "redispatching"),
        (A.DISPATCH, OFFICE, {"unit_id": OTHER_UNIT.name}, "dispatched"),
        (A.SIGN, OTHER_UNIT, {}, "signed"),
        (A.HANDLE, OTHER_UNIT, {}, "handling"),
        (A.REPLY, OTHER_UNIT, {}, "replied"),
        (A.SURVEY, OFFICE, {"survey_satisfied": False}, "surveyed"),
        (A.REOPEN, OFFICE, {}, "handling"),
        (A.REPLY, OTHER_UNIT, {}, "replied"),
        (A.SURVEY, OFFICE, {"survey_satisfied": True}, "surveyed"),
        (A.ARCHIVE, OFFICE, {}, "archived"),
    ]
    for action, actor, data, seen in steps:
        await store.transition(ticket.number, action, actor, **data)  # type: ignore[arg-type]
        assert await store.citizen_status("2026112300000001") == seen, action
    # Another citizen's order is untouched by all that.
    assert (await store.get(other.number)).status is S.ACCEPTED
    assert await store.citizen_status("2026112300000002") == "accepted"


async def test_the_citizen_status_look_up_is_indexed(engine_factory: EngineFactory) -> None:
    """The status query reads tickets by acceptance number: an index, not a table scan."""
    engine = await engine_factory()

    def indexed(conn: Connection) -> list[list[str | None]]:
        return [i["column_names"] for i in inspect(conn).get_indexes("tickets")]

    async with engine.connect() as conn:
        assert ["acceptance_no"] in await conn.run_sync(indexed)


async def _unchanged(store: TicketStore, engine: AsyncEngine, before: Ticket, events: int) -> None:
    assert await store.get(before.number) == before
    assert await count(engine, TicketEventRow) == events


async def test_forbidden_transitions_raise_and_write_nothing(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory()
    clock = Clock()
    store = TicketStore(engine, clock=clock)
    ticket, _ = await store.create(new_ticket())
    clock.now += timedelta(minutes=1)
    for action, actor in [
        (A.SIGN, UNIT),  # not dispatched yet
        (A.ARCHIVE, OFFICE),
        (A.DISPATCH, OFFICE),  # not reviewed
        (A.REOPEN, OFFICE),
    ]:
        with pytest.raises(IllegalTransition):
            await store.transition(ticket.number, action, actor)
        await _unchanged(store, engine, ticket, 1)
    with pytest.raises(TicketNotFound):
        await store.transition("GD20261123999999", A.REVIEW, OFFICE)


async def test_a_unit_may_act_only_on_its_own_orders(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()
    store = TicketStore(engine)
    ticket = await dispatched(store)
    events = await count(engine, TicketEventRow)

    with pytest.raises(PermissionDenied, match="本单位"):
        await store.transition(ticket.number, A.SIGN, OTHER_UNIT)
    with pytest.raises(PermissionDenied):  # the office does not sign for a unit
        await store.transition(ticket.number, A.SIGN, OFFICE)
    with pytest.raises(PermissionDenied):  # nor does a unit grant itself an extension
        await store.transition(
            ticket.number, A.EXTEND, UNIT, handle_by=datetime(2026, 12, 9, tzinfo=UTC)
        )
    await _unchanged(store, engine, ticket, events)
    assert (await store.transition(ticket.number, A.SIGN, UNIT)).status is S.SIGNED


async def test_a_returned_order_goes_to_another_unit(engine_factory: EngineFactory) -> None:
    store = TicketStore(await engine_factory())
    ticket = await dispatched(store)
    ticket = await store.transition(ticket.number, A.RETURN, UNIT, "非本单位职责")
    assert ticket.status is S.RETURNED
    with pytest.raises(InvalidTicketChange):  # re-dispatch must name the new unit
        await store.transition(ticket.number, A.DISPATCH, OFFICE)
    ticket = await store.transition(ticket.number, A.DISPATCH, OFFICE, unit_id=OTHER_UNIT.name)
    assert (ticket.status, ticket.unit_id) == (S.DISPATCHED, OTHER_UNIT.name)
    with pytest.raises(PermissionDenied):  # the first unit has let go of it
        await store.transition(ticket.number, A.SIGN, UNIT)
    assert (await store.transition(ticket.number, A.SIGN, OTHER_UNIT)).status is S.SIGNED


async def test_at_most_three_extensions(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()
    store = TicketStore(engine, clock=Clock())      # an extension must be later than now
    ticket = await dispatched(store)
    await store.transition(ticket.number, A.SIGN, UNIT)
    deadline = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    for n in range(1, 4):
        deadline += timedelta(days=1)
        ticket = await store.transition(
            ticket.number, A.EXTEND, OFFICE, f"第{n}次延期", handle_by=deadline
        )
        assert (ticket.extensions, ticket.status, ticket.handle_by) == (n, S.SIGNED, deadline)
    events = await count(engine, TicketEventRow)
    with pytest.raises(ExtensionLimitReached):
        await store.transition(
            ticket.number, A.EXTEND, OFFICE, handle_by=deadline + timedelta(days=1)
        )
    await _unchanged(store, engine, ticket, events)


async def test_concurrent_extensions_respect_the_limit(engine_factory: EngineFactory) -> None:
    store = TicketStore(await engine_factory(), clock=Clock())
    ticket = await dispatched(store)
    await store.transition(ticket.number, A.SIGN, UNIT)
    deadlines = [datetime(2026, 12, 1, tzinfo=UTC) + timedelta(days=n) for n in range(6)]
    results = await asyncio.gather(
        *(store.transition(ticket.number, A.EXTEND, OFFICE, handle_by=d) for d in deadlines),
        return_exceptions=True,
    )
    # Each extension must move the deadline later than the one before it, so how many of the
    # six succeed depends on the order they commit in; none may pass the limit, and the count
    # is exactly the extensions granted.
    granted = [r for r in results if isinstance(r, Ticket)]
    assert all(isinstance(r, Ticket | ExtensionLimitReached | InvalidTicketChange)
               for r in results)
    stored = await store.get(ticket.number)
    assert 1 <= len(granted) <= 3 and stored.extensions == len(granted)
    assert stored.handle_by == max(t.handle_by for t in granted if t.handle_by is not None)


async def test_an_extension_must_move_the_deadline_later(engine_factory: EngineFactory) -> None:
    """Before, a deadline in the past (or earlier than the current one) was taken and the
    extension counted against the limit."""
    engine = await engine_factory()
    clock = Clock()
    store = TicketStore(engine, clock=clock)
    ticket = await dispatched(store)
    await store.transition(ticket.number, A.SIGN, UNIT)
    current = ticket.handle_by
    assert current is not None
    events = await count(engine, TicketEventRow)
    for handle_by in (clock.now - timedelta(hours=1), current - timedelta(hours=1), current):
        with pytest.raises(InvalidTicketChange, match="later"):
            await store.transition(ticket.number, A.EXTEND, OFFICE, handle_by=handle_by)
    assert (await store.get(ticket.number)).extensions == 0
    assert await count(engine, TicketEventRow) == events
    later = await store.transition(ticket.number, A.EXTEND, OFFICE,
                                   handle_by=current + timedelta(days=2))
    assert later.extensions == 1 and later.handle_by == current + timedelta(days=2)


async def test_the_extension_limit_is_configuration(engine_factory: EngineFactory) -> None:
    store = TicketStore(await engine_factory(), TicketSettings(max_extensions=1), clock=Clock())
    ticket = await dispatched(store)
    await store.transition(ticket.number, A.SIGN, UNIT)
    later = datetime(2026, 12, 9, tzinfo=UTC)
    await store.transition(ticket.number, A.EXTEND, OFFICE, handle_by=later)
    with pytest.raises(ExtensionLimitReached):
        await store.transition(ticket.number, A.EXTEND, OFFICE, handle_by=later)


async def test_supervision_only_when_overdue(engine_factory: EngineFactory) -> None:
    clock = Clock()
    store = TicketStore(await engine_factory(), clock=clock)
    ticket = await dispatched(store)  # sign by 03:00 UTC; now is 02:00
    with pytest.raises(IllegalTransition, match="overdue"):
        await store.transition(ticket.number, A.SUPERVISE, OFFICE)
    clock.now = datetime(2026, 11, 23, 3, 1, tzinfo=UTC)
    ticket = await store.transition(ticket.number, A.SUPERVISE, OFFICE, "超时未签收")
    assert ticket.supervised and ticket.status is S.DISPATCHED
    assert (await store.events(ticket.number))[-1].action is A.SUPERVISE


async def test_an_unsatisfied_callback_reopens_the_order(engine_factory: EngineFactory) -> None:
    store = TicketStore(await engine_factory())
    ticket = await dispatched(store)
    for action in (A.SIGN, A.HANDLE, A.REPLY):
        await store.transition(ticket.number, action, UNIT)
    ticket = await store.transition(ticket.number, A.SURVEY, OFFICE, survey_satisfied=False)
    ticket = await store.transition(ticket.number, A.REOPEN, OFFICE, "市民不满意, 重办")
    assert ticket.status is S.HANDLING and ticket.survey_satisfied is None
    await store.transition(ticket.number, A.REPLY, UNIT)
    ticket = await store.transition(ticket.number, A.SURVEY, OFFICE, survey_satisfied=True)
    with pytest.raises(IllegalTransition):  # satisfied: nothing to redo
        await store.transition(ticket.number, A.REOPEN, OFFICE)
    assert (await store.transition(ticket.number, A.ARCHIVE, OFFICE)).status is S.ARCHIVED


async def test_data_an_action_does_not_take_is_refused(engine_factory: EngineFactory) -> None:
    store = TicketStore(await engine_factory())
    ticket, _ = await store.create(new_ticket())
    with pytest.raises(InvalidTicketChange):
        await store.transition(ticket.number, A.REVIEW, OFFICE, unit_id="x")
    with pytest.raises(InvalidTicketChange):
        await store.transition(ticket.number, A.SURVEY, OFFICE)
    assert (await store.get(ticket.number)).status is S.ACCEPTED


async def test_listing_pages_and_finds_overdue_and_manual_orders(
        engine_factory: EngineFactory) -> None:
    store = TicketStore(await engine_factory())
    late = [(await store.create(new_ticket(handle_by=datetime(2026, 11, 20, tzinfo=UTC))))[0]
            for _ in range(2)]
    on_time = (await store.create(new_ticket()))[0]           # handle_by 2026-11-30
    manual = (await store.create(new_ticket(unit_id=None)))[0]
    done = (await store.create(new_ticket(handle_by=datetime(2026, 11, 20, tzinfo=UTC))))[0]
    for action in (A.REVIEW, A.DISPATCH):
        await store.transition(done.number, action, ROUTER)
    for action in (A.SIGN, A.HANDLE, A.REPLY):
        await store.transition(done.number, action, UNIT, note="已处理")
    now = datetime(2026, 11, 23, tzinfo=UTC)
    overdue = await store.listing(overdue_at=now)
    assert [t.number for t in overdue] == [late[1].number, late[0].number]
    assert [t.number for t in await store.listing(manual=True)] == [manual.number]
    everything = [t.number for t in await store.listing()]
    first = await store.listing(limit=2)
    rest = await store.listing(limit=10, before=first[-1].number)
    assert [t.number for t in first + rest] == everything and len(everything) == 5
    assert on_time.number in everything


async def test_a_hot_spot_never_crowds_out_the_citizens_own_orders(
        engine_factory: EngineFactory) -> None:
    """Repeat detection needs the citizen's earlier orders even when their street has
    hundreds: places are looked up separately, newest ``place_limit`` only."""
    store = TicketStore(await engine_factory())
    mine = (await store.create(new_ticket(citizen_phone="13900000001",
                                          location={"street": "幸福街道"})))[0]
    hot = [(await store.create(new_ticket(citizen_phone=f"1370000{n:04d}",
                                          location={"street": "幸福街道"})))[0]
           for n in range(6)]
    since = datetime(2000, 1, 1, tzinfo=UTC)
    found = await store.earlier_orders(phones=["13900000001"], streets=["幸福街道"],
                                       since=since, place_limit=2)
    numbers = [o.number for o in found]
    assert numbers[0] == mine.number                         # the citizen's own, first
    assert numbers[1:] == [hot[-1].number, hot[-2].number]   # the street's newest two
    assert found[1].place_street == "幸福街道"
