"""The intake stream in Redis: idempotent add, status, dead letters and safe trimming.

One ``XADD`` per intake, made idempotent by a Lua script that checks and sets the
``channel:external_id`` key in the same atomic step; the acceptance number's status hash is
written in that step too. Trimming never removes an entry some consumer group has not
acknowledged (Redis 7's ``XADD MAXLEN`` would: it knows nothing of groups).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from channels.errors import StreamUnavailable
from channels.gateway import IntakeStatus
from channels.intake import Intake
from channels.keys import StreamKeys

log = logging.getLogger(__name__)

# KEYS: idempotency key, stream, status hash.  ARGV: "acceptance_no intake_id", ttl seconds,
# payload, acceptance_no, intake_id, channel, received_at, phone, app user, thread_of.
# Returns {1, stream id} when added, {0, "acceptance_no intake_id"} for a duplicate.
_ADD = """
local prev = redis.call('GET', KEYS[1])
if prev then return {0, prev} end
local id = redis.call('XADD', KEYS[2], '*', 'intake', ARGV[3], 'acceptance_no', ARGV[4],
                      'intake_id', ARGV[5])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[3], 'intake_id', ARGV[5], 'channel', ARGV[6], 'received_at', ARGV[7],
           'status', 'accepted', 'phone', ARGV[8], 'app_user_id', ARGV[9], 'thread_of', ARGV[10],
           'stream_id', id)
redis.call('EXPIRE', KEYS[3], ARGV[2])
return {1, id}
"""

UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError, OSError)


def unavailable(exc: BaseException) -> bool:
    """Does ``exc`` mean "Redis did not answer" (as opposed to a bug or a refused command)?"""
    if isinstance(exc, UNAVAILABLE):
        return True
    # A Redis starting up, or a replica that was just demoted: try again later.
    return isinstance(exc, ResponseError) and str(exc).startswith(("LOADING", "READONLY",
                                                                   "MASTERDOWN", "TRYAGAIN"))


@dataclass(frozen=True, slots=True)
class AddResult:
    """What :meth:`IntakeStream.add` did."""

    added: bool
    acceptance_no: str
    intake_id: str
    stream_id: str | None


def text(value: Any) -> str:
    """A Redis reply value (bytes or str) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


