"""Statutory public holidays (法定节假日) computed from the rules, for a year whose official
arrangement is not known yet: the provisional calendar of :mod:`router.calendar`.

The rules are the State Council's 《全国年节及纪念日放假办法》 as amended on 2024-11-10, in force
from 2025-01-01. Holidays for all citizens:

* 元旦 New Year: 1 day, January 1.
* 春节 Spring Festival: 4 days, 农历除夕 (the last day of the 12th lunar month) and 正月初一 to
  初三 (1st to 3rd of the 1st lunar month).
* 清明节 Qingming: 1 day, the day of the 清明 solar term (April 4, 5 or 6).
* 劳动节 Labour Day: 2 days, May 1 and 2.
* 端午节 Dragon Boat: 1 day, 5th of the 5th lunar month.
* 中秋节 Mid-Autumn: 1 day, 15th of the 8th lunar month.
* 国庆节 National Day: 3 days, October 1 to 3.

and, from the same 办法: a holiday for all citizens that falls on a Saturday or Sunday is made
up on a working day (适逢星期六、星期日，应当在工作日补假). Here the make-up day is the first
Monday-Friday after that holiday that is not already off, as every arrangement of 2025-2026
did; one day that is two festivals at once (Mid-Autumn on October 1-3, as in 2020 and 2028)
also gets one.

What the rules do not give, and why a calendar from them is only *provisional*: each year's
notice of the State Council's General Office also moves weekends (调休) to join the days off
into longer breaks (Spring Festival 2026: Feb 15-23 off, Feb 14 and 28 worked). Those swaps
are decided year by year and cannot be computed: a provisional calendar has the statutory days
and their make-up days, and no swap. Its days off are a subset of the real ones (checked
against the ``chinese_calendar`` package's 2025 and 2026 in the tests); a deadline counted on
it may be a day or two off around a festival until the notice is entered in ``sla.yaml``.

Lunar dates and solar terms come from ``lunar-python`` (6tail's lunar, Beijing time).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final

# lunar-python ships no type information: what it returns is converted to typed values here.
from lunar_python import Lunar, Solar  # type: ignore[import-untyped]

RULES_SINCE: Final = 2025
"""First year of the rules above (the 2024 amendment: 4 days of Spring Festival, 2 of Labour
Day). Earlier years followed other rules; the ``chinese_calendar`` package has them all."""

_ONE_DAY: Final = dt.timedelta(days=1)


class RulesNotInForce(ValueError):
    """A year before :data:`RULES_SINCE`: these rules would give it wrong holidays."""


def _solar(value: Any) -> dt.date:
    """A lunar-python ``Solar`` as a date."""
    return dt.date(int(value.getYear()), int(value.getMonth()), int(value.getDay()))


def _lunar_day(year: int, month: int, day: int) -> dt.date:
    return _solar(Lunar.fromYmd(year, month, day).getSolar())


def _qingming(year: int) -> dt.date:
    # The 清明 term of the lunar year that contains April 4 (a lunar year starts by Feb 20).
    table = Solar.fromYmd(year, 4, 4).getLunar().getJieQiTable()
    return _solar(table["清明"])


def moving_festivals(year: int) -> dict[str, dt.date]:
    """The festivals of ``year`` that follow the moon or the sun, whatever the rules of the
    year: 春节 (正月初一), 清明节 (the solar term's day), 端午节 and 中秋节."""
    return {"春节": _lunar_day(year, 1, 1), "清明节": _qingming(year),
            "端午节": _lunar_day(year, 5, 5), "中秋节": _lunar_day(year, 8, 15)}


def statutory_days(year: int) -> tuple[tuple[dt.date, str], ...]:
    """Every statutory day off of ``year`` with its festival's name, in date order; a day
    that is two festivals appears twice. Raises :class:`RulesNotInForce` before 2025."""
    if year < RULES_SINCE:
        raise RulesNotInForce(f"{year} 年不适用 2024 年修订的放假办法 / the 2024 rules start "
                              f"in {RULES_SINCE}")
    moving = moving_festivals(year)
    new_year_day = moving["春节"]
    days = [
        (dt.date(year, 1, 1), "元旦"),
        (new_year_day - _ONE_DAY, "春节"),  # 除夕: the day before 正月初一, 29th or 30th
        (new_year_day, "春节"),
        (new_year_day + _ONE_DAY, "春节"),
        (new_year_day + 2 * _ONE_DAY, "春节"),
        (moving["清明节"], "清明节"),
        (dt.date(year, 5, 1), "劳动节"),
        (dt.date(year, 5, 2), "劳动节"),
        (moving["端午节"], "端午节"),
        (moving["中秋节"], "中秋节"),
        (dt.date(year, 10, 1), "国庆节"),
        (dt.date(year, 10, 2), "国庆节"),
        (dt.date(year, 10, 3), "国庆节"),
    ]
    return tuple(sorted(days))


@lru_cache(maxsize=32)
def provisional_days_off(year: int) -> MappingProxyType[dt.date, str]:
    """The weekdays and weekend days off of ``year`` by the rules (module doc): statutory days
    and their make-up days (``'国庆节补假'`` ...), date → name. Weekends are not listed: they
    are off anyway, and no weekend is worked (no 调休)."""
    off: dict[dt.date, str] = {}
    owed: list[tuple[dt.date, str]] = []
    for day, name in statutory_days(year):
        if day.weekday() >= 5 or day in off:
            owed.append((day, name))
        off.setdefault(day, name)
    for day, name in owed:
        makeup = day + _ONE_DAY
        while makeup.weekday() >= 5 or makeup in off:
            makeup += _ONE_DAY
        off[makeup] = f"{name}补假"
    return MappingProxyType(dict(sorted(off.items())))
