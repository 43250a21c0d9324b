"""Builders for the HTTP channel tests: the service's real aiohttp application
(``hotline.http_api.build_app``, with its 16 KiB ``client_max_size``) plus the intake routes,
over the in-memory gateway or the durable one.

The agent-API parts (seat board, tracker, stats) are the real objects with no seats; the AMI
link is never started (Asterisk cannot run here), so ``/readyz`` and the seat actions answer
503 as they would with the PBX away.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from channels.citizen_status import OrderStatusLookup
from channels.durable import NO_METADATA_LOOKUP
from channels.gateway import IntakeGateway
from channels.http_state import IntakeHttpDeps
from channels.nonces import MemoryNonceStore, NonceStore
from channels.signing import signed_headers
from channels.web import add_intake_routes
from config.channels import AppClient, AppConfig, ChannelsConfig, WebConfig
from hotline.http_api import ApiDeps, build_app
from hotline.metrics import MetricSources, build_registry
from telephony.calls import CallTracker
from telephony.dispatch import EventDispatcher
from telephony.link import AmiLink
from telephony.seat_actions import SeatActions
from telephony.seats import SeatBoard
from telephony.stats import QueueStats

ADMIN = "admin-token-for-tests"
AGENT = "agent-1001-token"
APP_ID = "citizen-app"
APP_KEY = "citizen-app-signing-key-0123456789"
REDIS_URL = "redis://127.0.0.1:6379/0"


class ManualClock:
    """Wall clock and monotonic clock the test moves by hand."""

    def __init__(self, start: datetime = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)) -> None:
        self.now = start
        self.mono = 1000.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


def channels_config(tmp_attachments: str, **web: Any) -> ChannelsConfig:
    """Default channels config for the tests: one signed app, attachments under a temp dir."""
    web.setdefault("attachments_dir", tmp_attachments)
    return ChannelsConfig(
        web=WebConfig(**web),
        app=AppConfig(clients={APP_ID: AppClient(name="市民App", secret=SecretStr(APP_KEY)),
                               "no-key-app": AppClient(name="未配置密钥")}))


def api_deps(clock: Callable[[], datetime]) -> ApiDeps:
    """The agent API's dependencies with no seats and an AMI link that is never started."""
    now = clock()
    board = SeatBoard([], wrapup_seconds=10, now=now)
    stats = QueueStats(service_level_seconds=20, interval_minutes=15, timezone=UTC)
    tracker = CallTracker(board, stats)
    link = AmiLink(host="127.0.0.1", port=9, username="hotline", secret="unused-secret",
                   on_event=lambda message: None)
    dispatcher = EventDispatcher(tracker)
    registry = build_registry(MetricSources(board, tracker, stats, dispatcher, link,
                                            queues=("12345",), clock=clock,
                                            persist_backlog=lambda: 0))

    async def reload() -> dict[str, Any]:
        return {"reloaded": True, "applied": False, "reason": "ami_not_ready"}

    return ApiDeps(
        board=board, tracker=tracker, stats=stats, link=link,
        seat_actions=lambda: SeatActions(link, tracker, board, dispatcher,
                                         pause_reasons=frozenset({"午休"}),
                                         departments={"8001": "水务集团"}),
        registry=registry, queues=lambda: ("12345",), admin_token=lambda: ADMIN,
        agent_tokens=lambda: {"1001": AGENT}, reload_config=reload, clock=clock)


@dataclass
class Harness:
    """A started application and a client for it; ``config`` may be swapped (a reload)."""

    client: TestClient[web.Request, web.Application]
    config: ChannelsConfig
    clock: ManualClock
    gateway: IntakeGateway
    nonces: NonceStore

    async def post_json(self, path: str, body: Any, **headers: str) -> tuple[int, Any]:
        async with self.client.post(path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def signed(self, method: str, path: str, body: bytes = b"", *,
                     app_id: str = APP_ID, key: str = APP_KEY, nonce: str | None = None,
                     timestamp: int | None = None) -> tuple[int, Any]:
        ts = int(self.clock.wall().timestamp()) if timestamp is None else timestamp
        headers = signed_headers(app_id, key, method, path, body, timestamp=ts, nonce=nonce)
        headers["Content-Type"] = "application/json"
        # BytesIO: aiohttp warns about large raw bytes bodies (warnings are errors here).
        async with self.client.request(method, path, data=io.BytesIO(body),
                                       headers=headers) as resp:
            return resp.status, await resp.json()


def build_full_app(deps: IntakeHttpDeps) -> web.Application:
    """``build_app`` plus the intake routes and the OpenAPI document: what the service
    runs."""
    from hotline.openapi import add_openapi_route

    from router.kb_http import KbApiDeps, add_kb_routes
    from router.ticket_http import TicketApiDeps, add_ticket_routes

    app = build_app(api_deps(deps.clock))
    add_intake_routes(app, deps)
    # No ticket store here (its tests run on the real databases): the API answers 503.
    add_ticket_routes(app, TicketApiDeps(store=lambda: None, admin_token=lambda: ADMIN,
                                         unit_tokens=lambda: {"city.water": "water-token-1"},
                                         known_units=lambda: {"city.water"}))
    add_kb_routes(app, KbApiDeps(sync=lambda: None, admin_token=lambda: ADMIN,
                                 unit_tokens=lambda: {"city.water": "water-token-1"},
                                 agent_tokens=lambda: {}, known_units=lambda: {"city.water"}))
    add_openapi_route(app)
    return app


@asynccontextmanager
async def running(gateway: IntakeGateway, config: ChannelsConfig, *,
                  nonces: NonceStore | None = None,
                  clock: ManualClock | None = None,
                  order_status: OrderStatusLookup | None = None) -> AsyncIterator[Harness]:
    """Start the full application on a free port with a test client (``order_status``: the
    work orders' statuses, none by default)."""
    clock = clock or ManualClock()
    nonces = nonces or MemoryNonceStore(clock=clock.monotonic)
    harness_ref: list[Harness] = []
    deps = IntakeHttpDeps(gateway=gateway, config=lambda: harness_ref[0].config,
                          nonces=nonces, clock=clock.wall, monotonic=clock.monotonic,
                          order_status=order_status)
    app = build_full_app(deps)
    async with TestClient(TestServer(app)) as client:
        harness = Harness(client, config, clock, gateway, nonces)
        harness_ref.append(harness)
        yield harness


@asynccontextmanager
async def redis_client() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    """A client of the machine's Redis and a unique key prefix; the prefix's keys are
    deleted afterwards."""
    prefix = f"tweb{uuid.uuid4().hex[:12]}"
    client = aioredis.Redis.from_url(REDIS_URL, socket_timeout=2,
                                     driver_info=NO_METADATA_LOOKUP["driver_info"])
    try:
        yield client, prefix
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
