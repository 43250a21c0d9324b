"""The ticket API on the real PostgreSQL against bad input: every value is checked before it
reaches the database (which refuses NUL, lone surrogates, over-long ids and overflowing times
with an error that was a 500), dispatch only to units of units.yaml, and an extension only
with a later deadline."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from db.engine import create_engine, migrate
from httpkit.errors import error_middleware
from router.ticket_http import TicketApiDeps, add_ticket_routes
from router.ticket_store import TicketStore
from router.tickets import NewTicket

ADMIN = "admin-token-for-tests"
WATER = "unit-water-token"
UNITS = {"city.water", "city.urban"}
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)           # a fixed clock, not today's date


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    store: TicketStore

    async def act(self, number: str, body: dict[str, Any] | bytes,
                  token: str = ADMIN) -> tuple[int, Any]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.client.post(f"/api/tickets/{number}/actions", data=raw, headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json"}) as resp:
            assert resp.content_type == "application/json"
            return resp.status, await resp.json()

    async def ticket(self, **overrides: Any) -> str:
        fields: dict[str, Any] = {
            "intake_id": secrets.token_hex(16), "acceptance_no": "2026112300000001",
            "channel": "web", "type": "complaint", "urgency": "general",
            "unit_id": "city.water", "title": "停水", "text": "幸福小区停水",
            "sign_by": NOW + timedelta(hours=2), "handle_by": NOW + timedelta(days=5)}
        ticket, _ = await self.store.create(NewTicket.model_validate(fields | overrides))
        return ticket.number


@pytest.fixture
async def api(pg_database_factory: Callable[[], Awaitable[str]]) -> AsyncIterator[Api]:
    engine = await asyncio.to_thread(create_engine, await pg_database_factory())
    try:
        await migrate(engine)
        store = TicketStore(engine, clock=lambda: NOW)
        app = web.Application(middlewares=[error_middleware])
        add_ticket_routes(app, TicketApiDeps(
            store=lambda: store, admin_token=lambda: ADMIN,
            unit_tokens=lambda: {"city.water": WATER}, known_units=lambda: UNITS,
            clock=lambda: NOW))
        async with TestClient(TestServer(app)) as client:
            yield Api(client, store)
    finally:
        await engine.dispose()


async def signed_order(api: Api) -> str:
    number = await api.ticket()
    for action, token in (("review", ADMIN), ("dispatch", ADMIN), ("sign", WATER)):
        assert (await api.act(number, {"action": action}, token))[0] == 200
    return number


async def test_a_lone_surrogate_in_a_note_is_refused_before_the_database(api: Api) -> None:
    number = await signed_order(api)
    for key in ("note", "survey_note"):
        raw = b'{"action": "handle", "%s": "\\ud800 \xe5\xb7\xb2\xe5\x8a\x9e"}' % key.encode()
        status, body = await api.act(number, raw, WATER)
        assert (status, body["error"], body["details"]["fields"]) == (
            422, "invalid_field", [key])
    status, body = await api.act(number, {"action": "handle", "note": "已到现场"}, WATER)
    assert status == 200 and body["ticket"]["status"] == "handling"


@pytest.mark.parametrize("moment", [
    "9999-12-31T23:00:00-05:00",          # UTC is past year 9999: overflow in the driver
    "0001-01-01T00:30:00+05:00",          # UTC is before year 1
    "9999-12-31T23:00:00+00:00",          # representable, but no deadline of this world
    "2026-11-22T10:00:00+08:00",          # in the past
    "2026-11-30T10:00:00",                # no time zone
    "tomorrow",
])
async def test_a_deadline_out_of_range_is_a_422(api: Api, moment: str) -> None:
    number = await api.ticket()
    assert (await api.act(number, {"action": "review"}))[0] == 200
    status, body = await api.act(number, {"action": "dispatch", "handle_by": moment})
    assert (status, body["error"], body["details"]["fields"]) == (
        422, "invalid_field", ["handle_by"])
    assert (await api.store.get(number)).status == "reviewed"


async def test_dispatch_only_to_a_unit_of_units_yaml(api: Api) -> None:
    number = await api.ticket(unit_id=None)
    assert (await api.act(number, {"action": "review"}))[0] == 200
    for unit in ("x" * 65, "city.nowhere", ["city.water"], "city.water\x00"):
        status, body = await api.act(number, {"action": "dispatch", "unit_id": unit})
        assert (status, body["details"]["fields"]) == (422, ["unit_id"]), unit
    assert (await api.store.get(number)).unit_id is None
    status, body = await api.act(number, {"action": "dispatch", "unit_id": "city.urban"})
    assert status == 200 and body["ticket"]["unit_id"] == "city.urban"


async def test_an_extension_must_move_the_deadline_later(api: Api) -> None:
    number = await signed_order(api)
    current = (await api.store.get(number)).handle_by
    assert current is not None
    for handle_by in (NOW - timedelta(days=1),          # in the past
                      current - timedelta(hours=1),     # future, but earlier than before
                      current):
        status, body = await api.act(number, {"action": "extend",
                                              "handle_by": handle_by.isoformat()})
        assert status == 422, handle_by
    assert (await api.store.get(number)).extensions == 0
    later = current + timedelta(days=3)
    status, body = await api.act(number, {"action": "extend", "handle_by": later.isoformat()})
    assert status == 200 and body["ticket"]["extensions"] == 1
    assert datetime.fromisoformat(body["ticket"]["handle_by"]) == later


async def test_a_nul_in_the_unit_filter_is_a_422(api: Api) -> None:
    async with api.client.get("/api/tickets", params={"unit": "city\x00water"},
                              headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        assert resp.status == 422
