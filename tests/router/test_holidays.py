"""The provisional calendar's statutory holidays, checked against the years the
``chinese_calendar`` package knows (the State Council's real arrangements).

The expected 2027/2028 dates are the published ones, independent of lunar-python: 正月初一
is Saturday Feb 6 2027 and Wednesday Jan 26 2028; 清明 2027 is April 5.
"""

from __future__ import annotations

import datetime as dt

import chinese_calendar  # type: ignore[import-untyped]
import pytest

from router.holidays import (
    RulesNotInForce,
    moving_festivals,
    provisional_days_off,
    statutory_days,
)

D = dt.date


@pytest.mark.parametrize("year", [2025, 2026])
def test_the_rules_days_off_are_days_off_in_the_real_arrangement(year: int) -> None:
    """2025 and 2026 follow the 2024 rules: every statutory day and make-up day the rules
    give is off in the State Council's notice as the package has it (the notice adds more:
    the weekend swaps)."""
    off = provisional_days_off(year)
    assert len(off) >= 13
    not_off = [day for day in off if chinese_calendar.is_workday(day)]
    assert not_off == []


@pytest.mark.parametrize("year", range(2008, 2027))
def test_the_moving_festivals_match_every_year_the_package_knows(year: int) -> None:
    """Qingming, Dragon Boat and Mid-Autumn have been one day off each since 2008, and the
    first three days of Spring Festival since 2014: lunar dates and solar terms computed for
    19 years land on the package's holidays."""
    festivals = moving_festivals(year)
    for name in ("清明节", "端午节", "中秋节"):
        assert chinese_calendar.is_holiday(festivals[name]), (year, name)
    if year >= 2014:
        spring = festivals["春节"]
        for day in (spring, spring + dt.timedelta(days=1), spring + dt.timedelta(days=2)):
            assert chinese_calendar.is_holiday(day), (year, day)


def test_spring_festival_2027_eve_to_day_three_and_make_up_days() -> None:
    assert moving_festivals(2027)["春节"] == D(2027, 2, 6)
    off = provisional_days_off(2027)
    spring = [day for day, name in off.items() if name.startswith("春节")]
    # Eve Fri Feb 5, 初一 Sat Feb 6, 初二 Sun Feb 7, 初三 Mon Feb 8; the two weekend days are
    # made up on Tue Feb 9 and Wed Feb 10.
    assert spring == [D(2027, 2, d) for d in (5, 6, 7, 8, 9, 10)]
    assert off[D(2027, 2, 5)] == "春节" and off[D(2027, 2, 10)] == "春节补假"
    assert moving_festivals(2027)["清明节"] == D(2027, 4, 5)


def test_a_holiday_on_a_weekend_and_two_festivals_on_one_day_are_made_up() -> None:
    off = provisional_days_off(2028)
    assert moving_festivals(2028)["春节"] == D(2028, 1, 26)
    # New Year 2028 is a Saturday: made up on Monday Jan 3.
    assert off[D(2028, 1, 3)] == "元旦补假"
    # Oct 1 2028 is a Sunday and Mid-Autumn falls on Oct 3: two make-up days, Oct 4 and 5.
    assert moving_festivals(2028)["中秋节"] == D(2028, 10, 3)
    october = sorted(day for day in off if day.month == 10)
    assert october == [D(2028, 10, d) for d in (1, 2, 3, 4, 5)]
    # No weekend is ever worked: there is no 调休 in a provisional year.
    assert all(day.weekday() < 5 or name in {"元旦", "春节", "清明节", "劳动节", "端午节",
                                             "中秋节", "国庆节"} for day, name in off.items())


def test_the_2024_rules_are_not_applied_before_2025() -> None:
    with pytest.raises(RulesNotInForce):
        statutory_days(2024)
    assert statutory_days(2025)[0] == (D(2025, 1, 1), "元旦")
