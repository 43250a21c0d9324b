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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from channels.errors import SpoolError
from channels.intake import Intake

log = logging.getLogger(__name__)
T = TypeVar("T")

# sqlite3 raises ProgrammingError (a sqlite3.Error) once its connection is closed.
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
    """An fsync'd SQLite queue of intakes. Open with :func:`open_spool`.

    The connection lives on one dedicated thread (every statement runs there, off the event
    loop); a group commit is one trip to that thread."""

    def __init__(self, db: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._db = db
        self._executor = executor
        self._count = 0
        self._pending: list[tuple[Intake, asyncio.Future[Intake]]] = []
        self._writing: asyncio.Lock = asyncio.Lock()
        self.commits = 0                   # group commits made (a batch each)
        self._inflight: set[asyncio.Future[None]] = set()

    @property
    def count(self) -> int:
        """Intakes in the spool now (not yet forwarded to Redis)."""
        return self._count

    async def _run(self, fn: Callable[[], T], what: str) -> T:
        try:
            pending = asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except RuntimeError as exc:           # the executor is shut down: spool closed
            raise SpoolError(f"spool {what} failed: the spool is closed") from exc
        try:
            return await pending
        except _FAILURES as exc:
            raise SpoolError(f"spool {what} failed: {exc}") from exc

    async def _load_count(self) -> None:
        row = await self._run(lambda: self._db.execute("SELECT count(*) FROM spool").fetchone(),
                              "count")
        self._count = int(row[0]) if row else 0

    async def put(self, intake: Intake) -> Intake:
        """Store ``intake`` durably. If its idempotency key is already spooled, nothing is
        written and the spooled one is returned (compare ``intake_id`` to tell)."""
        future: asyncio.Future[Intake] = asyncio.get_running_loop().create_future()
        self._pending.append((intake, future))
        # Whoever holds the lock writes everything queued so far, including ours; a waiter
        # whose intake an earlier holder already wrote leaves at once (no convoy of
        # one-intake commits).
        async with self._writing:
            while self._pending and not future.done():
                batch, self._pending = self._pending, []
                # Shielded: if this caller is cancelled the batch still completes and every
                # other waiter learns the truth (durable or not), never a false error.
                write = asyncio.ensure_future(self._write(batch))
                self._inflight.add(write)
                write.add_done_callback(self._inflight.discard)
                await asyncio.shield(write)
        return await future

    def _write_sync(self, rows: list[tuple[str, str, str, str]]) -> list[str | None]:
        """Insert ``rows`` and commit (fsync); for each row None if inserted, else the payload
        already spooled under its idempotency key."""
        out: list[str | None] = []
        try:
            for row in rows:
                cur = self._db.execute(
                    "INSERT INTO spool (idem, acceptance_no, intake_id, payload) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (idem) DO NOTHING", row)
                if cur.rowcount == 1:
                    out.append(None)
                else:
                    found = self._db.execute("SELECT payload FROM spool WHERE idem = ?",
                                             (row[0],)).fetchone()
                    out.append(found[0] if found else row[3])
            self._db.commit()
        except BaseException:
            with suppress(*_FAILURES):
                self._db.rollback()
            raise
        return out

    async def _write(self, batch: list[tuple[Intake, asyncio.Future[Intake]]]) -> None:
        """Write ``batch`` in one commit and resolve every waiter's future (always: with the
        stored intake, or with the error)."""
        rows = [(i.idempotency_key, i.acceptance_no, i.intake_id, i.to_json()) for i, _ in batch]
        try:
            written = await self._run(lambda: self._write_sync(rows), "write")
        except BaseException as exc:
            error = exc if isinstance(exc, SpoolError) else SpoolError(f"spool write: {exc!r}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if isinstance(exc, SpoolError):
                return
            raise
        self.commits += 1
        for (intake, future), existing in zip(batch, written, strict=True):
            if existing is None:
                self._count += 1
            if not future.done():
                future.set_result(intake if existing is None else Intake.from_json(existing))

    async def find(self, *, idem: str | None = None,
                   acceptance_no: str | None = None) -> Intake | None:
        """A spooled intake by idempotency key or acceptance number."""
        arg: str | None
        if idem is not None:
            sql, arg = "SELECT payload FROM spool WHERE idem = ?", idem
        else:
            sql, arg = "SELECT payload FROM spool WHERE acceptance_no = ?", acceptance_no
        row = await self._run(lambda: self._db.execute(sql, (arg,)).fetchone(), "read")
        return None if row is None else Intake.from_json(row[0])

    async def head(self, limit: int) -> list[Spooled]:
        """The oldest ``limit`` spooled intakes, oldest first."""
        rows = await self._run(lambda: self._db.execute(
            "SELECT seq, payload FROM spool ORDER BY seq LIMIT ?", (limit,)).fetchall(), "read")
        return [Spooled(int(seq), Intake.from_json(payload)) for seq, payload in rows]

    async def remove_through(self, seq: int) -> None:
        """Forget every spooled intake up to and including ``seq`` (they are in Redis now)."""

        def delete() -> int:
            cur = self._db.execute("DELETE FROM spool WHERE seq <= ?", (seq,))
            self._db.commit()
            return int(cur.rowcount)

        async with self._writing:
            removed = await self._run(delete, "delete")
            self._count = max(0, self._count - removed)

    async def lease(self, day: str, size: int) -> int:
        """Reserve ``size`` sequence numbers of ``day`` (YYYYMMDD); returns the first.

        Durable before it returns, so a crash skips numbers but never repeats one."""

        def reserve() -> int:
            try:
                self._db.execute("INSERT INTO sequence (day, next) VALUES (?, 1) "
                                 "ON CONFLICT (day) DO NOTHING", (day,))
                row = self._db.execute("UPDATE sequence SET next = next + ? WHERE day = ? "
                                       "RETURNING next", (size, day)).fetchone()
                self._db.commit()
            except BaseException:
                with suppress(*_FAILURES):
                    self._db.rollback()
                raise
            return int(row[0]) - size

        return await self._run(reserve, "sequence lease")

    async def aclose(self) -> None:
        """Close the connection (on its thread) and stop the thread."""
        with suppress(SpoolError):
            await self._run(self._db.close, "close")
        self._executor.shutdown(wait=False)


def _connect(where: Path) -> sqlite3.Connection:
    db = sqlite3.connect(where, isolation_level="DEFERRED", check_same_thread=True)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(_SCHEMA)
    db.commit()
    return db


@asynccontextmanager
async def open_spool(path: str | Path) -> AsyncIterator[IntakeSpool]:
    """Open (creating) the spool file; the connection is closed on exit."""
    where = Path(path)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-spool")
    try:
        await asyncio.get_running_loop().run_in_executor(
            executor, lambda: where.parent.mkdir(parents=True, exist_ok=True))
        db = await asyncio.get_running_loop().run_in_executor(executor, _connect, where)
    except (sqlite3.Error, OSError) as exc:
        executor.shutdown(wait=False)
        raise SpoolError(f"cannot open the intake spool {where}: {exc}") from exc
    spool = IntakeSpool(db, executor)
    try:
        await spool._load_count()
        if spool.count:
            log.warning("intake spool %s holds %d intake(s) not yet in Redis", where,
                        spool.count)
        yield spool
    finally:
        await spool.aclose()
