"""The work-order lifecycle, permissions and ticket numbers (no database)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import get_args

import pytest

from channels.http_responses import STATUS_TEXT
from channels.citizen_status import CitizenStatus
from router.tickets import (
    CITIZEN_STATUS,
    PERMITTED_ROLES,
    TRANSITIONS,
    Actor,
    ExtensionLimitReached,
    IllegalTransition,
    PermissionDenied,
    TicketAction,
    TicketNumbersExhausted,
    TicketStatus,
    check_actor,
    format_number,
    next_status,
    number_day,
    parse_number_day,
)

S, A = TicketStatus, TicketAction

# The allowed table, written out again by hand from the rules: the test fails if the code's
# table gains or loses a transition.
EXPECTED = {
    (S.ACCEPTED, A.REVIEW): S.REVIEWED,
    (S.REVIEWED, A.DISPATCH): S.DISPATCHED,
    (S.RETURNED, A.DISPATCH): S.DISPATCHED,
    (S.DISPATCHED, A.SIGN): S.SIGNED,
    (S.DISPATCHED, A.RETURN): S.RETURNED,
    (S.SIGNED, A.RETURN): S.RETURNED,
    (S.SIGNED, A.HANDLE): S.HANDLING,
    (S.HANDLING, A.REPLY): S.REPLIED,
    (S.REPLIED, A.SURVEY): S.SURVEYED,
    (S.SURVEYED, A.ARCHIVE): S.ARCHIVED,
    (S.SURVEYED, A.REOPEN): S.HANDLING,
    (S.SIGNED, A.EXTEND): S.SIGNED,
    (S.HANDLING, A.EXTEND): S.HANDLING,
    (S.DISPATCHED, A.SUPERVISE): S.DISPATCHED,
    (S.SIGNED, A.SUPERVISE): S.SIGNED,
    (S.HANDLING, A.SUPERVISE): S.HANDLING,
}

FORBIDDEN = sorted(set(itertools.product(S, A)) - set(EXPECTED))

# What the citizen is told in each order status, written out again by hand.
CITIZEN = {S.ACCEPTED: "accepted", S.REVIEWED: "accepted", S.DISPATCHED: "dispatched",
           S.SIGNED: "signed", S.HANDLING: "handling", S.REPLIED: "replied",
           S.SURVEYED: "surveyed", S.ARCHIVED: "archived", S.RETURNED: "redispatching"}


def test_the_table_is_the_one_the_rules_give() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("status", "action"), sorted(EXPECTED))
def test_every_allowed_transition(status: TicketStatus, action: TicketAction) -> None:
    assert next_status(status, action, survey_satisfied=False) is EXPECTED[status, action]


@pytest.mark.parametrize(("status", "action"), FORBIDDEN)
def test_every_other_transition_is_refused(status: TicketStatus, action: TicketAction) -> None:
    with pytest.raises(IllegalTransition) as info:
        next_status(status, action, survey_satisfied=False)
    assert (info.value.status, info.value.action) == (status, action)
    assert action.value in str(info.value)


def test_archived_is_final_and_accept_only_creates() -> None:
    assert all(s is not S.ARCHIVED for s, _ in TRANSITIONS)
    assert all(a is not A.ACCEPT for _, a in TRANSITIONS)


def test_the_main_line_reaches_archived() -> None:
    status = S.ACCEPTED
    for action in (A.REVIEW, A.DISPATCH, A.SIGN, A.HANDLE, A.REPLY, A.SURVEY, A.ARCHIVE):
        status = next_status(status, action)
    assert status is S.ARCHIVED


def test_extensions_stop_at_the_limit() -> None:
    assert next_status(S.HANDLING, A.EXTEND, extensions=2) is S.HANDLING
    with pytest.raises(ExtensionLimitReached):
        next_status(S.HANDLING, A.EXTEND, extensions=3)
    # The limit is configuration.
    assert next_status(S.SIGNED, A.EXTEND, extensions=3, max_extensions=4) is S.SIGNED
    with pytest.raises(ExtensionLimitReached):
        next_status(S.SIGNED, A.EXTEND, extensions=0, max_extensions=0)


@pytest.mark.parametrize("satisfied", [True, None])
def test_reopen_needs_an_unsatisfied_callback(satisfied: bool | None) -> None:
    with pytest.raises(IllegalTransition, match="不满意"):
        next_status(S.SURVEYED, A.REOPEN, survey_satisfied=satisfied)


@pytest.mark.parametrize("action", list(A))
def test_roles(action: TicketAction) -> None:
    for actor in (Actor("router"), Actor("office", "zhang"), Actor("unit", "u1")):
        if actor.role in PERMITTED_ROLES[action]:
            check_actor(actor, action, "u1")
        else:
            with pytest.raises(PermissionDenied):
                check_actor(actor, action, "u1")


def test_a_unit_acts_only_on_its_own_orders() -> None:
    check_actor(Actor("unit", "u1"), A.SIGN, "u1")
    with pytest.raises(PermissionDenied, match="本单位"):
        check_actor(Actor("unit", "u2"), A.SIGN, "u1")
    with pytest.raises(PermissionDenied):
        check_actor(Actor("unit", "u2"), A.SIGN, None)


@pytest.mark.parametrize("text", ["router", "office:zhang", "unit:gov.housing", "unit:朝阳区"])
def test_actor_round_trip(text: str) -> None:
    assert str(Actor.parse(text)) == text


@pytest.mark.parametrize(
    "text", ["", "unit", "unit:", "office:", "citizen:x", "unit:a b", "router:x"]
)
def test_bad_actors_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="actor"):
        Actor.parse(text)


def test_numbers_use_the_beijing_date() -> None:
    # 16:30 UTC on the 22nd is 00:30 on the 23rd in Beijing.
    assert number_day(datetime(2026, 11, 22, 16, 30, tzinfo=UTC)) == "20261123"
    assert number_day(datetime(2026, 11, 22, 15, 59, tzinfo=UTC)) == "20261122"
    with pytest.raises(ValueError, match="naive"):
        number_day(datetime(2026, 11, 22, 16, 30))  # naive on purpose
    number = format_number("GD", "20261123", 42)
    assert number == "GD20261123000042"
    assert parse_number_day(number, "GD") == date(2026, 11, 23)
    with pytest.raises(ValueError, match="not a ticket number"):
        parse_number_day("XX20261123000042", "GD")


@pytest.mark.parametrize("sequence", [0, 1_000_000])
def test_sequences_outside_six_digits_are_refused(sequence: int) -> None:
    with pytest.raises(TicketNumbersExhausted):
        format_number("GD", "20261123", sequence)
    assert format_number("GD", "20261123", 999_999) == "GD20261123999999"


def test_every_order_status_has_one_citizen_status_with_a_text() -> None:
    """The one mapping from the order to the citizen's view covers every status (a new
    status fails here until the citizen's view of it is decided), onto statuses the channels
    have a text for."""
    assert CITIZEN_STATUS == CITIZEN
    assert set(CITIZEN_STATUS.values()) == set(get_args(CitizenStatus)) == set(STATUS_TEXT)
