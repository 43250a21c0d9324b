"""Fixtures for the telephony tests: a trace replay server and an AMI link to it, as factories
that close what they opened; and, for the records store and writer, the hotline database
fixtures (real PostgreSQL and SQLite, one throwaway database per use), shared rather than
copied."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from panoramisk.message import Message

from telephony.link import AmiLink
from telephony.simulator.replay import ReplayServer
from tests.hotline.conftest import (
    database_factory,
    engine_factory,
    pg_database_factory,
    sqlite_database_factory,
)

__all__ = ["database_factory", "engine_factory", "pg_database_factory", "sqlite_database_factory"]


def preamble(trace: Callable[[str], list[Any]]) -> list[Any]:
    """Banner, Login, its response, FullyBooted, SuccessfulAuth (trace 09)."""
    return trace("09-errors")[:5]


@pytest.fixture
async def replay() -> AsyncIterator[Callable[..., Awaitable[ReplayServer]]]:
    async with contextlib.AsyncExitStack() as stack:
        async def make(lines: list[Any], **kw: Any) -> ReplayServer:
            return await stack.enter_async_context(ReplayServer(lines, **kw))
        yield make


@pytest.fixture
async def ami() -> AsyncIterator[Callable[..., Awaitable[tuple[AmiLink, list[Message]]]]]:
    """Factory: an entered link to ``server`` recording its events (READY unless told)."""
    async with contextlib.AsyncExitStack() as stack:
        async def make(server: ReplayServer, ready: bool = True,
                       **kw: Any) -> tuple[AmiLink, list[Message]]:
            events: list[Message] = []
            kw.setdefault("on_event", events.append)
            kw.setdefault("backoff_initial", 0.01)
            kw.setdefault("backoff_max", 0.05)
            link = await stack.enter_async_context(AmiLink(
                host="127.0.0.1", port=server.port, username="hotline",
                secret="hotline-secret", **kw))
            if ready:
                await link.wait_ready(5)
            return link, events
        yield make
