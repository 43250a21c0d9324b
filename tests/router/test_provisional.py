"""Provisional deadlines on the real ticket backend (PostgreSQL and SQLite): recounted, with
an audit event, once the year's arrangement is entered; a person's deadlines and finished
orders are left alone; the admin's warning."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from config.kinds import DemandType, Urgency
from config.sla import SlaConfig
from router.calendar import WorkCalendar, calendar_warning
from router.deadlines import deadline_for
from router.provisional import recount_provisional
from router.ticket_store import TicketStore
from router.tickets import ROUTER, Actor, NewTicket, Ticket, TicketAction, TicketStatus

EngineFactory = Callable[..., Awaitable[AsyncEngine]]
SHANGHAI = ZoneInfo("Asia/Shanghai")
A, S = TicketAction, TicketStatus
OFFICE = Actor("office", "zhang")
UNIT = Actor("unit", "city.urban")
RULES = SlaConfig()                             # 2027 not entered: provisional
RULES_CAL = WorkCalendar(RULES.calendar, SHANGHAI)
# A test arrangement for 2027, not the State Council's: Jan 1 and Mon Jan 4 off.
ENTERED = SlaConfig.model_validate(
    {"calendar": {"years": {2027: {"holidays": ["2027-01-01", "2027-01-04"]}}}})
ENTERED_CAL = WorkCalendar(ENTERED.calendar, SHANGHAI)


def at(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=SHANGHAI)


async def provisional_order(store: TicketStore, accepted: datetime, *,
                            status: TicketStatus = S.DISPATCHED) -> Ticket:
    """An order the router made on the rules' calendar, brought to ``status``."""
    d = deadline_for(DemandType.praise, Urgency.general, accepted, RULES_CAL, RULES)
    assert d.provisional
    ticket, _ = await store.create(NewTicket(
        intake_id=secrets.token_hex(16), acceptance_no="2026122801000001", channel="web",
        type=DemandType.praise, urgency=Urgency.general, unit_id=UNIT.name, title="表扬",
        sign_by=d.sign_by, handle_by=d.handle_by, deadlines_from=d.accepted_at,
        deadline_provisional=True))
    steps = {S.DISPATCHED: [(A.REVIEW, OFFICE), (A.DISPATCH, OFFICE)],
             S.REPLIED: [(A.REVIEW, OFFICE), (A.DISPATCH, OFFICE), (A.SIGN, UNIT),
                         (A.HANDLE, UNIT), (A.REPLY, UNIT)]}[status]
    for action, actor in steps:
        ticket = await store.transition(ticket.number, action, actor)
    return ticket


async def test_entering_the_year_recounts_open_orders_on_the_audit_trail(
        engine_factory: EngineFactory) -> None:
    store = TicketStore(await engine_factory())
    order = await provisional_order(store, at(2026, 12, 28, 10))
    # On the rules: Dec 29, 30, 31, Jan 4, 5 -> 24:00 Jan 5.
    assert order.handle_by == at(2027, 1, 6) and order.deadline_provisional

    report = await recount_provisional(store, ENTERED_CAL, ENTERED)
    assert (report.examined, report.changed, report.confirmed) == (1, 1, 0)
    fresh = await store.get(order.number)
    # Jan 4 is off in the entered arrangement: Dec 29, 30, 31, Jan 5, 6.
    assert fresh.handle_by == at(2027, 1, 7) and not fresh.deadline_provisional
    assert fresh.status is S.DISPATCHED and fresh.sign_by == order.sign_by
    last = (await store.events(order.number))[-1]
    assert (last.action, last.actor) == (A.RESCHEDULE, str(ROUTER))
    assert last.from_status is last.to_status is S.DISPATCHED
    assert "2027-01-06T00:00:00+08:00 → 2027-01-07T00:00:00+08:00" in last.note
    assert "正式期限" in last.note
    # Done once: the next load finds nothing to recount.
    assert (await recount_provisional(store, ENTERED_CAL, ENTERED)).examined == 0


