"""The working-day calendar on real 2026 dates, the sla.yaml overlay and uncovered years.

What chinesecalendar 1.11 says about 2026 (checked against the State Council's notice for 2026,
国办发明电〔2025〕7号, as the package encodes it):
- Spring Festival: Feb 15 (Sun) - Feb 23 (Mon) off; Sat Feb 14 and Sat Feb 28 are worked.
- Mid-Autumn Sep 25-27 (Fri-Sun) off; National Day Oct 1-7 off; Sun Sep 20 and Sat Oct 10 are
  worked (调休). Sep 27 is a Sunday inside the Mid-Autumn break, so it is off either way.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from config.sla import CalendarConfig, SlaConfig
from router.calendar import CalendarError, CalendarNotCovered, WorkCalendar

SHANGHAI = ZoneInfo("Asia/Shanghai")
SLA_YAML = Path(__file__).resolve().parents[2] / "config" / "defaults" / "sla.yaml"


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """A moment in Beijing time."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def calendar(**kwargs: object) -> WorkCalendar:
    return WorkCalendar(CalendarConfig.model_validate(kwargs), SHANGHAI)


def test_national_day_2026_and_its_adjusted_working_days() -> None:
    cal = calendar()
    assert [cal.is_workday(dt.date(2026, 10, d)) for d in range(1, 8)] == [False] * 7
    assert cal.is_workday(dt.date(2026, 9, 20))      # Sunday worked for National Day
    assert cal.is_workday(dt.date(2026, 10, 10))     # Saturday worked for National Day
    assert not cal.is_workday(dt.date(2026, 10, 11))  # plain Sunday
    assert not cal.is_workday(dt.date(2026, 9, 27))   # Sunday inside Mid-Autumn
    assert not cal.is_workday(dt.date(2026, 9, 25))   # Friday, Mid-Autumn


def test_five_working_days_across_national_day() -> None:
    # Wed Sep 30 15:00: Oct 8 (1), Oct 9 (2), Sat Oct 10 调休 (3), Oct 12 (4), Oct 13 (5).
    assert calendar().add_working_days(at(2026, 9, 30, 15), 5) == at(2026, 10, 14)


def test_spring_festival_2026() -> None:
    cal = calendar()
    assert cal.is_workday(dt.date(2026, 2, 14)) and cal.is_workday(dt.date(2026, 2, 28))
    assert not any(cal.is_workday(dt.date(2026, 2, d)) for d in range(15, 24))
    # Fri Feb 13: Sat Feb 14 调休 (1), Feb 24 (2), Feb 25 (3) -> 24:00 Feb 25.
    assert cal.add_working_days(at(2026, 2, 13, 10), 3) == at(2026, 2, 26)


def test_acceptance_day_never_counts_and_a_holiday_starts_on_the_next_working_day() -> None:
    cal = calendar()
    # Monday 08:00 and Monday 23:59: both due at 24:00 Tuesday.
    assert cal.add_working_days(at(2026, 11, 23, 8), 1) == at(2026, 11, 25)
    assert cal.add_working_days(at(2026, 11, 23, 23, 59), 1) == at(2026, 11, 25)
    # Accepted on Oct 3 (holiday): Oct 8 is day 1.
    assert cal.add_working_days(at(2026, 10, 3, 11), 1) == at(2026, 10, 9)


def test_the_local_day_counts_not_the_utc_day() -> None:
    # 2026-09-30 16:30 UTC is Oct 1 00:30 in Beijing: a holiday, so Oct 8 is day 1.
    utc = dt.datetime(2026, 9, 30, 16, 30, tzinfo=dt.UTC)
    assert calendar().add_working_days(utc, 1) == at(2026, 10, 9)
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar().add_working_days(dt.datetime(2026, 9, 30, 15), 1)
    with pytest.raises(TypeError):
        calendar().is_workday(utc)


