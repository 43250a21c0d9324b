"""Orders whose deadlines were counted on a provisional holiday calendar, and what the admin
is told about it.

A year that neither ``chinese_calendar`` nor ``sla.yaml`` covers is counted from the statutory
rules (:mod:`router.holidays`), and the order is marked ``deadline_provisional``. When the
year's official arrangement is entered in ``sla.yaml`` and the config is loaded (start) or
reloaded (SIGHUP, ``POST /api/admin/reload``), :func:`recount_provisional` counts every open
such order again from its ``deadlines_from`` and writes the change on its audit trail
(action ``reschedule``, old and new deadlines in the note). Until then
:func:`router.calendar.calendar_warning` is what ``hotline config check``, ``/readyz`` and
``/metrics`` say.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from config.sla import SlaConfig
from router.calendar import CalendarError, WorkCalendar
from router.deadlines import deadline_for
from router.ticket_store import TicketStore
from router.tickets import Ticket

log = logging.getLogger(__name__)


@dataclass
class RecountReport:
    """What one :func:`recount_provisional` pass did."""

    examined: int = 0
    changed: int = 0  # deadlines moved
    confirmed: int = 0  # same deadlines, no longer provisional
    failed: int = 0  # could not be counted (logged); left as they were


def _moment(value: dt.datetime | None, calendar: WorkCalendar) -> str:
    return "无 / none" if value is None else value.astimezone(calendar.tz).isoformat()


async def recount_provisional(store: TicketStore, calendar: WorkCalendar,
                              sla: SlaConfig) -> RecountReport:
    """Count the deadlines of every open provisional order again on ``calendar`` and store
    those that moved or became final, each with an audit event. Orders still provisional with
    the same deadlines are left alone (no event)."""
    report = RecountReport()
    after: str | None = None
    while page := await store.provisional_open(after=after):
        after = page[-1].number
        for ticket in page:
            report.examined += 1
            await _recount(ticket, store, calendar, sla, report)
    if report.changed or report.confirmed:
        log.info("provisional deadlines recounted: %d moved, %d confirmed unchanged, of %d",
                 report.changed, report.confirmed, report.examined)
    return report


async def _recount(ticket: Ticket, store: TicketStore, calendar: WorkCalendar,
                   sla: SlaConfig, report: RecountReport) -> None:
    if ticket.deadlines_from is None:
        report.failed += 1
        log.error("ticket %s: provisional deadlines without deadlines_from, not recounted",
                  ticket.number)
        return
    try:
        fresh = deadline_for(ticket.type, ticket.urgency, ticket.deadlines_from, calendar, sla)
    except CalendarError as exc:
        report.failed += 1
        log.error("ticket %s: deadlines not recounted: %s", ticket.number, exc)
        return
    moved = (fresh.sign_by, fresh.handle_by) != (ticket.sign_by, ticket.handle_by)
    if not moved and fresh.provisional:
        return
    state = (f"仍为临时期限（{'、'.join(map(str, fresh.provisional_years))} 年）/ still "
             "provisional" if fresh.provisional else "已为正式期限 / now final")
    note = ("按 sla.yaml 中新录入的放假安排重算期限 / deadlines recounted on the holiday "
            f"arrangement now in sla.yaml: handle_by {_moment(ticket.handle_by, calendar)} → "
            f"{_moment(fresh.handle_by, calendar)}, sign_by {_moment(ticket.sign_by, calendar)}"
            f" → {_moment(fresh.sign_by, calendar)}; {state}")
    done = await store.reschedule(ticket, sign_by=fresh.sign_by, handle_by=fresh.handle_by,
                                  provisional=fresh.provisional, note=note)
    if done is None:
        return  # changed meanwhile (a person set its deadlines): theirs stand
    if moved:
        report.changed += 1
    else:
        report.confirmed += 1

