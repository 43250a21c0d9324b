"""The agent API against hostile input, on the service's real application (``build_app`` plus
the intake, ticket and knowledge-base routes): every bad body is a documented JSON error,
never a 5xx, and the error answer itself survives what it echoes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.channels.fakes import MemoryGateway
from tests.channels.intake_http import ADMIN, Harness, channels_config, running

AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(MemoryGateway(), channels_config(str(tmp_path / "att"))) as harness:
        yield harness


async def post_raw(h: Harness, path: str, raw: bytes) -> tuple[int, str, Any]:
    async with h.client.post(path, data=raw, headers={
            **AUTH, "Content-Type": "application/json"}) as resp:
        text = await resp.text()
        body = json.loads(text) if resp.content_type == "application/json" else text
        return resp.status, resp.content_type, body


@pytest.mark.parametrize("raw", [
    b"[" * 5000 + b"]" * 5000,                                   # RecursionError in json
    b'{"reason": ' + b"[" * 500 + b"]" * 500 + b"}",            # deep, under the recursion limit
    b'{"reason": ' + b"9" * 5000 + b"}",                        # over Python's 4,300 digits
    b'{"reason": NaN}',
], ids=["deep", "deep-in-field", "huge-int", "nan"])
async def test_a_body_json_cannot_hold_is_a_400_not_a_500(h: Harness, raw: bytes) -> None:
    status, content_type, body = await post_raw(h, "/api/seats/1001/pause", raw)
    assert (status, content_type, body["error"]) == (400, "application/json", "invalid_json")
    assert body["message"]


@pytest.mark.parametrize(("path", "field"), [
    ("/api/seats/1001/pause", "reason"),
    ("/api/seats/1001/transfer", "department"),
    ("/api/seats/1001/three-way", "department"),
])
async def test_a_lone_surrogate_in_an_echoed_field_is_a_json_422(
        h: Harness, path: str, field: str) -> None:
    """The pause reason and department are echoed in "unknown ..." errors: before, the error
    body could not be encoded and aiohttp answered its own plain-text 500."""
    status, content_type, body = await post_raw(
        h, path, b'{"%s": "\\ud800\xe5\x8d\x88\xe4\xbc\x91"}' % field.encode())
    assert (status, content_type) == (422, "application/json")
    assert body["error"] == "invalid_field" and body["details"]["fields"] == [field]


async def test_an_error_that_echoes_a_surrogate_is_still_json(h: Harness) -> None:
    """Whatever a handler echoes, the error middleware answers JSON (\\u escapes)."""
    from httpkit.errors import error_response

    response = error_response(422, "x", "未配置的示忙原因：\ud800")
    assert json.loads(response.body)["message"] == "未配置的示忙原因：\ud800"  # type: ignore[arg-type]


async def test_an_unknown_reason_is_named_in_a_422(h: Harness) -> None:
    status, _, body = await post_raw(h, "/api/seats/1001/pause",
                                     json.dumps({"reason": "摸鱼"}).encode())
    assert (status, body["error"]) == (422, "unknown_pause_reason")


async def test_an_empty_body_is_an_empty_object(h: Harness) -> None:
    """unpause and hangup take no body: the action runs (this board has no seats)."""
    status, _, body = await post_raw(h, "/api/seats/1001/unpause", b"")
    assert (status, body["error"]) == (404, "unknown_seat")


async def test_405_names_the_allowed_methods(h: Harness) -> None:
    async with h.client.get("/api/seats/1001/pause", headers=AUTH) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        assert (await resp.json())["details"]["allowed"] == ["POST"]


async def test_the_server_header_names_no_versions(h: Harness) -> None:
    for path in ("/healthz", "/no/such/path"):
        async with h.client.get(path) as resp:
            assert resp.headers["Server"] == "hotline"