async def test_an_unchanged_deadline_is_confirmed_and_a_still_provisional_one_left(
        engine_factory: EngineFactory) -> None:
    store = TicketStore(await engine_factory())
    order = await provisional_order(store, at(2026, 12, 28, 10))
    # Reloading without 2027: same calendar, nothing written.
    report = await recount_provisional(store, RULES_CAL, RULES)
    assert (report.examined, report.changed, report.confirmed) == (1, 0, 0)
    assert len(await store.events(order.number)) == 3          # accept, review, dispatch
    # The real arrangement agrees with the rules here: final, same deadline, one event.
    same = SlaConfig.model_validate({"calendar": {"years": {2027: {"holidays": ["2027-01-01"]}}}})
    report = await recount_provisional(store, WorkCalendar(same.calendar, SHANGHAI), same)
    assert (report.changed, report.confirmed) == (0, 1)
    fresh = await store.get(order.number)
    assert fresh.handle_by == order.handle_by and not fresh.deadline_provisional
    assert (await store.events(order.number))[-1].action is A.RESCHEDULE


async def test_a_persons_deadlines_and_finished_orders_are_left_alone(
        engine_factory: EngineFactory) -> None:
    store = TicketStore(await engine_factory())
    done = await provisional_order(store, at(2026, 12, 28, 10), status=S.REPLIED)
    ticket, _ = await store.create(NewTicket(
        intake_id=secrets.token_hex(16), acceptance_no="2026122801000002", channel="web",
        type=DemandType.praise, urgency=Urgency.general, title="表扬",
        handle_by=at(2027, 1, 6), deadlines_from=at(2026, 12, 28, 10),
        deadline_provisional=True))
    await store.transition(ticket.number, A.REVIEW, OFFICE)
    # The office dispatches with a deadline of its own: no longer the router's to recount.
    set_by_hand = await store.transition(ticket.number, A.DISPATCH, OFFICE, unit_id=UNIT.name,
                                         handle_by=at(2027, 1, 15))
    assert not set_by_hand.deadline_provisional
    report = await recount_provisional(store, ENTERED_CAL, ENTERED)
    assert report.examined == 0
    assert (await store.get(ticket.number)).handle_by == at(2027, 1, 15)
    assert (await store.get(done.number)).handle_by == done.handle_by


async def test_a_recount_never_overwrites_a_change_made_meanwhile(
        engine_factory: EngineFactory) -> None:
    # The store's clock on the day the order came in: an extension must be later than "now",
    # and the wall clock would make the 2027-01-20 below a date in the past (a date bomb).
    store = TicketStore(await engine_factory(), clock=lambda: at(2026, 12, 28, 11))
    order = await provisional_order(store, at(2026, 12, 28, 10))
    await store.transition(order.number, A.SIGN, UNIT)
    await store.transition(order.number, A.HANDLE, UNIT)
    await store.transition(order.number, A.EXTEND, OFFICE, handle_by=at(2027, 1, 20))
    # ``order`` as read before the extension: the compare-and-set refuses it.
    assert await store.reschedule(order, sign_by=order.sign_by, handle_by=at(2027, 1, 7),
                                  provisional=False, note="stale") is None
    assert (await store.get(order.number)).handle_by == at(2027, 1, 20)


def test_the_admin_warning_names_the_year_and_the_key() -> None:
    warning = calendar_warning(RULES_CAL, "provisional", datetime(2026, 12, 7, tzinfo=UTC))
    assert warning is not None and warning.years == (2027,)
    assert "calendar.years.2027" in warning.message and "临时" in warning.message
    assert warning.as_json()["code"] == "calendar_not_confirmed"
    assert calendar_warning(ENTERED_CAL, "provisional", datetime(2026, 12, 7, tzinfo=UTC)) \
        is None
    assert calendar_warning(RULES_CAL, "provisional", datetime(2026, 6, 1, tzinfo=UTC)) is None
