"""Deadlines of work orders: type x urgency, clock and working-day limits, extensions."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from config.sla import SlaConfig
from router.calendar import CalendarNotCovered, WorkCalendar
from router.deadlines import DemandType, ExtensionRefused, Urgency, deadline_for, extend

SHANGHAI = ZoneInfo("Asia/Shanghai")
SLA = SlaConfig()
CAL = WorkCalendar(SLA.calendar, SHANGHAI)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """A moment in Beijing time."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def test_emergency_two_hours_across_midnight_and_a_holiday() -> None:
    d = deadline_for(DemandType.help, Urgency.emergency, at(2026, 11, 23, 23, 0), CAL, SLA)
    assert d.handle_by == at(2026, 11, 24, 1, 0)
    assert d.sign_by == at(2026, 11, 24, 0, 0)
    # Clock limits do not stop for National Day.
    d = deadline_for(DemandType.complaint, Urgency.emergency, at(2026, 10, 1, 23, 30), CAL, SLA)
    assert d.handle_by == at(2026, 10, 2, 1, 30)
    assert d.handle_by.utcoffset() == dt.timedelta(hours=8)


def test_basic_living_is_24_clock_hours() -> None:
    d = deadline_for(DemandType.help, Urgency.basic_living, at(2026, 10, 3, 9, 15), CAL, SLA)
    assert d.handle_by == at(2026, 10, 4, 9, 15)


def test_the_stricter_of_type_and_urgency_applies() -> None:
    monday = at(2026, 11, 23, 10)
    complaint = deadline_for(DemandType.complaint, Urgency.general, monday, CAL, SLA)
    assert complaint.handle_by == at(2026, 11, 27)          # 3 working days, not 5
    assert complaint.handle_limit.working_days == 3
    consultation = deadline_for(DemandType.consultation, Urgency.general, monday, CAL, SLA)
    assert consultation.handle_by == at(2026, 11, 25)       # 1 working day
    praise = deadline_for(DemandType.praise, Urgency.general, monday, CAL, SLA)
    assert praise.handle_by == at(2026, 12, 1)              # no type limit: general 5 days
    urgent = deadline_for(DemandType.consultation, Urgency.emergency, monday, CAL, SLA)
    assert urgent.handle_by == at(2026, 11, 23, 12)


def test_complex_overrides_the_type_limit_and_that_is_configurable() -> None:
    monday = at(2026, 11, 23, 10)
    d = deadline_for(DemandType.complaint, Urgency.complex, monday, CAL, SLA)
    assert d.handle_by == at(2026, 12, 8)                   # 10 working days
    stricter = SLA.model_copy(update={"urgency_overrides_type": ()})
    d = deadline_for(DemandType.complaint, Urgency.complex, monday, CAL, stricter)
    assert d.handle_by == at(2026, 11, 27)


def test_limits_come_from_config() -> None:
    sla = SlaConfig.model_validate({
        "handling_by_urgency": {"general": {"working_days": 2}},
        "handling_by_type": {"complaint": None},
        "sign_within": {"hours": 0.5},
        "return_within": {"hours": 4},
    })
    d = deadline_for(DemandType.complaint, Urgency.general, at(2026, 11, 23, 10), CAL, sla)
    assert d.handle_by == at(2026, 11, 26)
    assert d.sign_by == at(2026, 11, 23, 10, 30)
    assert d.return_by == at(2026, 11, 23, 14)


def test_return_and_sign_across_national_day() -> None:
    d = deadline_for(DemandType.report, Urgency.general, at(2026, 9, 30, 16), CAL, SLA)
    assert d.sign_by == at(2026, 9, 30, 17)
    assert d.return_by == at(2026, 10, 9)            # Oct 8 is the first working day
    assert d.return_on_site_by == at(2026, 10, 10)   # then Oct 9
    assert d.handle_by == at(2026, 10, 11)           # Oct 8, 9, Sat Oct 10 (调休)