class IntakeStream:
    """Operations on the intake stream. ``redis`` is a ``redis.asyncio.Redis`` (bytes mode)."""

    def __init__(self, redis: aioredis.Redis, keys: StreamKeys, ttl_seconds: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl_seconds
        self._add = redis.register_script(_ADD)

    def _args(self, intake: Intake) -> tuple[list[str], list[Any]]:
        keys = [self.keys.idempotency(intake.idempotency_key), self.keys.stream,
                self.keys.status(intake.acceptance_no)]
        args: list[Any] = [f"{intake.acceptance_no} {intake.intake_id}", self.ttl,
                           intake.to_json(), intake.acceptance_no, intake.intake_id,
                           intake.channel, intake.received_at.isoformat(),
                           intake.contact.phone or "", intake.contact.app_user_id or "",
                           intake.thread_of or ""]
        return keys, args

    @staticmethod
    def _result(raw: Sequence[Any]) -> tuple[bool, str]:
        return bool(int(raw[0])), text(raw[1])

    async def add(self, intake: Intake) -> AddResult:
        """Add ``intake`` unless its idempotency key is known. Raises
        :class:`StreamUnavailable` when Redis does not answer."""
        keys, args = self._args(intake)
        try:
            raw = await self._add(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            # Not only "no answer": OOM, MISCONF (cannot persist), NOPERM ... all mean Redis
            # cannot take the intake now, and the spool can.
            raise StreamUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return self._decode(intake, cast(Sequence[Any], raw))

    async def add_many(self, intakes: Sequence[Intake]) -> list[AddResult]:
        """:meth:`add` for several intakes in one round trip, in order."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for intake in intakes:
                    keys, args = self._args(intake)
                    await self._add(keys=keys, args=args, client=pipe)
                raws = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StreamUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return [self._decode(i, r) for i, r in zip(intakes, raws, strict=True)]

    @staticmethod
    def _decode(intake: Intake, raw: Sequence[Any]) -> AddResult:
        added, value = IntakeStream._result(raw)
        if added:
            return AddResult(True, intake.acceptance_no, intake.intake_id, value)
        acceptance_no, _, intake_id = value.partition(" ")
        return AddResult(False, acceptance_no, intake_id, None)

    async def alias(self, acceptance_no: str, original: str) -> None:
        """Record that ``acceptance_no`` (given while Redis was down, to a re-submission)
        means the earlier ``original``; a status query follows it."""
        key = self.keys.status(acceptance_no)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"alias_of": original})
                pipe.expire(key, self.ttl)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StreamUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def lookup(self, idempotency_key: str) -> str | None:
        """The acceptance number given to ``idempotency_key``, or None."""
        raw = await self.redis.get(self.keys.idempotency(idempotency_key))
        return None if raw is None else text(raw).partition(" ")[0]

    async def status(self, acceptance_no: str) -> IntakeStatus | None:
        """The status hash of ``acceptance_no`` (following an alias once), or None. Its status
        is the one given at acceptance; the work order's is read from the ticket store
        (:mod:`channels.citizen_status`)."""
        for _ in range(2):
            raw = cast(Mapping[bytes, bytes],
                       await self.redis.hgetall(self.keys.status(acceptance_no)))
            if not raw:
                return None
            fields = {text(k): text(v) for k, v in raw.items()}
            if "alias_of" in fields and "intake_id" not in fields:
                acceptance_no = fields["alias_of"]
                continue
            return IntakeStatus(
                acceptance_no=acceptance_no, intake_id=fields["intake_id"],
                channel=fields["channel"],  # type: ignore[arg-type]
                received_at=datetime.fromisoformat(fields["received_at"]),
                status=fields.get("status", "accepted"), phone=fields.get("phone") or None,
                app_user_id=fields.get("app_user_id") or None,
                thread_of=fields.get("thread_of") or None)
        return None

    async def ensure_group(self) -> None:
        """See :func:`ensure_group`."""
        await ensure_group(self.redis, self.keys)

    async def trim(self, max_len: int, page: int = 1000) -> int:
        """Trim acknowledged entries beyond ``max_len``; never an unacknowledged one.

        The cut is the smallest of: the first entry beyond ``max_len`` from the end, each
        group's oldest pending entry and each group's last delivered entry. No group at all
        means nobody has read anything yet: nothing is trimmed. Works through the excess
        ``page`` ids at a time (only ids are needed, but XRANGE returns whole entries).
        Returns entries removed."""
        stream = self.keys.stream
        groups = await self.redis.xinfo_groups(stream) if await self.redis.exists(stream) \
            else []
        if not groups:
            return 0
        boundary = min(_stream_id(g["last-delivered-id"]) for g in groups)
        for group in groups:
            if int(group["pending"]) > 0:
                summary = await self.redis.xpending(stream, group["name"])
                boundary = min(boundary, _stream_id(summary["min"]))
        removed = 0
        while True:
            excess = int(await self.redis.xlen(stream)) - max_len
            if excess <= 0:
                return removed
            batch = await self.redis.xrange(stream, "-", "+", count=min(excess, page) + 1) or []
            if len(batch) < 2:
                return removed
            cut = min(_stream_id(batch[min(excess, len(batch) - 1)][0]), boundary)
            if cut <= _stream_id(batch[0][0]):
                return removed               # the rest is not acknowledged yet
            n = int(await self.redis.xtrim(stream, minid=f"{cut[0]}-{cut[1]}",
                                           approximate=False))
            if n == 0:
                return removed
            removed += n


async def ensure_group(redis: aioredis.Redis, keys: StreamKeys) -> None:
    """Create the consumer group (and the stream) if missing; start from the beginning so
    intakes added before the first consumer are not skipped."""
    try:
        await redis.xgroup_create(keys.stream, keys.group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _stream_id(value: Any) -> tuple[int, int]:
    ms, _, seq = text(value).partition("-")
    return int(ms), int(seq or 0)
