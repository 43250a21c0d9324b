"""The knowledge-base API on the real PostgreSQL against bad input: NUL and lone surrogates
inside keyword lists, a ``unit`` that is a list or an object, ``?unit=%00``: each a 422
before the database (which answered them with a 500)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from db.engine import create_engine, migrate
from httpkit.errors import error_middleware
from router.kb_http import KbApiDeps, add_kb_routes, beijing_today
from router.kb_store import KbStore, KbSync

ADMIN = "admin-token-for-tests"
WATER = "unit-water-token"
GOOD = {"title": "计划停水信息在哪里查询", "body": "水务集团官网提前 24 小时公布。",
        "unit": "city.water", "keywords": ["停水", "供水"]}


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    store: KbStore

    async def put(self, article_id: str, body: dict[str, Any] | bytes,
                  token: str = ADMIN) -> tuple[int, Any]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.client.put(f"/api/kb/articles/{article_id}", data=raw, headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json"}) as resp:
            assert resp.content_type == "application/json"
            return resp.status, await resp.json()

    async def get(self, path: str, token: str = ADMIN) -> tuple[int, Any]:
        async with self.client.get(path, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.content_type == "application/json"
            return resp.status, await resp.json()


@pytest.fixture
async def api(pg_database_factory: Callable[[], Awaitable[str]]) -> AsyncIterator[Api]:
    engine = await asyncio.to_thread(create_engine, await pg_database_factory())
    try:
        await migrate(engine)
        store = KbStore(engine)
        sync = KbSync(store, lambda kb: None)
        app = web.Application(middlewares=[error_middleware])
        add_kb_routes(app, KbApiDeps(
            sync=lambda: sync, admin_token=lambda: ADMIN,
            unit_tokens=lambda: {"city.water": WATER}, agent_tokens=lambda: {},
            known_units=lambda: {"city.water"}, today=lambda: date(2026, 11, 23)))
        async with TestClient(TestServer(app)) as client:
            yield Api(client, store)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("raw", [
    b'["\\u0000"]', b'["\\ud800"]', b'["\xe5\x81\x9c\xe6\xb0\xb4", "a\\u0000b"]',
    b'["\\u202e\xe6\xb0\xb4"]'])
async def test_unsafe_text_inside_keywords_is_refused(api: Api, raw: bytes) -> None:
    body = json.dumps({k: v for k, v in GOOD.items() if k != "keywords"})[:-1].encode()
    status, answer = await api.put("water-outage", body + b', "keywords": ' + raw + b"}")
    assert (status, answer["error"], answer["details"]["fields"]) == (
        422, "invalid_field", ["keywords"])
    assert await api.store.get("water-outage") is None


@pytest.mark.parametrize("unit", [["city.water"], {"id": "city.water"}, 7, None])
async def test_a_unit_that_is_not_text_is_a_422(api: Api, unit: Any) -> None:
    status, answer = await api.put("water-outage", {**GOOD, "unit": unit})
    assert (status, answer["details"]["fields"]) == (422, ["unit"])


async def test_a_unit_filter_with_nul_is_a_422(api: Api) -> None:
    assert (await api.put("water-outage", GOOD))[0] == 201
    for query in ("unit=%00", "unit=city.water%00", "unit=" + "x" * 65):
        status, answer = await api.get(f"/api/kb/articles?{query}")
        assert (status, answer["details"]["fields"]) == (422, ["unit"]), query
        status, _ = await api.get(f"/api/kb/search?q=%E5%81%9C%E6%B0%B4&{query}")
        assert status == 422, query
    status, answer = await api.get("/api/kb/articles?unit=city.water")
    assert status == 200 and [a["id"] for a in answer["articles"]] == ["water-outage"]


def test_today_is_the_beijing_date_not_the_utc_date() -> None:
    # 00:30 on New Year's Day in Beijing; the UTC date is still December 31.
    assert beijing_today(lambda: datetime(2026, 12, 31, 16, 30, tzinfo=UTC)) == date(2027, 1, 1)
    # 23:59:30 on December 31 in Beijing.
    assert beijing_today(lambda: datetime(2026, 12, 31, 15, 59, 30, tzinfo=UTC)) == \
        date(2026, 12, 31)
    assert KbApiDeps.__dataclass_fields__["today"].default is beijing_today
