"""The one bearer parser and the staff identification built on it."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from httpkit.auth import (
    Staff,
    bearer_token,
    identify,
    require_office,
    require_seat,
    token_matches,
)
from httpkit.errors import ApiError


def _request(authorization: str | None) -> web.Request:
    headers = {} if authorization is None else {"Authorization": authorization}
    return make_mocked_request("GET", "/api/tickets", headers=headers)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic YWRtaW46eA==",
                                    "Token abc"])
def test_no_bearer_token_is_401_unauthorized(header: str | None) -> None:
    with pytest.raises(ApiError) as caught:
        bearer_token(_request(header))
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")


def test_the_scheme_is_case_insensitive() -> None:
    assert bearer_token(_request("bearer s3cret")) == b"s3cret"


def test_an_unset_or_empty_configured_token_matches_nothing() -> None:
    assert not token_matches(b"", None)
    assert not token_matches(b"", "")
    assert not token_matches(b"x", None)
    assert token_matches(b"s3cret", "s3cret")
    assert not token_matches(b"s3cret", "s3cre")


def test_identify_names_office_units_and_agents_and_refuses_the_rest() -> None:
    def who(token: str) -> Staff:
        return identify(_request(f"Bearer {token}"), "adm",
                        {"water": "w-tok"}, {"1001": "a-tok"})

    assert who("adm") == Staff("office", "admin")
    assert who("w-tok") == Staff("unit", "water")
    assert who("a-tok") == Staff("agent", "1001")
    with pytest.raises(ApiError) as caught:
        who("nobody")
    assert caught.value.status == 401
    # Agents are let in only where the endpoint passes their tokens.
    with pytest.raises(ApiError):
        identify(_request("Bearer a-tok"), "adm", {"water": "w-tok"})


def test_only_the_office_passes_require_office() -> None:
    assert require_office(Staff("office", "admin")) == Staff("office", "admin")
    for staff in (Staff("agent", "1001"), Staff("unit", "city.water")):
        with pytest.raises(ApiError) as caught:
            require_office(staff)
        assert (caught.value.status, caught.value.code) == (403, "forbidden")


def test_a_seat_is_acted_on_by_the_office_or_its_own_agent_only() -> None:
    """An agent's name is their seat id; a unit named like a seat is still not that agent."""
    assert require_seat(Staff("office", "admin"), "1002") == "1002"
    assert require_seat(Staff("agent", "1001"), "1001") == "1001"
    for staff in (Staff("agent", "1001"), Staff("unit", "1002")):
        with pytest.raises(ApiError) as caught:
            require_seat(staff, "1002")
        assert (caught.value.status, caught.value.code) == (403, "forbidden")
