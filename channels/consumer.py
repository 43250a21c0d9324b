"""A consumer of the intake stream (the router runs one per instance).

At-least-once: an entry is acknowledged (``XACK``, shielded from cancellation) only after the
handler returned, so the handler must be idempotent on ``intake_id`` (the ticket backend is).
Entries left pending by a consumer that died are taken over with ``XAUTOCLAIM`` once idle for
``claim_idle_seconds``. An entry whose handler failed ``max_deliveries`` times, or whose
payload cannot be read at all, goes to the dead-letter stream with the reason, and is
acknowledged on the intake stream in the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError, ResponseError

from channels.intake import Intake
from channels.keys import StreamKeys
from channels.stream import ensure_group, text, unavailable

log = logging.getLogger(__name__)

Handler = Callable[[Intake], Awaitable[None]]
# Handles a whole read batch at once (e.g. one database transaction for all of it).
BatchHandler = Callable[[list[Intake]], Awaitable[None]]


@dataclass
class ConsumerCounters:
    """Totals since start."""

    handled: int = 0
    failed: int = 0
    claimed: int = 0
    dead_lettered: int = 0
    redis_errors: int = 0


class IntakeConsumer:
    """Reads the intake stream in a consumer group and hands each intake to ``handler``.

    ``redis`` should have a read timeout longer than ``block_ms`` (see
    :func:`channels.durable.redis_client` with ``block_seconds``)."""

    def __init__(self, redis: aioredis.Redis, keys: StreamKeys, name: str, handler: Handler, *,
                 max_deliveries: int = 5, claim_idle_seconds: float = 60.0, batch: int = 100,
                 block_ms: int = 1000, retry_seconds: float = 1.0,
                 batch_handler: BatchHandler | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.name = name
        self.handler = handler
        self.batch_handler = batch_handler
        self.max_deliveries = max_deliveries
        self.claim_idle_ms = int(claim_idle_seconds * 1000)
        self.batch = batch
        self.block_ms = block_ms
        self.retry_seconds = retry_seconds
        self.counters = ConsumerCounters()
        self._group_ready = False

    async def run(self) -> None:
        """Consume until cancelled; Redis outages are waited out, never fatal."""
        last_claim = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if not self._group_ready:
                    await self._ensure_group()
                if loop.time() - last_claim >= self.claim_idle_ms / 4000:
                    last_claim = loop.time()
                    await self.claim_once()
                await self.read_once()
            except (RedisError, OSError) as exc:
                if isinstance(exc, ResponseError) and str(exc).startswith(("NOGROUP",
                                                                           "UNBLOCKED")):
                    # The stream was deleted (or Redis restarted without it) under us: the
                    # group must be made again.
                    log.warning("intake consumer %s: %s; making the group again", self.name, exc)
                    self._group_ready = False
                    continue
                if not (isinstance(exc, OSError) or unavailable(exc)):
                    raise
                self.counters.redis_errors += 1
                log.warning("intake consumer %s: Redis does not answer (%s); retrying",
                            self.name, exc)
                await asyncio.sleep(self.retry_seconds)

    async def _ensure_group(self) -> None:
        await ensure_group(self.redis, self.keys)
        self._group_ready = True

    async def read_once(self) -> int:
        """Read and handle new entries (blocking up to ``block_ms``); returns how many."""
        reply = await self.redis.xreadgroup(self.keys.group, self.name, {self.keys.stream: ">"},
                                            count=self.batch, block=self.block_ms)
        entries = _entries(reply)
        if self.batch_handler is not None and len(entries) > 1 and await self._batch(entries):
            return len(entries)
        done: list[str] = []
        try:
            for entry_id, fields in entries:
                if await self._handle(entry_id, fields, deliveries=1):
                    done.append(entry_id)
        finally:
            # Whatever was handled is acknowledged, even if we are being cancelled.
            await self._ack(done)
        return len(entries)

    async def _batch(self, entries: list[tuple[str, Mapping[bytes, bytes]]]) -> bool:
        """Hand the readable entries to the batch handler at once; True when done (all
        acknowledged). On any failure, False: the caller handles them one by one, so one bad
        intake is isolated (retried, dead-lettered) and the rest still go through."""
        assert self.batch_handler is not None
        intakes: list[Intake] = []
        for _, fields in entries:
            raw = fields.get(b"intake")
            try:
                intakes.append(Intake.from_json(raw if raw is not None else b""))
            except ValidationError:
                return False
        try:
            await self.batch_handler(intakes)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried one by one right away
            log.warning("intake batch of %d failed (%s: %s); handling one by one",
                        len(intakes), type(exc).__name__, exc)
            return False
        self.counters.handled += len(intakes)
        await self._ack([entry_id for entry_id, _ in entries])
        return True

    async def claim_once(self) -> int:
        """Take over entries idle longer than ``claim_idle_seconds`` (a dead consumer's, or
        ones whose handler failed) and handle them; returns how many were claimed."""
        claimed = 0
        start = "0-0"
        while True:
            reply = await self.redis.xautoclaim(self.keys.stream, self.keys.group, self.name,
                                                self.claim_idle_ms, start_id=start,
                                                count=self.batch)
            start = text(reply[0])
            entries = [(text(i), f) for i, f in reply[1] if f is not None]
            # Entries deleted (trimmed) while pending come back as ids only (Redis 7: in a
            # third element); they are gone, nothing to do but forget them.
            if entries:
                counts = await self._delivery_counts([i for i, _ in entries])
                done: list[str] = []
                try:
                    for entry_id, fields in entries:
                        claimed += 1
                        self.counters.claimed += 1
                        if await self._handle(entry_id, fields,
                                              deliveries=counts.get(entry_id, 1)):
                            done.append(entry_id)
                finally:
                    await self._ack(done)
            if start == "0-0":
                return claimed

    async def _delivery_counts(self, ids: Sequence[str]) -> dict[str, int]:
        """Each claimed entry's delivery count, asked for by its exact id (a range could
        miss ids with other consumers' entries between them)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xpending_range(self.keys.stream, self.keys.group, min=entry_id,
                                    max=entry_id, count=1)
            replies = await pipe.execute()
        return {text(r["message_id"]): int(r["times_delivered"])
                for rows in replies for r in rows}

    async def _handle(self, entry_id: str, fields: Mapping[bytes, bytes], deliveries: int) -> bool:
        """Handle one entry; True when it is done and must be acknowledged (the caller
        acknowledges a whole batch in one round trip)."""
        raw = fields.get(b"intake")
        if raw is None:
            await self.dead_letter(entry_id, fields, "bad_payload: no intake field", deliveries)
            return False
        try:
            intake = Intake.from_json(raw)
        except ValidationError as exc:
            reason = f"bad_payload: {exc.error_count()} error(s), first: {exc.errors()[0]['msg']}"
            await self.dead_letter(entry_id, fields, reason, deliveries)
            return False
        try:
            await self.handler(intake)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the reason is kept, the entry retried
            self.counters.failed += 1
            reason = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("intake %s (%s) failed on delivery %d/%d: %s", intake.acceptance_no,
                        entry_id, deliveries, self.max_deliveries, reason)
            if deliveries >= self.max_deliveries:
                await self.dead_letter(entry_id, fields, reason, deliveries)
            else:
                await self.redis.hset(self.keys.failures, entry_id, reason)
            return False
        self.counters.handled += 1
        return True

    async def _ack(self, entry_ids: list[str]) -> None:
        """Acknowledge handled entries in one round trip, shielded: the work is done and the
        acknowledgement must not be lost to a cancellation (at worst, after a crash, an entry
        is delivered again: the handler is idempotent on ``intake_id``)."""
        if not entry_ids:
            return

        async def ack() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xack(self.keys.stream, self.keys.group, *entry_ids)
                pipe.hdel(self.keys.failures, *entry_ids)
                await pipe.execute()

        inner = asyncio.ensure_future(ack())
        cancelled = False
        while not inner.done():
            try:
                await asyncio.shield(inner)
            except asyncio.CancelledError:
                cancelled = True              # finish the acknowledgement first
        if cancelled:
            raise asyncio.CancelledError("stopped after acknowledging")
        inner.result()

    async def dead_letter(self, entry_id: str, fields: Mapping[bytes, bytes], reason: str,
                          deliveries: int) -> None:
        """Move one entry to the dead-letter stream with ``reason`` and acknowledge it."""
        previous = await self.redis.hget(self.keys.failures, entry_id)
        record: dict[Any, Any] = {
            b"intake": fields.get(b"intake", b""), "stream_id": entry_id, "reason": reason,
            "deliveries": deliveries, "consumer": self.name,
            "at": datetime.now(UTC).isoformat()}
        if previous is not None and text(previous) != reason:
            record["previous_reason"] = previous
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.dead_letter, record)
            pipe.xack(self.keys.stream, self.keys.group, entry_id)
            pipe.hdel(self.keys.failures, entry_id)
            await asyncio.shield(pipe.execute())
        self.counters.dead_lettered += 1
        log.error("intake entry %s dead-lettered after %d deliveries: %s", entry_id,
                  deliveries, reason)


def _entries(reply: Any) -> list[tuple[str, Mapping[bytes, bytes]]]:
    """``XREADGROUP``'s RESP2 reply ``[[stream, [(id, fields), ...]]]`` as (id, fields)."""
    out: list[tuple[str, Mapping[bytes, bytes]]] = []
    for _, items in reply or ():
        for entry_id, fields in items:
            if fields is not None:
                out.append((text(entry_id), fields))
    return out
