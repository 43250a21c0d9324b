"""The service's real application (``build_app`` plus the intake, ticket and knowledge-base
routes) against hostile requests: the error answer survives what it echoes, a wrong method is a
JSON 405, and the Server header names no versions. The seat actions' bodies are tested on
telephony's own module (tests/telephony/test_http.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.channels.fakes import MemoryGateway
from tests.channels.intake_http import ADMIN, Harness, channels_config, running

AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(MemoryGateway(), channels_config(str(tmp_path / "att"))) as harness:
        yield harness


async def test_an_error_that_echoes_a_surrogate_is_still_json(h: Harness) -> None:
    """Whatever a handler echoes, the error middleware answers JSON (\\u escapes)."""
    from httpkit.errors import error_response

    response = error_response(422, "x", "未配置的示忙原因：\ud800")
    assert json.loads(response.body)["message"] == "未配置的示忙原因：\ud800"  # type: ignore[arg-type]


async def test_405_names_the_allowed_methods(h: Harness) -> None:
    async with h.client.get("/api/seats/1001/pause", headers=AUTH) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        assert (await resp.json())["details"]["allowed"] == ["POST"]


async def test_the_server_header_names_no_versions(h: Harness) -> None:
    for path in ("/healthz", "/no/such/path"):
        async with h.client.get(path) as resp:
            assert resp.headers["Server"] == "hotline"
