"""``sla.yaml``: time limits (办理时限) of work orders and the working-day calendar.

Defaults are the seeds' rules (``../shared/domain.md``): emergency 2 hours, basic-living needs
24 hours, general 5 working days, complex 10 working days (seed 000); consultation 1 working
day, help/suggestion/complaint/report 3 working days, sign within 1 hour, return within 1
working day (2 with an on-site check), extension asked at least 1 working day ahead and at most
3 times (seed 001 annex 五). Cities differ, so every number is here, never in code.

How type and urgency combine (see :meth:`SlaConfig.handling_limits`): the handling deadline is
the *stricter* (earlier) of the urgency's limit and the type's limit, because both rules are
binding at once: a complaint (3 working days) about a general matter (5 working days) is late
after 3. The exception is an urgency listed in ``urgency_overrides_type`` (default: complex):
复杂疑难 is a deliberate decision of the hotline office that the matter needs longer, so its
10 working days replace the type's 3; with "stricter" it would never take effect.

Working days follow the ``chinese_calendar`` package (State Council arrangement, 2004-2026 in
the installed version) plus the ``calendar`` overlay here, which wins. A year neither covers is
computed from the statutory rules by default (``uncovered_years: provisional``, see
:mod:`router.holidays`), and every deadline counted through it is marked provisional until the
official arrangement is entered here. Plain weekends (``weekends``) would be wrong by up to a
week around Spring Festival; ``error`` leaves such deadlines to the dispatcher.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from config.kinds import DemandType, Urgency


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeLimit(_Section):
    """One time limit: either clock ``hours`` (run through nights and holidays) or
    ``working_days`` (end of the Nth working day, see :mod:`router.calendar`). Exactly one."""

    hours: Annotated[float, Field(gt=0, le=24 * 366)] | None = None
    working_days: Annotated[int, Field(ge=1, le=366)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.hours is None) == (self.working_days is None):
            raise PydanticCustomError(
                "bad_time_limit", "give exactly one of hours or working_days "
                "(e.g. hours: 2, or working_days: 5) / 须且只能填写 hours 或 working_days 之一")
        return self

    def __str__(self) -> str:
        if self.hours is not None:
            return f"{self.hours:g} 小时 / hours"
        return f"{self.working_days} 个工作日 / working days"


def _hours(value: float) -> TimeLimit:
    return TimeLimit(hours=value)


def _days(value: int) -> TimeLimit:
    return TimeLimit(working_days=value)


class UrgencyLimits(_Section):
    """Handling limit per urgency (seed 000). Every urgency must have one."""

    emergency: TimeLimit = _hours(2)
    basic_living: TimeLimit = _hours(24)
    general: TimeLimit = _days(5)
    complex: TimeLimit = _days(10)


class TypeLimits(_Section):
    """Handling limit per demand type (seed 001 annex 五.3); ``null``: the type has none of
    its own and only the urgency's limit applies (praise, by default)."""

    consultation: TimeLimit | None = _days(1)
    help: TimeLimit | None = _days(3)
    complaint: TimeLimit | None = _days(3)
    report: TimeLimit | None = _days(3)
    suggestion: TimeLimit | None = _days(3)
    praise: TimeLimit | None = None


class ExtensionRules(_Section):
    """申请延期: asked at least ``lead_working_days`` before the deadline, at most
    ``max_per_order`` times (seed 001 annex 五.4)."""

    lead_working_days: Annotated[int, Field(ge=0, le=30)] = 1
    max_per_order: Annotated[int, Field(ge=0, le=20)] = 3


class YearCalendar(_Section):
    """One year's exceptions to Monday-Friday: ``holidays`` (dates off, including weekdays
    of a festival) and ``workdays`` (调休: weekend dates worked)."""

    holidays: tuple[dt.date, ...] = ()
    workdays: tuple[dt.date, ...] = ()

    @model_validator(mode="after")
    def _disjoint(self) -> Self:
        both = sorted(set(self.holidays) & set(self.workdays))
        if both:
            raise PydanticCustomError(
                "holiday_and_workday",
                "{dates} listed both in holidays and in workdays / 同一天不能既放假又调休上班",
                {"dates": ", ".join(d.isoformat() for d in both)})
        return self


class CalendarConfig(_Section):
    """Working-day calendar overlay on top of the ``chinese_calendar`` package.

    ``years``: per year, dates off and adjusted working days. For a year the package covers,
    these entries win over it (a local holiday, a correction). A year the package does not
    cover counts as known once it is listed here: Monday-Friday plus these exceptions.
    ``uncovered_years``: what to do for a year neither knows: ``provisional`` (default: the
    statutory holidays and their make-up days from the rules, without 调休; deadlines counted
    through such a year are marked provisional and recomputed once the year is listed here),
    ``error`` (a :class:`router.calendar.CalendarNotCovered` naming the year) or ``weekends``
    (Monday to Friday only; deadlines may then fall inside a public holiday).
    """

    uncovered_years: Literal["provisional", "error", "weekends"] = "provisional"
    years: dict[Annotated[int, Field(ge=1949, le=2200)], YearCalendar] = {}

    @model_validator(mode="after")
    def _dates_in_their_year(self) -> Self:
        for year, entry in self.years.items():
            wrong = sorted(d for d in (*entry.holidays, *entry.workdays) if d.year != year)
            if wrong:
                raise PydanticCustomError(
                    "date_outside_year",
                    "years.{year} holds {dates}, which belong to another year / 日期不属于该年份",
                    {"year": year, "dates": ", ".join(d.isoformat() for d in wrong)})
        return self


class SlaConfig(_Section):
    """``sla.yaml``: handling limits per urgency and type, sign/return/extension rules and the
    working-day calendar."""

    handling_by_urgency: UrgencyLimits = UrgencyLimits()
    handling_by_type: TypeLimits = TypeLimits()
    # Urgencies whose limit replaces the type's instead of competing with it (module doc).
    urgency_overrides_type: tuple[Urgency, ...] = (Urgency.complex,)
    sign_within: TimeLimit = _hours(1)
    return_within: TimeLimit = _days(1)
    return_on_site_within: TimeLimit = _days(2)
    extension: ExtensionRules = ExtensionRules()
    calendar: CalendarConfig = CalendarConfig()

    def handling_limits(self, demand_type: DemandType,
                        urgency: Urgency) -> tuple[TimeLimit, ...]:
        """The limits that bind an order of this type and urgency; its deadline is the
        earliest of them. One limit when the urgency overrides the type or the type has none."""
        by_urgency: TimeLimit = getattr(self.handling_by_urgency, urgency.value)
        if urgency in self.urgency_overrides_type:
            return (by_urgency,)
        by_type: TimeLimit | None = getattr(self.handling_by_type, demand_type.value)
        return (by_urgency,) if by_type is None else (by_urgency, by_type)
