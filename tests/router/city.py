"""A real local HTTP server standing in for a city's own ticket system, and dead letters in
real Redis (fixtures for the outbound adapter and the outbox)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels.durable import NO_METADATA_LOOKUP
from router.outbound import RedisDeadLetter


@dataclass
class CitySystem:
    """Answers with ``script`` (one status per request, then 201) and records requests."""

    script: list[int] = field(default_factory=list)
    seen: list[tuple[str | None, dict[str, Any], str | None]] = field(default_factory=list)
    retry_after: str | None = None
    stall: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.headers.get("Idempotency-Key"), await request.json(),
                          request.headers.get("Authorization")))
        if self.stall:
            await asyncio.sleep(self.stall)
        status = self.script.pop(0) if self.script else 201
        headers = {"Retry-After": self.retry_after} if self.retry_after and status == 429 \
            else {}
        return web.json_response({"ok": status < 300}, status=status, headers=headers)


@pytest.fixture
async def city() -> AsyncIterator[tuple[CitySystem, str]]:
    system = CitySystem()
    app = web.Application()
    app.router.add_post("/tickets", system.handle)
    async with TestServer(app) as server:
        yield system, str(server.make_url("/tickets"))


@pytest.fixture
async def dead_letters() -> AsyncIterator[tuple[RedisDeadLetter, aioredis.Redis]]:
    redis = aioredis.Redis.from_url("redis://127.0.0.1:6379/0", **NO_METADATA_LOOKUP)
    stream = f"{{t{uuid.uuid4().hex[:10]}}}:tickets-outbound-dead"
    try:
        yield RedisDeadLetter(redis, stream), redis
    finally:
        await redis.delete(stream)
        await redis.aclose()


