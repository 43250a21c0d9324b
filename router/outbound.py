"""Outbound adapter: POST each ticket as JSON to a city's own ticket system.

Some cities keep their own work-order system; Hotline then hands each ticket over HTTP.
Delivery is at-least-once with an ``Idempotency-Key`` header (the same key on every retry, so
the receiver can drop repeats):

* 2xx → delivered;
* 408, 425, 429, 5xx, timeouts and connection errors → retried with exponential backoff and
  jitter (``Retry-After`` honoured, capped), up to ``max_attempts``;
* any other 4xx → the receiver refuses this ticket: no retry, straight to the dead letter;
* attempts exhausted → dead letter, with the last reason, for a person to look at.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import aiohttp
import redis.asyncio as aioredis

from config.routing import OutboundConfig

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one :meth:`TicketSender.send`."""

    outcome: Literal["delivered", "dead_letter"]
    attempts: int
    status: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one POST: ``ok``; else ``retry`` (worth trying again, after
    ``retry_after`` seconds if the receiver said so) or refused."""

    ok: bool
    retry: bool
    status: int | None
    reason: str
    retry_after: float | None = None


class DeadLetter(Protocol):
    """Where undeliverable tickets wait for a person."""

    async def put(self, key: str, payload: Mapping[str, Any], reason: str,
                  attempts: int) -> None: ...


class RedisDeadLetter:
    """Dead letters in a Redis stream (one entry per ticket, with the reason)."""

    def __init__(self, redis: aioredis.Redis, stream: str) -> None:
        self.redis = redis
        self.stream = stream

    async def put(self, key: str, payload: Mapping[str, Any], reason: str,
                  attempts: int) -> None:
        await self.redis.xadd(self.stream, {
            "idempotency_key": key, "reason": reason[:1000], "attempts": attempts,
            "at": datetime.now(UTC).isoformat(),
            "payload": json.dumps(payload, ensure_ascii=False, default=str)})


class TicketSender:
    """Sends tickets to ``cfg.url``; ``session`` is owned by the caller (composition root)."""

    def __init__(self, session: aiohttp.ClientSession, cfg: OutboundConfig,
                 dead_letter: DeadLetter, *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        self.session = session
        self.cfg = cfg
        self.dead_letter = dead_letter
        self._sleep = sleep
        self._rng = rng or random.Random()

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): the receiver's
        ``Retry-After`` if it gave one, else exponential backoff with ±20 % jitter; capped."""
        cap = self.cfg.backoff_max
        if retry_after is not None:
            return min(retry_after, cap)
        base: float = min(cap, self.cfg.backoff_initial * 2.0 ** (attempt - 1))
        return base * (0.8 + 0.4 * self._rng.random())

    async def attempt(self, key: str, payload: Mapping[str, Any]) -> Attempt:
        """One POST of ``payload`` with idempotency key ``key`` (no retry, no sleep)."""
        body = json.dumps(payload, ensure_ascii=False, default=str).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": key}
        if self.cfg.token is not None:
            headers["Authorization"] = f"Bearer {self.cfg.token.get_secret_value()}"
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout_seconds)
        try:
            async with self.session.post(self.cfg.url, data=body, headers=headers,
                                         timeout=timeout) as resp:
                status = resp.status
                text = (await resp.text(errors="replace"))[:300]
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Attempt(False, True, None, f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return Attempt(True, False, status, "")
        after = float(retry_after) if retry_after and retry_after.strip().isdigit() else None
        # Any other 4xx: the receiver refuses this ticket; retrying cannot help.
        return Attempt(False, status in RETRYABLE_STATUS, status, f"HTTP {status}: {text}",
                       after)

    async def send(self, key: str, payload: Mapping[str, Any]) -> Delivery:
        """Deliver ``payload`` (a ticket as JSON) with idempotency key ``key``, retrying in
        this task (the outbox, :mod:`router.outbox`, retries across restarts instead)."""
        reason = ""
        status: int | None = None
        for attempt in range(1, self.cfg.max_attempts + 1):
            result = await self.attempt(key, payload)
            status, reason = result.status, result.reason
            if result.ok:
                return Delivery("delivered", attempt, status, "")
            if not result.retry:
                break
            if attempt < self.cfg.max_attempts:
                delay = self.delay(attempt, result.retry_after)
                log.warning("ticket %s not delivered (attempt %d/%d: %s); retry in %.1f s",
                            key, attempt, self.cfg.max_attempts, reason, delay)
                await self._sleep(delay)
        await self.dead_letter.put(key, payload, reason, attempt)
        log.error("ticket %s dead-lettered after %d attempt(s): %s", key, attempt, reason)
        return Delivery("dead_letter", attempt, status, reason)