def test_config_overlay_wins_over_the_package() -> None:
    cal = calendar(years={2026: {"holidays": ["2026-10-09"], "workdays": ["2026-10-11"]}})
    assert not cal.is_workday(dt.date(2026, 10, 9))
    assert cal.is_workday(dt.date(2026, 10, 11))
    assert calendar().is_workday(dt.date(2026, 10, 9))   # package alone: a working day
    assert not cal.is_workday(dt.date(2026, 10, 1))  # the rest of 2026 still from the package
    # Sep 30: Oct 8 (1), Oct 9 is now off, Oct 10 (2), Oct 11 (3) -> 24:00 Oct 11.
    assert cal.add_working_days(at(2026, 9, 30, 15), 3) == at(2026, 10, 12)


def test_a_deadline_into_2027_is_an_error_naming_the_year_and_the_fix_in_error_mode() -> None:
    cal = calendar(uncovered_years="error")
    with pytest.raises(CalendarNotCovered) as caught:
        cal.add_working_days(at(2026, 12, 24, 15), 10)
    assert caught.value.year == 2027
    text = str(caught.value)
    assert "2027 年" in text and "calendar.years.2027" in text and "sla.yaml" in text
    assert not cal.is_covered(2027) and cal.is_covered(2026)
    with pytest.raises(CalendarNotCovered, match="2003"):
        cal.is_workday(dt.date(2003, 6, 2))


def test_2027_works_once_entered_in_config() -> None:
    # A test overlay, not the official 2027 arrangement: Jan 1 off, Sat Jan 9 worked.
    cal = calendar(years={2027: {"holidays": ["2027-01-01"], "workdays": ["2027-01-09"]}})
    # Thu Dec 24: Dec 25, 28, 29, 30, 31 (5), Jan 4-8 (10).
    assert cal.add_working_days(at(2026, 12, 24, 15), 10) == at(2027, 1, 9)
    assert cal.add_working_days(at(2026, 12, 24, 15), 11) == at(2027, 1, 10)
    assert not cal.is_workday(dt.date(2027, 1, 10))   # listed year: plain weekend rules


def test_weekends_mode_counts_monday_to_friday_in_an_uncovered_year() -> None:
    cal = calendar(uncovered_years="weekends")
    # Jan 1 2027 (Friday) counts: weekends mode knows no holidays, as documented.
    assert cal.add_working_days(at(2026, 12, 24, 15), 10) == at(2027, 1, 8)
    assert cal.is_workday(dt.date(2026, 10, 1)) is False   # covered years still use the package


def test_an_uncovered_year_is_provisional_by_default_from_the_rules() -> None:
    cal = calendar()
    assert cal.is_provisional(2027) and not cal.is_provisional(2026)
    # Dec 24 2026 (Thu) + 10: Dec 25, 28-31 (5), Jan 1 New Year off, Jan 4-8 (10).
    assert cal.add_working_days(at(2026, 12, 24, 15), 10) == at(2027, 1, 9)
    assert cal.provisional_years(dt.date(2026, 12, 24), dt.date(2027, 1, 8)) == (2027,)
    assert cal.provisional_years(dt.date(2026, 12, 24), dt.date(2026, 12, 31)) == ()
    # Before the package's years the present rules do not apply: still an error.
    with pytest.raises(CalendarNotCovered, match="2003"):
        cal.is_workday(dt.date(2003, 6, 2))
    entered = calendar(years={2027: {"holidays": ["2027-01-01"]}})
    assert not entered.is_provisional(2027)


