"""The outbound adapter against a real local HTTP server (the "city's own ticket system"):
retries with the same idempotency key, Retry-After, refusal → dead letter, exhaustion →
dead letter with the reason; dead letters in real Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from config.routing import OutboundConfig
from router.outbound import RedisDeadLetter, TicketSender
from tests.router.city import CitySystem, city, dead_letters  # noqa: F401 (fixtures)

TICKET = {"number": "GD20261123000001", "intake_id": "ab" * 16, "unit": "city.water",
          "title": "停水", "text": "幸福小区 3 栋停水两天"}


def sender_for(url: str, session: aiohttp.ClientSession, dead: RedisDeadLetter,
               delays: list[float], **cfg: Any) -> TicketSender:
    async def no_wait(seconds: float) -> None:
        delays.append(seconds)

    config = OutboundConfig(enabled=True, url=url, **cfg)
    return TicketSender(session, config, dead, sleep=no_wait)


async def test_retries_with_the_same_key_until_delivered(
        city: tuple[CitySystem, str], dead_letters: tuple[RedisDeadLetter, Any]) -> None:
    system, url = city
    system.script = [503, 502, 500]
    delays: list[float] = []
    async with aiohttp.ClientSession() as session:
        sender = sender_for(url, session, dead_letters[0], delays, token="city-token-123456")
        result = await sender.send("intake-ab12", TICKET)
    assert (result.outcome, result.attempts, result.status) == ("delivered", 4, 201)
    assert {key for key, _, _ in system.seen} == {"intake-ab12"}
    assert all(body == TICKET for _, body, _ in system.seen)
    assert system.seen[0][2] == "Bearer city-token-123456"
    # Exponential backoff with ±20 % jitter: ~1, ~2, ~4 s.
    assert len(delays) == 3
    assert all(0.8 * base <= d <= 1.2 * base for d, base in zip(delays, (1, 2, 4), strict=True))


async def test_retry_after_is_honoured(city: tuple[CitySystem, str],
                                       dead_letters: tuple[RedisDeadLetter, Any]) -> None:
    system, url = city
    system.script, system.retry_after = [429], "7"
    delays: list[float] = []
    async with aiohttp.ClientSession() as session:
        result = await sender_for(url, session, dead_letters[0], delays).send("k1", TICKET)
    assert result.outcome == "delivered" and delays == [7.0]


async def test_a_refusal_goes_to_the_dead_letter_at_once(
        city: tuple[CitySystem, str], dead_letters: tuple[RedisDeadLetter, Any]) -> None:
    system, url = city
    system.script = [422]
    delays: list[float] = []
    dead, redis = dead_letters
    async with aiohttp.ClientSession() as session:
        result = await sender_for(url, session, dead, delays).send("k2", TICKET)
    assert (result.outcome, result.attempts) == ("dead_letter", 1)
    assert delays == [] and len(system.seen) == 1
    [(_, fields)] = await redis.xrange(dead.stream)
    assert fields[b"reason"].decode().startswith("HTTP 422")
    assert json.loads(fields[b"payload"]) == TICKET
    assert fields[b"idempotency_key"] == b"k2"


async def test_exhausted_attempts_and_timeouts_dead_letter_with_the_reason(
        city: tuple[CitySystem, str], dead_letters: tuple[RedisDeadLetter, Any]) -> None:
    system, url = city
    system.stall = 1.0                       # slower than the timeout, every time
    delays: list[float] = []
    dead, redis = dead_letters
    async with aiohttp.ClientSession() as session:
        sender = sender_for(url, session, dead, delays, max_attempts=3, timeout_seconds=0.2)
        result = await sender.send("k3", TICKET)
    assert (result.outcome, result.attempts) == ("dead_letter", 3)
    assert "Timeout" in result.reason
    assert len(delays) == 2
    assert await redis.xlen(dead.stream) == 1


async def test_nobody_listening_is_retried_then_dead_lettered(
        dead_letters: tuple[RedisDeadLetter, Any]) -> None:
    delays: list[float] = []
    async with aiohttp.ClientSession() as session:
        sender = sender_for("http://127.0.0.1:9/tickets", session, dead_letters[0], delays,
                            max_attempts=2)
        result = await sender.send("k4", TICKET)
    assert result.outcome == "dead_letter" and "ClientConnectorError" in result.reason
