"""The outbox against a real local HTTP server (the city's own ticket system) and the real
databases: rows written with the ticket, delivered once with the ticket number as idempotency
key, retried after backoff, refused → dead (and back on request), leases expire, two relays on
PostgreSQL never send one ticket at the same time."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from config.routing import OutboundConfig
from db.tables.router import TicketOutboxRow
from router.outbound import RedisDeadLetter, TicketSender
from router.outbox import OutboxRelay
from router.ticket_store import TicketStore
from router.tickets import NewTicket
from tests.router.city import CitySystem, city, dead_letters  # noqa: F401 (fixtures)

START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def new_ticket(**overrides: Any) -> NewTicket:
    return NewTicket.model_validate({
        "intake_id": secrets.token_hex(16), "acceptance_no": "2026112300000001",
        "channel": "web", "type": "complaint", "urgency": "general", "unit_id": "city.water",
        "title": "停水", "text": "幸福小区 3 栋停水两天", "citizen_phone": "13800138000",
        "location": {"address": "幸福小区3栋"}, "explanation": {}} | overrides)


async def states(engine: Any) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(TicketOutboxRow.state, TicketOutboxRow.attempts)
                                   .order_by(TicketOutboxRow.id))).all()
    return [(r.state, r.attempts) for r in rows]


async def setup(engine: Any, url: str, session: aiohttp.ClientSession,
                dead: RedisDeadLetter, **cfg: Any) -> tuple[TicketStore, OutboxRelay, Clock]:
    clock = Clock()
    config = OutboundConfig(enabled=True, url=url, max_attempts=3, backoff_initial=10.0,
                            **cfg)
    relay = OutboxRelay(engine, TicketSender(session, config, dead), config, dead,
                        clock=clock)
    store = TicketStore(engine, clock=clock, outbox=True, on_outbox=relay.wake)
    return store, relay, clock


async def test_each_ticket_is_delivered_once_with_its_number_as_key(
        engine_factory: Any, city: tuple[CitySystem, str],  # noqa: F811
        dead_letters: tuple[RedisDeadLetter, Any]) -> None:  # noqa: F811
    engine = await engine_factory()
    system, url = city
    async with aiohttp.ClientSession() as session:
        store, relay, _ = await setup(engine, url, session, dead_letters[0])
        made = await store.create_many([new_ticket() for _ in range(5)])
        assert await relay.pump() == 5
        assert await relay.pump() == 0
    numbers = sorted(t.number for t, _ in made)
    assert sorted(key for key, _, _ in system.seen) == numbers
    assert all(body["number"] == key and body["unit_id"] == "city.water"
               for key, body, _ in system.seen)
    assert await states(engine) == [("delivered", 1)] * 5
    counts = await relay.counts()
    assert (counts.pending, counts.delivered, counts.dead) == (0, 5, 0)


async def test_a_store_without_outbox_writes_no_rows(engine_factory: Any) -> None:
    engine = await engine_factory()
    await TicketStore(engine).create(new_ticket())
    assert await states(engine) == []


async def test_a_failure_is_retried_after_the_backoff_with_the_same_key(
        engine_factory: Any, city: tuple[CitySystem, str],  # noqa: F811
        dead_letters: tuple[RedisDeadLetter, Any]) -> None:  # noqa: F811
    engine = await engine_factory()
    system, url = city
    system.script = [503]
    async with aiohttp.ClientSession() as session:
        store, relay, clock = await setup(engine, url, session, dead_letters[0])
        await store.create(new_ticket())
        assert await relay.pump() == 1
        assert await states(engine) == [("pending", 1)]
        assert await relay.pump() == 0            # not due yet (backoff 10 s ± 20 %)
        clock.now += timedelta(seconds=13)
        assert await relay.pump() == 1
    assert await states(engine) == [("delivered", 2)]
    assert len({key for key, _, _ in system.seen}) == 1 and len(system.seen) == 2


async def test_a_refused_ticket_is_dead_lettered_and_can_be_sent_again(
        engine_factory: Any, city: tuple[CitySystem, str],  # noqa: F811
        dead_letters: tuple[RedisDeadLetter, Any]) -> None:  # noqa: F811
    engine = await engine_factory()
    system, url = city
    system.script = [422]
    dead, redis = dead_letters
    async with aiohttp.ClientSession() as session:
        store, relay, _ = await setup(engine, url, session, dead)
        ticket, _ = await store.create(new_ticket())
        await relay.pump()
        assert await states(engine) == [("dead", 1)]
        [(_id, entry)] = await redis.xrange(dead.stream)
        assert entry[b"idempotency_key"].decode() == ticket.number
        assert b"HTTP 422" in entry[b"reason"]
        assert await relay.retry_dead(ticket.number)
        assert not await relay.retry_dead("GD-NONE")
        await relay.pump()
    assert await states(engine) == [("delivered", 1)]


async def test_attempts_run_out_into_the_dead_letter(
        engine_factory: Any, city: tuple[CitySystem, str],  # noqa: F811
        dead_letters: tuple[RedisDeadLetter, Any]) -> None:  # noqa: F811
    engine = await engine_factory()
    system, url = city
    system.script = [500, 500, 500]
    async with aiohttp.ClientSession() as session:
        store, relay, clock = await setup(engine, url, session, dead_letters[0])
        await store.create(new_ticket())
        for _ in range(3):
            await relay.pump()
            clock.now += timedelta(hours=1)
    assert await states(engine) == [("dead", 3)]
    assert relay.dead == 1 and relay.retried == 2


async def test_a_relay_that_died_mid_post_gives_the_row_back_after_its_lease(
        engine_factory: Any, city: tuple[CitySystem, str],  # noqa: F811
        dead_letters: tuple[RedisDeadLetter, Any]) -> None:  # noqa: F811
    engine = await engine_factory()
    system, url = city
    async with aiohttp.ClientSession() as session:
        store, relay, clock = await setup(engine, url, session, dead_letters[0])
        await store.create(new_ticket())
        claimed = await relay._claim()            # claimed, then the process "dies"
        assert len(claimed) == 1 and system.seen == []
        other = OutboxRelay(engine, relay._sender, relay._cfg, dead_letters[0], clock=clock)
        assert await other.pump() == 0            # leased to the dead relay
        clock.now += timedelta(minutes=2)
        assert await other.pump() == 1
    assert await states(engine) == [("delivered", 1)] and len(system.seen) == 1


@pytest.mark.parametrize("database_factory", ["postgresql"], indirect=True)
async def test_two_relays_share_the_work_without_sending_a_ticket_twice(
        engine_factory: Any, city: tuple[CitySystem, str],  # noqa: F811
        dead_letters: tuple[RedisDeadLetter, Any]) -> None:  # noqa: F811
    engine = await engine_factory()
    system, url = city
    system.stall = 0.02
    async with aiohttp.ClientSession() as session:
        store, relay_a, clock = await setup(engine, url, session, dead_letters[0], batch=10)
        relay_b = OutboxRelay(engine, relay_a._sender, relay_a._cfg, dead_letters[0],
                              clock=clock)
        await store.create_many([new_ticket() for _ in range(60)])
        while True:
            a, b = await asyncio.gather(relay_a.pump(), relay_b.pump())
            if a == b == 0:
                break
    keys = [key for key, _, _ in system.seen]
    assert len(keys) == len(set(keys)) == 60
    assert relay_a.delivered > 0 and relay_b.delivered > 0


async def test_run_delivers_as_soon_as_the_store_wakes_it(
        engine_factory: Any, city: tuple[CitySystem, str],  # noqa: F811
        dead_letters: tuple[RedisDeadLetter, Any]) -> None:  # noqa: F811
    engine = await engine_factory()
    system, url = city
    async with aiohttp.ClientSession() as session:
        store, relay, _ = await setup(engine, url, session, dead_letters[0],
                                      poll_seconds=600)
        task = asyncio.create_task(relay.run())
        try:
            await asyncio.sleep(0.05)
            await store.create(new_ticket())
            for _ in range(200):
                if system.seen:
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert len(system.seen) == 1