def test_spring_festival_2027_on_the_provisional_calendar() -> None:
    cal = calendar()
    # 除夕 Fri Feb 5 to 初三 Mon Feb 8, make-up days Tue Feb 9 and Wed Feb 10 (初一 and 初二
    # are a Saturday and a Sunday); Thu Feb 11 is the first working day.
    assert [cal.is_workday(dt.date(2027, 2, d)) for d in range(4, 12)] == [
        True, False, False, False, False, False, False, True]
    # Accepted Mon Feb 1 2027 with 5 working days: Feb 2, 3, 4, 11, 12 -> 24:00 Feb 12.
    assert cal.add_working_days(at(2027, 2, 1, 9), 5) == at(2027, 2, 13)
    # Plain weekends would have made it due on Feb 9, inside the festival.
    assert calendar(uncovered_years="weekends").add_working_days(at(2027, 2, 1, 9), 5) == \
        at(2027, 2, 9)


def test_the_years_the_admin_is_warned_about() -> None:
    cal = calendar()
    # From October 1 a deadline may reach next year (WARN_AHEAD: 92 days).
    assert cal.unconfirmed_years(dt.date(2026, 9, 30)) == ()
    assert cal.unconfirmed_years(dt.date(2026, 10, 1)) == (2027,)
    assert cal.unconfirmed_years(dt.date(2026, 12, 31)) == (2027,)
    assert cal.unconfirmed_years(dt.date(2027, 2, 6)) == (2027,)
    assert cal.unconfirmed_years(dt.date(2028, 2, 29)) == (2028,)
    entered = calendar(years={2027: {"holidays": ["2027-01-01"]}})
    assert entered.unconfirmed_years(dt.date(2026, 12, 31)) == ()
    assert entered.unconfirmed_years(dt.date(2027, 10, 1)) == (2028,)


def test_working_day_before_and_after() -> None:
    cal = calendar()
    assert cal.working_day_before(dt.date(2026, 10, 8), 1) == dt.date(2026, 9, 30)
    assert cal.working_day_after(dt.date(2026, 10, 9), 1) == dt.date(2026, 10, 10)
    assert cal.working_day_after(dt.date(2026, 10, 9), 0) == dt.date(2026, 10, 9)
    with pytest.raises(ValueError):
        cal.add_working_days(at(2026, 10, 9), 0)


def test_an_overlay_without_working_days_is_reported_not_looped_on() -> None:
    every_day = [dt.date(2027, 1, 1) + dt.timedelta(days=i) for i in range(365)]
    cal = calendar(years={2027: {"holidays": every_day}})
    with pytest.raises(CalendarError, match="calendar.years"):
        cal.add_working_days(at(2026, 12, 31, 9), 1)


def test_a_date_both_holiday_and_workday_is_an_error_naming_the_key() -> None:
    with pytest.raises(ValidationError) as caught:
        SlaConfig.model_validate({"calendar": {"years": {2027: {
            "holidays": ["2027-01-01", "2027-02-06"], "workdays": ["2027-02-06"]}}}})
    [error] = caught.value.errors()
    assert error["loc"] == ("calendar", "years", 2027)
    assert "2027-02-06" in error["msg"] and "holidays" in error["msg"]


def test_a_date_in_the_wrong_year_is_an_error() -> None:
    with pytest.raises(ValidationError, match=r"years.2027 holds 2026-12-31"):
        CalendarConfig.model_validate({"years": {2027: {"holidays": ["2026-12-31"]}}})


def test_unknown_mode_and_typos_are_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        CalendarConfig.model_validate({"uncovered_years": "ignore", "yaers": {}})
    locs = {e["loc"] for e in caught.value.errors()}
    assert locs == {("uncovered_years",), ("yaers",)}


def test_the_shipped_sla_yaml_is_the_model_defaults_and_accepts_a_year() -> None:
    text = SLA_YAML.read_text(encoding="utf-8")
    assert SlaConfig.model_validate(yaml.safe_load(text)) == SlaConfig()
    # The commented example, filled in the way an admin would (YAML dates, int year key).
    filled = text.replace("years: {}", "years:\n    2027:\n      holidays: [2027-01-01]\n"
                          "      workdays: []")
    config = SlaConfig.model_validate(yaml.safe_load(filled))
    assert config.calendar.years[2027].holidays == (dt.date(2027, 1, 1),)
