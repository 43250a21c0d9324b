"""Deadlines of a work order (办理时限): sign, handle, return, extension.

:func:`deadline_for` turns a demand's type and urgency and the moment its clock starts into
:class:`Deadlines`; :func:`extend` applies an approved extension (申请延期). Limits come from
:class:`config.sla.SlaConfig`; working days from :class:`router.calendar.WorkCalendar`, whose
module doc gives the counting convention. Clock limits (``hours``) run through nights and
holidays: a 2-hour emergency accepted at 23:00 is due at 01:00.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final, Literal

from config.kinds import DemandType, Urgency
from config.sla import SlaConfig, TimeLimit
from router.calendar import WorkCalendar

__all__ = ["Deadlines", "DemandType", "ExtensionRefused", "Urgency", "deadline_for", "extend"]

RefusalReason = Literal["not_extendable", "limit_reached", "too_late"]

_REFUSALS: Final[Mapping[RefusalReason, str]] = {
    "not_extendable": "按小时计时的时限不能申请延期 / orders with a limit in hours cannot be extended",
    "limit_reached": "延期次数已达上限 / the order has had the maximum number of extensions",
    "too_late": "已超过申请延期的最晚时间 / too late to ask for an extension",
}


class ExtensionRefused(Exception):
    """An extension that the rules do not allow; :attr:`reason` is a stable code."""

    def __init__(self, reason: RefusalReason, detail: str = "") -> None:
        self.reason: RefusalReason = reason
        message = _REFUSALS[reason]
        super().__init__(f"{message} ({detail})" if detail else message)


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Every deadline of one work order. All moments are aware, in the calendar's time zone.

    ``handle_by`` is the earliest of the limits that bind the order (``handle_limit`` is the
    one that won; see :meth:`config.sla.SlaConfig.handling_limits`). ``extension_request_by``
    is the latest moment a unit may still ask for an extension, ``None`` when it cannot ask at
    all (a limit in hours, or the last moment to ask was already past when the clock started).
    ``provisional_years``: the years without an official arrangement that a working-day
    deadline here was counted through (:meth:`router.calendar.WorkCalendar.is_provisional`);
    empty when every deadline is final.
    """

    demand_type: DemandType
    urgency: Urgency
    accepted_at: dt.datetime
    sign_by: dt.datetime
    handle_by: dt.datetime
    handle_limit: TimeLimit
    return_by: dt.datetime
    return_on_site_by: dt.datetime
    extension_request_by: dt.datetime | None
    max_extensions: int
    extension_lead_working_days: int
    extensions_used: int = 0
    provisional_years: tuple[int, ...] = ()

    @property
    def provisional(self) -> bool:
        """Whether a deadline here rests on a provisional calendar (recomputed later)."""
        return bool(self.provisional_years)


def _due(limit: TimeLimit, start: dt.datetime, calendar: WorkCalendar) -> dt.datetime:
    if limit.hours is not None:
        # Arithmetic in UTC: correct even in a zone with daylight saving time.
        end = start.astimezone(dt.UTC) + dt.timedelta(hours=limit.hours)
        return end.astimezone(calendar.tz)
    assert limit.working_days is not None  # TimeLimit guarantees exactly one is set
    return calendar.add_working_days(start, limit.working_days)


def _extension_request_by(handle_by: dt.datetime, limit: TimeLimit, lead: int,
                          not_before: dt.datetime, calendar: WorkCalendar) -> dt.datetime | None:
    if limit.working_days is None:
        return None
    if lead == 0:
        return handle_by
    # handle_by is 24:00 of its last working day, i.e. 00:00 of the day after.
    last_day = calendar.local_date(handle_by) - dt.timedelta(days=1)
    latest = calendar.end_of(calendar.working_day_before(last_day, lead))
    return latest if latest > not_before else None


