"""The signed mobile app API over HTTP, with nonces in the machine's Redis (a unique key
prefix per test, deleted afterwards) and the in-memory gateway."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from channels.durable import NO_METADATA_LOOKUP
from channels.nonces import MemoryNonceStore, NonceStoreFull, RedisNonceStore
from config.channels import AppClient, AppConfig
from tests.channels.conftest import free_port
from tests.channels.fakes import MemoryGateway, MemoryOrders
from tests.channels.intake_http import (
    APP_ID,
    APP_KEY,
    Harness,
    ManualClock,
    channels_config,
    redis_client,
    running,
)

INTAKES = "/api/app/v1/intakes"
OTHER_APP, OTHER_KEY = "street-miniprogram", "street-miniprogram-key-98765"


def body(**fields: Any) -> bytes:
    data = {"request_id": "req-00000001", "app_user_id": "u-1001", "content": "小区门口积水",
            "phone": "13800138000", **fields}
    return json.dumps(data, ensure_ascii=False).encode()


@pytest.fixture
async def redis_nonces() -> AsyncIterator[tuple[RedisNonceStore, aioredis.Redis, str]]:
    async with redis_client() as (client, prefix):
        yield RedisNonceStore(client, prefix), client, prefix


@pytest.fixture
async def h(tmp_path: Path, redis_nonces: tuple[RedisNonceStore, aioredis.Redis, str]
            ) -> AsyncIterator[Harness]:
    store, _, _ = redis_nonces
    cfg = channels_config(str(tmp_path / "att"), rate_limit_per_minute=0)
    clients = {**cfg.app.clients,
               OTHER_APP: AppClient(name="街道小程序", secret=SecretStr(OTHER_KEY))}
    cfg = cfg.model_copy(update={"app": AppConfig(clients=clients)})
    async with running(MemoryGateway(), cfg, nonces=store) as harness:
        yield harness


def gateway(h: Harness) -> MemoryGateway:
    assert isinstance(h.gateway, MemoryGateway)
    return h.gateway


async def still_accepts(h: Harness) -> None:
    n = len(gateway(h).intakes)
    status, answer = await h.signed("POST", INTAKES, body(request_id=f"alive-{n:06d}"))
    assert status == 201, answer
    assert len(gateway(h).intakes) == n + 1


async def test_signed_submission_is_accepted(h: Harness) -> None:
    status, answer = await h.signed("POST", INTAKES, body(district="上城区"))
    assert status == 201 and answer["duplicate"] is False
    [intake] = gateway(h).intakes
    assert intake.channel == "app"
    assert intake.external_id == f"{APP_ID}:req-00000001"
    assert intake.contact.app_user_id == f"{APP_ID}:u-1001"
    assert intake.contact.phone == "13800138000" and intake.location.district == "上城区"
    assert intake.source_ref.startswith(f"http:app {APP_ID} ")


async def test_retried_request_id_is_one_intake(h: Harness) -> None:
    first = await h.signed("POST", INTAKES, body())
    retry = await h.signed("POST", INTAKES, body())           # new nonce, same request_id
    assert (first[0], retry[0]) == (201, 200)
    assert retry[1]["duplicate"] is True
    assert retry[1]["acceptance_no"] == first[1]["acceptance_no"]
    # The same request id from another app is another intake.
    other = await h.signed("POST", INTAKES, body(), app_id=OTHER_APP, key=OTHER_KEY)
    assert other[0] == 201 and other[1]["acceptance_no"] != first[1]["acceptance_no"]


async def test_app_needs_no_phone_but_valid_fields(h: Harness) -> None:
    no_phone = json.dumps({"request_id": "req-00000002", "app_user_id": "u-1",
                           "content": "建议增设公交站"}).encode()
    assert (await h.signed("POST", INTAKES, no_phone))[0] == 201
    status, answer = await h.signed("POST", INTAKES, body(content=7, request_id="short",
                                                          phone="123"))
    assert status == 422
    assert set(answer["details"]["fields"]) == {"content", "request_id", "phone"}
    status, answer = await h.signed("POST", INTAKES, b"{not json")
    assert (status, answer["error"]) == (400, "invalid_json")
    await still_accepts(h)


async def test_bad_signature_wrong_key_or_tampered_body(h: Harness) -> None:
    status, answer = await h.signed("POST", INTAKES, body(), key="not-the-key-0123456789")
    assert (status, answer["error"]) == (401, "bad_signature")
    # Signed one body, sent another.
    from channels.signing import signed_headers
    ts = int(h.clock.wall().timestamp())
    headers = signed_headers(APP_ID, APP_KEY, "POST", INTAKES, body(), timestamp=ts)
    headers["Content-Type"] = "application/json"
    async with h.client.post(INTAKES, data=body(content="改过的内容"), headers=headers) as resp:
        assert resp.status == 401 and (await resp.json())["error"] == "bad_signature"
    # Signed for another path.
    headers = signed_headers(APP_ID, APP_KEY, "POST", "/api/app/v1/other", body(), timestamp=ts)
    async with h.client.post(INTAKES, data=body(), headers=headers) as resp:
        assert resp.status == 401 and (await resp.json())["error"] == "bad_signature"
    assert gateway(h).intakes == []
    await still_accepts(h)


async def test_replayed_nonce_is_refused(h: Harness,
                                         redis_nonces: tuple[Any, aioredis.Redis, str]) -> None:
    _, client, prefix = redis_nonces
    nonce = "nonce-0123456789abcdef"
    assert (await h.signed("POST", INTAKES, body(), nonce=nonce))[0] == 201
    status, answer = await h.signed("POST", INTAKES, body(), nonce=nonce)
    assert (status, answer["error"]) == (401, "replayed_nonce")
    # Kept in Redis for twice the window, so every instance of the service refuses it.
    ttl = await client.ttl(f"{prefix}:nonce:{APP_ID}:{nonce}")
    assert 590 <= ttl <= 600
    other_instance = RedisNonceStore(client, prefix)
    assert await other_instance.claim(APP_ID, nonce, 600) is False
    # A nonce is per app.
    assert (await h.signed("POST", INTAKES, body(request_id="req-other-app"), nonce=nonce,
                           app_id=OTHER_APP, key=OTHER_KEY))[0] == 201
    await still_accepts(h)


async def test_a_bad_signature_does_not_use_up_the_nonce(h: Harness) -> None:
    nonce = "nonce-not-burned-0001"
    assert (await h.signed("POST", INTAKES, body(), nonce=nonce, key="x" * 20))[0] == 401
    assert (await h.signed("POST", INTAKES, body(), nonce=nonce))[0] == 201


@pytest.mark.parametrize("skew", [-301, 301, -10_000_000])
async def test_stale_or_future_timestamp_is_refused(h: Harness, skew: int) -> None:
    ts = int(h.clock.wall().timestamp()) + skew
    status, answer = await h.signed("POST", INTAKES, body(), timestamp=ts)
    assert (status, answer["error"]) == (401, "stale_request")
    assert answer["details"]["window_seconds"] == 300
    assert (await h.signed("POST", INTAKES, body(),
                           timestamp=int(h.clock.wall().timestamp()) - 299))[0] == 201


@pytest.mark.parametrize(("app_id", "code"), [
    ("someone-else", "unknown_app"),
    ("no-key-app", "unknown_app"),           # configured but without a signing key
])
async def test_unknown_app_is_refused(h: Harness, app_id: str, code: str) -> None:
    status, answer = await h.signed("POST", INTAKES, body(), app_id=app_id)
    assert (status, answer["error"]) == (401, code)
    await still_accepts(h)


async def test_unsigned_request_names_the_missing_headers(h: Harness) -> None:
    async with h.client.post(INTAKES, data=body(),
                             headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 401
        answer = await resp.json()
    assert answer["error"] == "missing_signature"
    assert answer["details"]["headers"] == ["X-App-Id", "X-Timestamp", "X-Nonce", "X-Signature"]


async def test_oversized_app_body_is_413(h: Harness) -> None:
    big = body(content="x" * (1024 * 1024))
    status, answer = await h.signed("POST", INTAKES, big)
    assert (status, answer["error"]) == (413, "payload_too_large")
    await still_accepts(h)


async def test_status_only_for_the_same_app_user(h: Harness) -> None:
    _, accepted = await h.signed("POST", INTAKES, body())
    no = accepted["acceptance_no"]
    status, answer = await h.signed("GET", f"{INTAKES}/{no}?app_user_id=u-1001")
    assert status == 200, answer
    assert (answer["acceptance_no"], answer["status"], answer["channel"]) == (
        no, "accepted", "app")
    not_found = {"error": "not_found", "message": "未找到该受理编号", "details": {}}
    assert await h.signed("GET", f"{INTAKES}/{no}?app_user_id=u-2002") == (404, not_found)
    assert await h.signed("GET", f"{INTAKES}/{no}?app_user_id=u-1001", app_id=OTHER_APP,
                          key=OTHER_KEY) == (404, not_found)
    assert await h.signed("GET", f"{INTAKES}/2099010101999999?app_user_id=u-1001") == (
        404, not_found)
    assert await h.signed("GET", f"{INTAKES}/garbage?app_user_id=u-1001") == (404, not_found)
    status, answer = await h.signed("GET", f"{INTAKES}/{no}")
    assert (status, answer["error"]) == (422, "invalid_field")
    # The query is signed: changing the user after signing breaks the signature.
    from channels.signing import signed_headers
    headers = signed_headers(APP_ID, APP_KEY, "GET", f"{INTAKES}/{no}?app_user_id=u-2002",
                             b"", timestamp=int(h.clock.wall().timestamp()))
    async with h.client.get(f"{INTAKES}/{no}?app_user_id=u-1001", headers=headers) as resp:
        assert resp.status == 401


async def test_app_status_is_the_work_orders_once_there_is_one(tmp_path: Path) -> None:
    orders = MemoryOrders()
    cfg = channels_config(str(tmp_path / "att"), rate_limit_per_minute=0)
    async with running(MemoryGateway(), cfg, order_status=orders) as h:
        _, accepted = await h.signed("POST", INTAKES, body())
        no = accepted["acceptance_no"]
        mine = f"{INTAKES}/{no}?app_user_id=u-1001"
        status, answer = await h.signed("GET", mine)
        assert (status, answer["status"], answer["status_text"]) == (200, "accepted", "已受理")
        orders.statuses[no] = "replied"
        status, answer = await h.signed("GET", mine)
        assert (status, answer["status"], answer["status_text"]) == (200, "replied", "已答复")
        assert set(answer) == {"acceptance_no", "status", "status_text", "channel",
                               "received_at", "thread_of"}
        asked = len(orders.asked)
        status, _ = await h.signed("GET", f"{INTAKES}/{no}?app_user_id=u-2002")
        assert status == 404 and len(orders.asked) == asked   # another user never reaches it
        orders.down = True
        status, answer = await h.signed("GET", mine)
        assert (status, answer["error"]) == (503, "status_unavailable")


async def test_web_intakes_are_not_visible_to_apps(h: Harness) -> None:
    _, accepted = await h.post_json("/api/intake/web", {"content": "x", "phone": "13800138000"})
    status, _ = await h.signed("GET", f"{INTAKES}/{accepted['acceptance_no']}?app_user_id=u-1")
    assert status == 404


async def test_gateway_down_is_503(h: Harness) -> None:
    gateway(h).fail = True
    status, answer = await h.signed("POST", INTAKES, body())
    assert (status, answer["error"]) == (503, "intake_unavailable")
    gateway(h).fail = False
    await still_accepts(h)


async def test_disabled_app_api_is_403(h: Harness) -> None:
    h.config = h.config.model_copy(update={"app": AppConfig(enabled=False)})
    status, answer = await h.signed("POST", INTAKES, body())
    assert (status, answer["error"]) == (403, "channel_disabled")


# -- nonce store without Redis ------------------------------------------------------------
async def test_redis_down_falls_back_to_memory_and_remembers_after(tmp_path: Path) -> None:
    # A port nobody listens on: connection refused at once.
    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5,
                                   socket_connect_timeout=0.5,
                                   driver_info=NO_METADATA_LOOKUP["driver_info"])
    clock = ManualClock()
    store = RedisNonceStore(dead, "tdead", retry_seconds=5, clock=clock.monotonic)
    try:
        cfg = channels_config(str(tmp_path / "att"), rate_limit_per_minute=0)
        async with running(MemoryGateway(), cfg, nonces=store, clock=clock) as h:
            nonce = "nonce-while-redis-down"
            assert (await h.signed("POST", INTAKES, body(), nonce=nonce))[0] == 201
            assert store.degraded
            status, answer = await h.signed("POST", INTAKES, body(), nonce=nonce)
            assert (status, answer["error"]) == (401, "replayed_nonce")
            await still_accepts(h)
    finally:
        await dead.aclose()
    # Redis back: a nonce used during the outage is still refused (it is only in memory).
    async with redis_client() as (live, prefix):
        back = RedisNonceStore(live, prefix, fallback=store._memory, clock=clock.monotonic)
        assert await back.claim(APP_ID, "nonce-while-redis-down", 600) is False
        assert await back.claim(APP_ID, "a-fresh-nonce-000001", 600) is True
        assert await live.exists(f"{prefix}:nonce:{APP_ID}:a-fresh-nonce-000001") == 1


async def test_memory_store_is_bounded_and_expires() -> None:
    clock = ManualClock()
    store = MemoryNonceStore(max_entries=3, clock=clock.monotonic)
    assert [await store.claim("a", f"n{i}", 10) for i in range(3)] == [True] * 3
    assert await store.claim("a", "n0", 10) is False
    with pytest.raises(NonceStoreFull):
        await store.claim("a", "n3", 10)
    clock.advance(11)
    assert await store.claim("a", "n0", 10) is True        # expired ones are forgotten
    assert len(store) == 1
