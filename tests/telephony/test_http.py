"""Telephony's HTTP module on its own (``add_seat_routes`` on a bare application with the one
error middleware): hostile bodies are documented JSON errors, never a 5xx; an agent sees and
acts on only their own seat. The AMI link is never started, as with the PBX away."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from httpkit.errors import error_middleware
from telephony.calls import CallTracker
from telephony.dispatch import EventDispatcher
from telephony.http import SeatApiDeps, add_seat_routes
from telephony.link import AmiLink
from telephony.seat_actions import SeatActions
from telephony.seats import SeatBoard, SeatSpec
from telephony.stats import QueueStats

ADMIN = "admin-token-for-tests"
AGENT = "agent-1001-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
T0 = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)

Client = TestClient[web.Request, web.Application]


def seat_deps(*seats: SeatSpec) -> SeatApiDeps:
    board = SeatBoard(seats, wrapup_seconds=10, now=T0)
    stats = QueueStats(service_level_seconds=20, interval_minutes=15, timezone=UTC)
    tracker = CallTracker(board, stats)
    link = AmiLink(host="127.0.0.1", port=9, username="hotline", secret="unused-secret",
                   on_event=lambda message: None)
    dispatcher = EventDispatcher(tracker)
    return SeatApiDeps(
        board=board, tracker=tracker, stats=stats,
        seat_actions=lambda: SeatActions(link, tracker, board, dispatcher,
                                         pause_reasons=frozenset({"午休"}),
                                         departments={"8001": "水务集团"}),
        queues=lambda: ("12345",), admin_token=lambda: ADMIN,
        agent_tokens=lambda: {"1001": AGENT, "1002": "agent-1002-token"}, clock=lambda: T0)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = web.Application(middlewares=[error_middleware])
    add_seat_routes(app, seat_deps(SeatSpec("1001", "坐席1001", "PJSIP/desk-a"),
                                   SeatSpec("1002", "坐席1002", "PJSIP/desk-b")))
    async with TestClient(TestServer(app)) as c:
        yield c


async def post_raw(client: Client, path: str, raw: bytes,
                   headers: dict[str, str] = AUTH) -> tuple[int, str, Any]:
    async with client.post(path, data=raw, headers={
            **headers, "Content-Type": "application/json"}) as resp:
        text = await resp.text()
        body = json.loads(text) if resp.content_type == "application/json" else text
        return resp.status, resp.content_type, body


@pytest.mark.parametrize("raw", [
    b"[" * 5000 + b"]" * 5000,                                   # RecursionError in json
    b'{"reason": ' + b"[" * 500 + b"]" * 500 + b"}",            # deep, under the recursion limit
    b'{"reason": ' + b"9" * 5000 + b"}",                        # over Python's 4,300 digits
    b'{"reason": NaN}',
], ids=["deep", "deep-in-field", "huge-int", "nan"])
async def test_a_body_json_cannot_hold_is_a_400_not_a_500(client: Client, raw: bytes) -> None:
    status, content_type, body = await post_raw(client, "/api/seats/1001/pause", raw)
    assert (status, content_type, body["error"]) == (400, "application/json", "invalid_json")
    assert body["message"]


@pytest.mark.parametrize(("path", "field"), [
    ("/api/seats/1001/pause", "reason"),
    ("/api/seats/1001/transfer", "department"),
    ("/api/seats/1001/three-way", "department"),
])
async def test_a_lone_surrogate_in_an_echoed_field_is_a_json_422(
        client: Client, path: str, field: str) -> None:
    """The pause reason and department are echoed in "unknown ..." errors: before, the error
    body could not be encoded and aiohttp answered its own plain-text 500."""
    status, content_type, body = await post_raw(
        client, path, b'{"%s": "\\ud800\xe5\x8d\x88\xe4\xbc\x91"}' % field.encode())
    assert (status, content_type) == (422, "application/json")
    assert body["error"] == "invalid_field" and body["details"]["fields"] == [field]


async def test_an_unknown_reason_is_named_in_a_422(client: Client) -> None:
    status, _, body = await post_raw(client, "/api/seats/1001/pause",
                                     json.dumps({"reason": "摸鱼"}).encode())
    assert (status, body["error"]) == (422, "unknown_pause_reason")


async def test_an_empty_body_is_an_empty_object(client: Client) -> None:
    """unpause takes no body: the action runs and meets the PBX away (a logged-out seat)."""
    status, _, body = await post_raw(client, "/api/seats/1099/unpause", b"")
    assert (status, body["error"]) == (404, "unknown_seat")


async def test_an_agent_sees_only_their_own_seat(client: Client) -> None:
    async with client.get("/api/seats", headers={"Authorization": f"Bearer {AGENT}"}) as resp:
        assert [s["seat_id"] for s in (await resp.json())["seats"]] == ["1001"]
    async with client.get("/api/seats", headers=AUTH) as resp:
        assert [s["seat_id"] for s in (await resp.json())["seats"]] == ["1001", "1002"]


async def test_an_agent_may_not_act_on_another_seat(client: Client) -> None:
    status, _, body = await post_raw(client, "/api/seats/1002/unpause", b"",
                                     {"Authorization": f"Bearer {AGENT}"})
    assert (status, body["error"]) == (403, "forbidden")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nobody"}])
async def test_stats_need_a_known_token(client: Client, headers: dict[str, str]) -> None:
    async with client.get("/api/stats", headers=headers) as resp:
        assert (resp.status, (await resp.json())["error"]) == (401, "unauthorized")
    async with client.get("/api/stats", headers=AUTH) as resp:
        assert [q["queue"] for q in (await resp.json())["queues"]] == ["12345"]
