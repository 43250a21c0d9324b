"""Fixtures for the channel tests: real Redis (the machine's, at 127.0.0.1:6379, with a
throwaway key prefix per test) and, for tests that stop and restart Redis, a private
``redis-server`` on a free port with AOF on (``appendfsync always``), as production runs it."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from channels.durable import NO_METADATA_LOOKUP, DurableGateway, open_gateway
from config.channels import ChannelsConfig
from tests.realtime import real_clock_env

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ConfigFactory = Callable[..., ChannelsConfig]


@pytest.fixture
async def channels_config(tmp_path: Path) -> AsyncIterator[ConfigFactory]:
    """Factory: a ChannelsConfig with its own Redis key prefix and spool file; every key under
    the prefixes it handed out is deleted afterwards."""
    prefixes: list[tuple[str, str]] = []

    def make(redis_url: str = SHARED_REDIS, **sections: Any) -> ChannelsConfig:
        prefix = f"t{uuid.uuid4().hex[:12]}"
        prefixes.append((redis_url, prefix))
        data: dict[str, Any] = {
            "redis": {"url": redis_url, "key_prefix": prefix, "socket_timeout": 0.5,
                      "connect_timeout": 0.5, "retry_seconds": 0.1},
            "spool": {"path": str(tmp_path / f"spool-{prefix}.db")},
        }
        for name, values in sections.items():
            data[name] = {**data[name], **values} if isinstance(values, dict) else values
        return ChannelsConfig.model_validate(data)

    yield make
    for url, prefix in prefixes:
        client = aioredis.Redis.from_url(url, socket_timeout=2, **NO_METADATA_LOOKUP)
        try:
            keys = [k async for k in client.scan_iter(match="{" + prefix + "}:*", count=1000)]
            if keys:
                await client.delete(*keys)
        except (OSError, aioredis.ConnectionError):
            pass                                   # a private server already gone
        finally:
            await client.aclose()


GatewayFactory = Callable[..., AbstractAsyncContextManager[DurableGateway]]


@pytest.fixture
def gateway_factory() -> GatewayFactory:
    """``async with gateway_factory(cfg) as gw``: the real durable gateway."""
    return open_gateway


class RedisServer:
    """A private redis-server with AOF in a temporary directory; stop/start keep the data."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        exe = await asyncio.to_thread(shutil.which, "redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found: install Debian's redis-server")
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--daemonize", "no", "--logfile", str(self.dir / "redis.log")]
        self.proc = await asyncio.to_thread(subprocess.Popen, args, env=real_clock_env())
        client = aioredis.Redis.from_url(self.url, socket_timeout=0.5, **NO_METADATA_LOOKUP)
        try:
            for _ in range(200):
                try:
                    if await client.ping():
                        return
                except (OSError, aioredis.ConnectionError, aioredis.ResponseError):
                    await asyncio.sleep(0.05)
            raise RuntimeError(f"redis-server on port {self.port} did not start")
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """Kill it hard (SIGKILL): what a crash looks like; AOF always keeps what it acked."""
        if self.proc is not None:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait)
            self.proc = None


@pytest.fixture
async def redis_server_factory(tmp_path: Path) -> AsyncIterator[Callable[[],
                                                                   Awaitable[RedisServer]]]:
    servers: list[RedisServer] = []

    async def make() -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        await asyncio.to_thread(directory.mkdir)
        server = RedisServer(directory)
        servers.append(server)
        await server.start()
        return server

    yield make
    for server in servers:
        await server.stop()
