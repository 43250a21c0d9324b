"""The local durable spool: accepted intakes wait here, in order, while Redis does not answer.

SQLite in WAL mode with ``synchronous=FULL``: a commit is on disk (fsync) before
:meth:`IntakeSpool.put` returns, so a 2xx to the citizen is never a promise kept only in RAM.
Concurrent puts share one commit (group commit): the writer takes everything queued, writes it
in one transaction and then answers every waiter.

The same file keeps the acceptance-number sequence (:meth:`IntakeSpool.lease`), so numbering
works with Redis down and never repeats after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from channels.errors import SpoolError
from channels.intake import Intake

log = logging.getLogger(__name__)

# aiosqlite raises ValueError once its connection is gone.
_FAILURES = (sqlite3.Error, OSError, ValueError)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idem TEXT NOT NULL UNIQUE,
    acceptance_no TEXT NOT NULL UNIQUE,
    intake_id TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sequence (
    day TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Spooled:
    """One spooled intake, in acceptance order."""

    seq: int
    intake: Intake


class IntakeSpool:
    """An fsync'd SQLite queue of intakes. Open with :func:`open_spool`."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._count = 0
        self._pending: list[tuple[Intake, asyncio.Future[Intake]]] = []
        self._writing: asyncio.Lock = asyncio.Lock()

    @property
    def count(self) -> int:
        """Intakes in the spool now (not yet forwarded to Redis)."""
        return self._count

    async def _load_count(self) -> None:
        async with self._db.execute("SELECT count(*) FROM spool") as cur:
            row = await cur.fetchone()
        self._count = int(row[0]) if row else 0

    async def put(self, intake: Intake) -> Intake:
        """Store ``intake`` durably. If its idempotency key is already spooled, nothing is
        written and the spooled one is returned (compare ``intake_id`` to tell)."""
        future: asyncio.Future[Intake] = asyncio.get_running_loop().create_future()
        self._pending.append((intake, future))
        # Whoever holds the lock writes everything queued so far, including ours.
        async with self._writing:
            if self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._write(batch)
                except BaseException:
                    # Cancelled mid-write: the others in this batch must not wait forever.
                    for _, waiting in batch:
                        if waiting is not future and not waiting.done():
                            waiting.set_exception(SpoolError("spool write interrupted"))
                    raise
        return await future

    async def _write(self, batch: list[tuple[Intake, asyncio.Future[Intake]]]) -> None:
        results: list[Intake] = []
        try:
            for intake, _ in batch:
                cur = await self._db.execute(
                    "INSERT INTO spool (idem, acceptance_no, intake_id, payload) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (idem) DO NOTHING",
                    (intake.idempotency_key, intake.acceptance_no, intake.intake_id,
                     intake.to_json()))
                if cur.rowcount == 1:
                    self._count += 1
                    results.append(intake)
                else:
                    results.append(await self._by_key(intake.idempotency_key) or intake)
            await self._db.commit()
        except _FAILURES as exc:
            with suppress(*_FAILURES):
                await self._db.rollback()
                await self._load_count()
            error = SpoolError(f"spool write failed: {exc}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _by_key(self, idem: str) -> Intake | None:
        async with self._db.execute("SELECT payload FROM spool WHERE idem = ?", (idem,)) as cur:
            row = await cur.fetchone()
        return None if row is None else Intake.from_json(row[0])

    async def find(self, *, idem: str | None = None,
                   acceptance_no: str | None = None) -> Intake | None:
        """A spooled intake by idempotency key or acceptance number."""
        try:
            if idem is not None:
                return await self._by_key(idem)
            async with self._db.execute("SELECT payload FROM spool WHERE acceptance_no = ?",
                                        (acceptance_no,)) as cur:
                row = await cur.fetchone()
            return None if row is None else Intake.from_json(row[0])
        except _FAILURES as exc:
            raise SpoolError(f"spool read failed: {exc}") from exc

    async def head(self, limit: int) -> list[Spooled]:
        """The oldest ``limit`` spooled intakes, oldest first."""
        try:
            async with self._db.execute(
                    "SELECT seq, payload FROM spool ORDER BY seq LIMIT ?", (limit,)) as cur:
                rows = await cur.fetchall()
        except _FAILURES as exc:
            raise SpoolError(f"spool read failed: {exc}") from exc
        return [Spooled(int(seq), Intake.from_json(payload)) for seq, payload in rows]

    async def remove_through(self, seq: int) -> None:
        """Forget every spooled intake up to and including ``seq`` (they are in Redis now)."""
        async with self._writing:
            try:
                await self._db.execute("DELETE FROM spool WHERE seq <= ?", (seq,))
                await self._db.commit()
            except _FAILURES as exc:
                raise SpoolError(f"spool delete failed: {exc}") from exc
            await self._load_count()

    async def lease(self, day: str, size: int) -> int:
        """Reserve ``size`` sequence numbers of ``day`` (YYYYMMDD); returns the first.

        Durable before it returns, so a crash skips numbers but never repeats one."""
        async with self._writing:
            try:
                await self._db.execute(
                    "INSERT INTO sequence (day, next) VALUES (?, 1) ON CONFLICT (day) DO NOTHING",
                    (day,))
                async with self._db.execute(
                        "UPDATE sequence SET next = next + ? WHERE day = ? RETURNING next",
                        (size, day)) as cur:
                    row = await cur.fetchone()
                await self._db.commit()
            except _FAILURES as exc:
                raise SpoolError(f"sequence lease failed: {exc}") from exc
        assert row is not None
        return int(row[0]) - size


@asynccontextmanager
async def open_spool(path: str | Path) -> AsyncIterator[IntakeSpool]:
    """Open (creating) the spool file; the connection is closed on exit."""
    where = Path(path)
    await asyncio.to_thread(where.parent.mkdir, parents=True, exist_ok=True)
    try:
        db = await aiosqlite.connect(where, isolation_level="DEFERRED")
    except (sqlite3.Error, OSError) as exc:
        raise SpoolError(f"cannot open the intake spool {where}: {exc}") from exc
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.executescript(_SCHEMA)
        await db.commit()
        spool = IntakeSpool(db)
        await spool._load_count()
        if spool.count:
            log.warning("intake spool %s holds %d intake(s) not yet in Redis", where,
                        spool.count)
        yield spool
    finally:
        await db.close()
