"""The Chinese working-day calendar the time limits run on (工作日, including 调休).

Sources, in order: the ``calendar.years`` overlay of ``sla.yaml`` (wins), then the
``chinese_calendar`` package (the State Council's arrangement; 2004-2026 in chinesecalendar
1.11). A year neither covers (the arrangement for a year is published each November, so a
deadline late in December runs into a year nobody has entered yet) follows
``calendar.uncovered_years``: ``provisional`` (default) computes it from the statutory rules
(:mod:`router.holidays`: the festivals and their make-up days, no 调休 swaps) and every
deadline counted through it is marked provisional until the year is entered; ``weekends`` is
plain Monday-Friday; ``error`` raises :class:`CalendarNotCovered`.

Counting convention (what a 12345 office uses, and what the Civil Code says for periods counted
in days, 民法典 第二百零一条、第二百零三条: the starting day is not counted, a period ending
on a holiday ends on the next working day, and a day ends at 24:00): a limit of N working
days accepted at any moment of day D is due at 24:00 of the Nth working day *after* D.
Accepted on a working day at 15:00 with 5 working days: due at the end of the 5th following
working day. Accepted on a holiday: D is not counted either, so the first working day after
it is day 1. 24:00 is represented as 00:00 of the next calendar day, in the calendar's time
zone (Asia/Shanghai for the whole of China; the caller loads the ``ZoneInfo`` off the loop).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

# chinesecalendar ships no type information: what it returns is converted to typed values here.
import chinese_calendar  # type: ignore[import-untyped]

from config.sla import CalendarConfig
from router.holidays import RULES_SINCE, provisional_days_off

# The years the package knows, read from its own data (as chinese_calendar.utils does) so an
# upgrade of the package extends coverage without a code change.
_PACKAGE_YEARS: Final[tuple[int, int]] = (min(chinese_calendar.holidays).year,
                                          max(chinese_calendar.holidays).year)
_ONE_DAY: Final = dt.timedelta(days=1)
# Longest run of consecutive days off in any arrangement is 9 (Spring Festival 2026, Feb 15-23);
# a search that finds no working day in this many days means a broken overlay, not a holiday.
_MAX_DAYS_OFF: Final = 60
WARN_AHEAD: Final = dt.timedelta(days=92)
"""How far ahead a year without its official arrangement is reported (:meth:`WorkCalendar.
unconfirmed_years`): from October 1 on, next year. The notice usually comes in November, and
an order accepted in December with 10 working days and extensions runs weeks into January."""


class CalendarError(Exception):
    """Root of the working-day calendar's errors."""


class CalendarNotCovered(CalendarError):
    """Neither the ``chinese_calendar`` package nor ``sla.yaml`` knows this year's holidays."""

    def __init__(self, year: int) -> None:
        self.year = year
        low, high = _PACKAGE_YEARS
        super().__init__(
            f"{year} 年的节假日安排未知：chinese_calendar 仅覆盖 {low}-{high} 年。"
            f"请在 sla.yaml 的 calendar.years.{year} 中填写国务院办公厅公布的放假日期"
            f"（holidays）与调休上班日期（workdays），或升级 chinesecalendar。 / "
            f"No holiday calendar for {year}: the chinese_calendar package covers {low}-{high}. "
            f"Add the State Council's arrangement under calendar.years.{year} (holidays, "
            f"workdays) in sla.yaml, or upgrade chinesecalendar.")