def test_a_deadline_into_2027_raises_in_error_mode_until_2027_is_configured() -> None:
    accepted = at(2026, 12, 24, 15)
    strict = SlaConfig.model_validate({"calendar": {"uncovered_years": "error"}})
    strict_cal = WorkCalendar(strict.calendar, SHANGHAI)
    with pytest.raises(CalendarNotCovered, match="calendar.years.2027"):
        deadline_for(DemandType.help, Urgency.complex, accepted, strict_cal, strict)
    # Clock limits need no calendar for the handling deadline: an emergency still gets it.
    # (Its 1-working-day return limit stays in 2026.)
    d = deadline_for(DemandType.help, Urgency.emergency, accepted, strict_cal, strict)
    assert d.handle_by == at(2026, 12, 24, 17)
    sla = SlaConfig.model_validate(
        {"calendar": {"years": {2027: {"holidays": ["2027-01-01"]}}}})
    cal = WorkCalendar(sla.calendar, SHANGHAI)
    d = deadline_for(DemandType.help, Urgency.complex, accepted, cal, sla)
    assert d.handle_by == at(2027, 1, 9)
    weekends = SlaConfig.model_validate({"calendar": {"uncovered_years": "weekends"}})
    cal = WorkCalendar(weekends.calendar, SHANGHAI)
    assert deadline_for(DemandType.help, Urgency.complex, accepted, cal,
                        weekends).handle_by == at(2027, 1, 8)


def test_a_deadline_into_2027_is_computed_and_marked_provisional() -> None:
    accepted = at(2026, 12, 24, 15)
    d = deadline_for(DemandType.help, Urgency.complex, accepted, CAL, SLA)
    assert d.handle_by == at(2027, 1, 9) and d.provisional and d.provisional_years == (2027,)
    # Nothing it computes touches 2027: final.
    d = deadline_for(DemandType.help, Urgency.emergency, accepted, CAL, SLA)
    assert d.handle_by == at(2026, 12, 24, 17) and not d.provisional
    # A 2-hour emergency at 23:00 on New Year's Eve ends in 2027 on the clock, but its
    # return limit (1 working day) is counted through 2027: the order says so.
    d = deadline_for(DemandType.help, Urgency.emergency, at(2026, 12, 31, 23), CAL, SLA)
    assert d.handle_by == at(2027, 1, 1, 1) and d.return_by == at(2027, 1, 5)
    assert d.provisional_years == (2027,)


@pytest.mark.parametrize(("accepted", "handle_by", "provisional"), [
    # The last minute of a Beijing day: Wed Dec 30 23:59:30 counts Dec 31, Jan 4-7.
    (at(2026, 12, 30, 23, 59).replace(second=30), at(2027, 1, 8), (2027,)),
    # 30 seconds later it is Thursday Dec 31: Jan 1 is off, Jan 4-8.
    (at(2026, 12, 31, 0, 0), at(2027, 1, 9), (2027,)),
    # In the Spring Festival (初一, a Saturday): Feb 11, 12, 15, 16, 17.
    (at(2027, 2, 6, 10), at(2027, 2, 18), (2027,)),
    # A leap day: Tue Feb 29 2028 counts Mar 1, 2, 3, 6, 7.
    (at(2028, 2, 29, 12), at(2028, 3, 8), (2028,)),
    # A day in the package's years (Mon Nov 23 2026): Nov 24-27, 30; final.
    (at(2026, 11, 23, 10), at(2026, 12, 1), ()),
])
def test_general_five_working_days_at_awkward_moments(accepted: dt.datetime,
                                                      handle_by: dt.datetime,
                                                      provisional: tuple[int, ...]) -> None:
    d = deadline_for(DemandType.praise, Urgency.general, accepted, CAL, SLA)
    assert (d.handle_by, d.provisional_years) == (handle_by, provisional)


def test_an_extension_into_a_provisional_year_marks_the_deadlines() -> None:
    accepted = at(2026, 12, 14, 10)
    d = deadline_for(DemandType.praise, Urgency.general, accepted, CAL, SLA)
    assert d.handle_by == at(2026, 12, 22) and not d.provisional
    longer = extend(d, 10, CAL, requested_at=at(2026, 12, 18, 10))
    # Dec 22-25, 28-31 (8), Jan 1 off, Jan 4, 5 (10).
    assert longer.handle_by == at(2027, 1, 6) and longer.provisional_years == (2027,)