def deadline_for(demand_type: DemandType, urgency: Urgency, accepted_at: dt.datetime,
                 calendar: WorkCalendar, sla: SlaConfig) -> Deadlines:
    """The deadlines of an order of ``demand_type`` and ``urgency`` whose clock starts at the
    aware moment ``accepted_at`` (the moment it is dispatched to the unit; for an order
    dispatched at intake that is the acceptance).

    A working-day limit that runs into a year whose arrangement is unknown is counted on the
    provisional calendar and listed in ``provisional_years``; with ``uncovered_years: error``
    in ``sla.yaml`` it raises :class:`router.calendar.CalendarNotCovered` instead.
    """
    if accepted_at.tzinfo is None or accepted_at.utcoffset() is None:
        raise ValueError("accepted_at must be timezone-aware")
    accepted_at = accepted_at.astimezone(calendar.tz)
    candidates = [(_due(limit, accepted_at, calendar), limit)
                  for limit in sla.handling_limits(demand_type, urgency)]
    # min() keeps the first of equal deadlines: the urgency's limit, listed first.
    handle_by, handle_limit = min(candidates, key=lambda c: c[0])
    lead = sla.extension.lead_working_days
    extension_request_by = _extension_request_by(handle_by, handle_limit, lead, accepted_at,
                                                 calendar)
    sign_by = _due(sla.sign_within, accepted_at, calendar)
    return_by = _due(sla.return_within, accepted_at, calendar)
    return_on_site_by = _due(sla.return_on_site_within, accepted_at, calendar)
    counted = [due for due, limit in ((handle_by, handle_limit), (sign_by, sla.sign_within),
                                      (return_by, sla.return_within),
                                      (return_on_site_by, sla.return_on_site_within))
               if limit.working_days is not None]
    return Deadlines(
        demand_type=demand_type,
        urgency=urgency,
        accepted_at=accepted_at,
        sign_by=sign_by,
        handle_by=handle_by,
        handle_limit=handle_limit,
        return_by=return_by,
        return_on_site_by=return_on_site_by,
        extension_request_by=extension_request_by,
        max_extensions=sla.extension.max_per_order if handle_limit.working_days else 0,
        extension_lead_working_days=lead,
        provisional_years=_provisional_years(calendar.local_date(accepted_at), counted,
                                             calendar),
    )


def _provisional_years(start_day: dt.date, dues: list[dt.datetime],
                       calendar: WorkCalendar) -> tuple[int, ...]:
    """The provisional years the working-day deadlines ``dues`` counted from ``start_day``
    went through (a due moment is 24:00 of its last day, i.e. 00:00 the day after)."""
    if not dues:
        return ()
    last_day = calendar.local_date(max(dues)) - dt.timedelta(days=1)
    return calendar.provisional_years(start_day, last_day)


def extend(deadlines: Deadlines, working_days: int, calendar: WorkCalendar, *,
           requested_at: dt.datetime) -> Deadlines:
    """The deadlines after an approved extension of ``working_days`` (>= 1) asked for at
    ``requested_at``: ``handle_by`` moves to 24:00 of the ``working_days``-th working day after
    the old last day, and the new latest moment to ask again follows it.

    Raises :class:`ExtensionRefused` for a limit in hours, past ``max_extensions``, or when
    ``requested_at`` is after ``extension_request_by``.
    """
    if working_days < 1:
        raise ValueError("working_days must be >= 1")
    if deadlines.handle_limit.working_days is None:
        raise ExtensionRefused("not_extendable")
    if deadlines.extensions_used >= deadlines.max_extensions:
        raise ExtensionRefused("limit_reached", f"max {deadlines.max_extensions}")
    if deadlines.extension_request_by is None or requested_at > deadlines.extension_request_by:
        latest = deadlines.extension_request_by
        raise ExtensionRefused("too_late", f"latest {latest.isoformat() if latest else 'none'}")
    last_day = calendar.local_date(deadlines.handle_by) - dt.timedelta(days=1)
    handle_by = calendar.end_of(calendar.working_day_after(last_day, working_days))
    added = _provisional_years(last_day, [handle_by], calendar)
    return replace(
        deadlines,
        handle_by=handle_by,
        provisional_years=tuple(sorted({*deadlines.provisional_years, *added})),
        extension_request_by=_extension_request_by(
            handle_by, deadlines.handle_limit, deadlines.extension_lead_working_days,
            requested_at, calendar),
        extensions_used=deadlines.extensions_used + 1,
    )
