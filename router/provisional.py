"""Orders whose deadlines were counted on a provisional holiday calendar, and what the admin
is told about it.

A year that neither ``chinese_calendar`` nor ``sla.yaml`` covers is counted from the statutory
rules (:mod:`router.holidays`), and the order is marked ``deadline_provisional``. When the
year's official arrangement is entered in ``sla.yaml`` and the config is loaded (start) or
reloaded (SIGHUP, ``POST /api/admin/reload``), :func:`recount_provisional` counts every open
such order again from its ``deadlines_from`` and writes the change on its audit trail
(action ``reschedule``, old and new deadlines in the note). Until then
:func:`calendar_warning` is what ``hotline config check``, ``/readyz`` and ``/metrics`` say.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from config.sla import SlaConfig
from router.calendar import CalendarError, WorkCalendar
from router.deadlines import deadline_for
from router.ticket_store import TicketStore
from router.tickets import Ticket

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CalendarWarning:
    """Years a deadline computed now may run into whose official arrangement is missing."""

    years: tuple[int, ...]
    mode: str  # calendar.uncovered_years: what happens to deadlines in those years

    @property
    def message(self) -> str:
        """What the admin reads (Chinese first)."""
        years = "、".join(str(y) for y in self.years)
        keys = ", ".join(f"calendar.years.{y}" for y in self.years)
        consequence = {
            "provisional": ("期限按法定节假日规则临时计算（不含调休），工单标记为临时期限 / "
                            "deadlines there are provisional (statutory rules, no weekend "
                            "swaps) and marked so on the orders"),
            "error": "跨入该年的工作日期限无法计算，转人工设定 / working-day deadlines into it "
                     "cannot be computed and go to the dispatcher",
            "weekends": "仅按周一至周五计算，节假日期间的期限将算错 / counted Monday-Friday "
                        "only: deadlines around its holidays will be wrong",
        }[self.mode]
        return (f"{years} 年的国务院放假安排尚未录入 sla.yaml（{keys}）：{consequence}。"
                f"公布后请录入并重新加载配置，未办结工单的期限将自动重算。 / No official "
                f"holiday arrangement for {years} in sla.yaml ({keys}); enter it when published "
                f"and reload: open orders are then recounted.")

    def as_json(self) -> dict[str, Any]:
        """The warning as ``/readyz`` shows it."""
        return {"code": "calendar_not_confirmed", "years": list(self.years), "mode": self.mode,
                "message": self.message}


def calendar_warning(calendar: WorkCalendar, mode: str,
                     now: dt.datetime) -> CalendarWarning | None:
    """The warning due at ``now`` (:meth:`WorkCalendar.unconfirmed_years`), or ``None``."""
    years = calendar.unconfirmed_years(calendar.local_date(now))
    return CalendarWarning(years, mode) if years else None


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