def test_extension_must_be_asked_a_working_day_ahead_and_moves_the_deadline() -> None:
    d = deadline_for(DemandType.complaint, Urgency.general, at(2026, 11, 23, 10), CAL, SLA)
    assert d.handle_by == at(2026, 11, 27)               # 24:00 Thu Nov 26
    assert d.extension_request_by == at(2026, 11, 26)    # 24:00 Wed Nov 25
    assert d.max_extensions == 3
    with pytest.raises(ExtensionRefused) as caught:
        extend(d, 5, CAL, requested_at=at(2026, 11, 26, 9))
    assert caught.value.reason == "too_late"
    longer = extend(d, 5, CAL, requested_at=at(2026, 11, 25, 17))
    # Nov 27 (1), Nov 30, Dec 1, 2, 3 (5): 24:00 Dec 3; ask again by 24:00 Dec 2.
    assert longer.handle_by == at(2026, 12, 4)
    assert longer.extension_request_by == at(2026, 12, 3)
    assert longer.extensions_used == 1
    assert d.extensions_used == 0                        # the original is unchanged


def test_at_most_three_extensions() -> None:
    d = deadline_for(DemandType.help, Urgency.general, at(2026, 11, 2, 9), CAL, SLA)
    for _ in range(3):
        assert d.extension_request_by is not None
        d = extend(d, 1, CAL, requested_at=d.extension_request_by - dt.timedelta(hours=1))
    assert d.extensions_used == 3
    assert d.extension_request_by is not None
    with pytest.raises(ExtensionRefused) as caught:
        extend(d, 1, CAL, requested_at=d.extension_request_by - dt.timedelta(hours=1))
    assert caught.value.reason == "limit_reached"
    assert "延期次数" in str(caught.value)


def test_clock_limits_cannot_be_extended() -> None:
    d = deadline_for(DemandType.help, Urgency.basic_living, at(2026, 11, 23, 10), CAL, SLA)
    assert d.extension_request_by is None and d.max_extensions == 0
    with pytest.raises(ExtensionRefused) as caught:
        extend(d, 1, CAL, requested_at=at(2026, 11, 23, 11))
    assert caught.value.reason == "not_extendable"


def test_no_time_to_ask_when_accepted_on_a_weekend_with_one_working_day() -> None:
    # Saturday Nov 28: due 24:00 Monday; asking "a working day ahead" meant Friday, already past.
    d = deadline_for(DemandType.consultation, Urgency.general, at(2026, 11, 28, 10), CAL, SLA)
    assert d.handle_by == at(2026, 12, 1)
    assert d.extension_request_by is None
    with pytest.raises(ExtensionRefused, match="too late"):
        extend(d, 1, CAL, requested_at=at(2026, 11, 28, 11))


def test_a_limit_must_be_hours_or_working_days_not_both() -> None:
    with pytest.raises(ValidationError) as caught:
        SlaConfig.model_validate({"handling_by_urgency": {"general": {"hours": 3,
                                                                      "working_days": 5}},
                                  "sign_within": {}})
    errors = {e["loc"]: e["msg"] for e in caught.value.errors()}
    assert set(errors) == {("handling_by_urgency", "general"), ("sign_within",)}
    assert "exactly one of hours or working_days" in errors[("sign_within",)]
    with pytest.raises(ValidationError, match="working_days"):
        SlaConfig.model_validate({"extension": {"max_per_order": 3},
                                  "return_within": {"working_days": 0}})


def test_naive_acceptance_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        deadline_for(DemandType.help, Urgency.general, dt.datetime(2026, 11, 23, 10), CAL, SLA)


def test_labels_are_chinese() -> None:
    assert DemandType.complaint.label == "投诉" and Urgency.basic_living.label == "基本生活保障"
    assert DemandType("report") is DemandType.report