class WorkCalendar:
    """Working days and working-day arithmetic in one time zone."""

    def __init__(self, config: CalendarConfig, tz: dt.tzinfo) -> None:
        self._tz = tz
        self._uncovered = config.uncovered_years
        self._configured_years = frozenset(config.years)
        self._days_off = frozenset(d for y in config.years.values() for d in y.holidays)
        self._days_on = frozenset(d for y in config.years.values() for d in y.workdays)
        self._memo: dict[tuple[dt.date, int, int], dt.date] = {}

    @property
    def tz(self) -> dt.tzinfo:
        """The time zone days start and end in."""
        return self._tz

    def is_covered(self, year: int) -> bool:
        """Whether this year's arrangement is known (package or ``sla.yaml``)."""
        return year in self._configured_years or _PACKAGE_YEARS[0] <= year <= _PACKAGE_YEARS[1]

    def is_provisional(self, year: int) -> bool:
        """Whether this year's days off are computed from the rules (not covered, and
        ``uncovered_years: provisional``, and a year the 2024 rules apply to)."""
        return (self._uncovered == "provisional" and year >= RULES_SINCE
                and not self.is_covered(year))

    def provisional_years(self, after: dt.date, through: dt.date) -> tuple[int, ...]:
        """The provisional years among the days after ``after`` through ``through``: the
        days a deadline counted from ``after`` to ``through`` looked at."""
        first = (after + _ONE_DAY).year
        return tuple(y for y in range(first, through.year + 1) if self.is_provisional(y))

    def unconfirmed_years(self, today: dt.date, ahead: dt.timedelta = WARN_AHEAD
                          ) -> tuple[int, ...]:
        """Years from ``today``'s through ``today + ahead``'s whose official arrangement is
        neither in the package nor in ``sla.yaml``: what the admin is warned about."""
        return tuple(y for y in range(today.year, (today + ahead).year + 1)
                     if not self.is_covered(y))

    def is_workday(self, day: dt.date) -> bool:
        """Whether ``day`` is a working day. An unknown year follows ``uncovered_years``:
        provisional, weekends, or :class:`CalendarNotCovered` (also for a year before the
        package's, where the present rules do not apply)."""
        if isinstance(day, dt.datetime):
            # A datetime is a date subclass: silently taking its (possibly UTC) date would
            # shift the day by the time-zone offset.
            raise TypeError("is_workday takes a date; use local_date() for a datetime")
        if day in self._days_on:
            return True
        if day in self._days_off:
            return False
        # The package before the listed years: listing a covered year in sla.yaml (for a
        # local holiday) must not throw away the package's arrangement for the rest of it.
        if _PACKAGE_YEARS[0] <= day.year <= _PACKAGE_YEARS[1]:
            return bool(chinese_calendar.is_workday(day))
        if day.year in self._configured_years or self._uncovered == "weekends":
            return day.weekday() < 5
        if self.is_provisional(day.year):
            return day.weekday() < 5 and day not in provisional_days_off(day.year)
        raise CalendarNotCovered(day.year)

    def local_date(self, moment: dt.datetime) -> dt.date:
        """The calendar day of an aware ``moment`` in this time zone."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("moment must be timezone-aware")
        return moment.astimezone(self._tz).date()

    def end_of(self, day: dt.date) -> dt.datetime:
        """24:00 of ``day``, i.e. 00:00 of the next day, in this time zone."""
        return dt.datetime.combine(day + _ONE_DAY, dt.time(), tzinfo=self._tz)

    def working_day_after(self, day: dt.date, n: int) -> dt.date:
        """The ``n``-th working day after ``day`` (``day`` itself never counts); ``n=0``
        gives ``day``."""
        if n < 0:
            raise ValueError("n must be >= 0")
        return self._step(day, n, _ONE_DAY)

    def working_day_before(self, day: dt.date, n: int) -> dt.date:
        """The ``n``-th working day before ``day`` (``day`` itself never counts)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        return self._step(day, n, -_ONE_DAY)

    def add_working_days(self, start: dt.datetime, n: int) -> dt.datetime:
        """Deadline of ``n`` (>= 1) working days from the aware moment ``start``: 24:00 of the
        ``n``-th working day after ``start``'s local day (module doc)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        return self.end_of(self.working_day_after(self.local_date(start), n))

    def _step(self, day: dt.date, n: int, step: dt.timedelta) -> dt.date:
        # Every order accepted on one day with one limit has the same answer: remember it
        # (the router asks thousands of times a day; the calendar is fixed per config).
        key = (day, n, step.days)
        known = self._memo.get(key)
        if known is not None:
            return known
        result = self._walk(day, n, step)
        if len(self._memo) >= 10_000:
            self._memo.clear()
        self._memo[key] = result
        return result

    def _walk(self, day: dt.date, n: int, step: dt.timedelta) -> dt.date:
        found = 0
        days_off = 0
        while found < n:
            day += step
            if self.is_workday(day):
                found += 1
                days_off = 0
            else:
                days_off += 1
                if days_off > _MAX_DAYS_OFF:
                    raise CalendarError(
                        f"{_MAX_DAYS_OFF} 天内没有工作日，请检查 sla.yaml 的 calendar.years / "
                        f"no working day within {_MAX_DAYS_OFF} days of {day}: check "
                        "calendar.years in sla.yaml")
        return day


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
