"""Fixtures that run the whole service (composition root) against the PBX simulator."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from channels.durable import NO_METADATA_LOOKUP
from config.loader import load_config
from hotline.app import Hotline, serve
from telephony.link import LinkState

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "config" / "demo"
ADMIN = "admin-token-for-tests"
AGENT_1001 = "agent-1001-token"
AGENT_1002 = "agent-1002-token"
WATER = "unit-water-token"
URBAN = "unit-urban-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll ``check`` (sync, or returning an awaitable) until it gives something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


class RunningService:
    """A started service: its parts, its HTTP base URL and an HTTP session."""

    def __init__(self, hot: Hotline, http: aiohttp.ClientSession, db_path: Path) -> None:
        self.hot = hot
        self.http = http
        self.db_path = db_path
        self.base = f"http://127.0.0.1:{hot.http_port}"

    async def get(self, path: str, token: str | None = ADMIN) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(self.base + path, headers=headers) as resp:
            body = await resp.json() if resp.content_type == "application/json" \
                else await resp.text()
            return resp.status, body

    async def send(self, method: str, path: str, body: Any = None,
                   token: str | None = ADMIN) -> tuple[int, Any]:
        """Any other method (PUT, DELETE) with a JSON body."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.base + path, headers=headers,
                                     json=body) as resp:
            return resp.status, await resp.json()

    async def post(self, path: str, body: Any = None, token: str | None = ADMIN,
                   raw: bytes | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else None
        kwargs: dict[str, Any] = {"data": data} if raw is not None else {"json": body or {}}
        async with self.http.post(self.base + path, headers=headers, **kwargs) as resp:
            return resp.status, await resp.json()


async def delete_prefix(prefix: str) -> None:
    """Delete every Redis key a test's service wrote under ``{prefix}``."""
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=2,
                                     **NO_METADATA_LOOKUP)
    try:
        keys = [k async for k in client.scan_iter(match="{" + prefix + "}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def service_factory(tmp_path: Path) -> Callable[..., Any]:
    """``async with service_factory(ami_port) as svc:`` runs the service with the demo config
    (100 seats as Local channels), SQLite under tmp_path, and stops it on exit."""

    @asynccontextmanager
    async def start(ami_port: int, secret: str = "hotline-demo-secret",
                    db_name: str = "hotline.db",
                    config_dir: Path = DEMO_CONFIG,
                    extra_env: dict[str, str] | None = None) -> AsyncIterator[RunningService]:
        db_path = tmp_path / db_name
        prefix = f"e2e{uuid.uuid4().hex[:12]}"
        env = {
            "HOTLINE_AMI__PORT": str(ami_port),
            "HOTLINE_AMI__SECRET": secret,
            "HOTLINE_AMI__PING_INTERVAL": "2",
            "HOTLINE_AMI__PING_TIMEOUT": "1",
            "HOTLINE_AMI__BACKOFF_INITIAL": "0.1",
            "HOTLINE_AMI__BACKOFF_MAX": "0.5",
            "HOTLINE_SERVICE__HTTP_PORT": str(free_port()),
            "HOTLINE_SERVICE__DATABASE_URL": f"sqlite+aiosqlite:///{db_path}",
            "HOTLINE_SERVICE__ADMIN_TOKEN": ADMIN,
            "HOTLINE_AGENT_TOKENS": f"1001={AGENT_1001},1002={AGENT_1002}",
            "HOTLINE_UNIT_TOKENS": f"city.water={WATER},city.urban={URBAN}",
            "HOTLINE_SERVICE__SHUTDOWN_GRACE_SECONDS": "5",
            # The machine's Redis, under a key prefix of this test's own (deleted after).
            "HOTLINE_CHANNELS__REDIS__KEY_PREFIX": prefix,
            "HOTLINE_CHANNELS__SPOOL__PATH": str(tmp_path / f"spool-{db_name}"),
            "HOTLINE_CHANNELS__WEB__ATTACHMENTS_DIR": str(tmp_path / "attachments"),
        } | (extra_env or {})
        cfg = await asyncio.to_thread(load_config, config_dir, env)
        stop = asyncio.Event()
        started: asyncio.Future[Hotline] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(cfg, stop, config_dir=config_dir, env=env,
                                         started=started.set_result))
        try:
            hot = await asyncio.wait_for(asyncio.shield(started), 20)
            async with aiohttp.ClientSession() as http:
                yield RunningService(hot, http, db_path)
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
            await delete_prefix(prefix)

    return start


async def wait_ready(svc: RunningService, seats: int = 100) -> None:
    await eventually(lambda: svc.hot.link.state is LinkState.READY, what="AMI READY")
    await eventually(lambda: sum(1 for s in svc.hot.board.snapshot() if s.queues) >= seats,
                     what=f"{seats} seats logged in")
