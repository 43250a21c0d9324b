"""The outbox: tickets handed to a city's own ticket system, surviving restarts.

The ticket store writes a ``ticket_outbox`` row in the ticket's creating transaction (when
``routing.outbound.enabled``), so a crash between the commit and the POST loses nothing. The
:class:`OutboxRelay` claims due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several
instances share the work without sending one ticket twice at the same time), POSTs each with
the ticket number as ``Idempotency-Key`` through :class:`router.outbound.TicketSender`, and
records the outcome:

* delivered → ``delivered``;
* worth retrying (timeouts, 5xx, 429…) → ``attempts + 1`` and ``next_at`` after the backoff;
* refused (other 4xx) or out of attempts → ``dead`` with the reason, plus an entry in the
  dead-letter stream for a person to look at.

A claim is a lease: the row's ``next_at`` moves ``lease_seconds`` ahead, so a relay that dies
mid-POST gives the row back to the others when the lease runs out (at-least-once; the receiver
drops repeats by the idempotency key).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from channels.intake import utc_now
from config.routing import OutboundConfig
from db.tables.router import TicketOutboxRow, TicketRow
from router.outbound import DeadLetter, TicketSender
from router.ticket_store import ticket_from_row

log = logging.getLogger(__name__)

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    """Rows per state (for ``/metrics`` and the office)."""

    pending: int
    delivered: int
    dead: int


class OutboxRelay:
    """Delivers ``ticket_outbox`` rows; run :meth:`run` as an owned task, call :meth:`wake`
    after tickets were created to send them without waiting for the next poll."""

    def __init__(self, engine: AsyncEngine, sender: TicketSender, cfg: OutboundConfig,
                 dead_letter: DeadLetter, *, lease_seconds: float | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self._engine = engine
        self._sender = sender
        self._cfg = cfg
        self._dead_letter = dead_letter
        self._clock = clock
        self._lease = timedelta(seconds=lease_seconds if lease_seconds is not None
                                else cfg.timeout_seconds * 3 + 5)
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(cfg.concurrency)
        self.delivered = 0
        self.dead = 0
        self.retried = 0

    def wake(self) -> None:
        """New rows were written: look now."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled; a database or HTTP failure is logged and retried."""
        while True:
            try:
                sent = await self.pump()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("工单外送出错，稍后重试 (outbox pump failed)")
                sent = 0
            if sent == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._cfg.poll_seconds)
                except TimeoutError:
                    pass

    async def pump(self) -> int:
        """Claim the due rows (up to ``batch``) and deliver them; how many were claimed."""
        claimed = await self._claim()
        if claimed:
            async with asyncio.TaskGroup() as tg:
                for outbox_id, attempts, ticket in claimed:
                    tg.create_task(self._deliver(outbox_id, attempts, ticket))
        return len(claimed)

    async def _claim(self) -> list[tuple[int, int, dict[str, Any]]]:
        now = self._clock()
        due = (select(TicketOutboxRow.id)
               .where(TicketOutboxRow.state == PENDING, TicketOutboxRow.next_at <= now)
               .order_by(TicketOutboxRow.next_at).limit(self._cfg.batch)
               .with_for_update(skip_locked=True))
        async with self._engine.begin() as conn:
            ids = list((await conn.execute(due)).scalars())
            if not ids:
                return []
            await conn.execute(update(TicketOutboxRow).where(TicketOutboxRow.id.in_(ids))
                               .values(next_at=now + self._lease))
            rows = (await conn.execute(
                select(TicketOutboxRow.id.label("outbox_id"),
                       TicketOutboxRow.attempts.label("outbox_attempts"), TicketRow.__table__)
                .join(TicketRow, TicketRow.id == TicketOutboxRow.ticket_id)
                .where(TicketOutboxRow.id.in_(ids)))).all()
        return [(row.outbox_id, row.outbox_attempts,
                 ticket_from_row(row).model_dump(mode="json"))
                for row in rows]

    async def _deliver(self, outbox_id: int, attempts: int, ticket: dict[str, Any]) -> None:
        async with self._slots:
            key = str(ticket["number"])
            result = await self._sender.attempt(key, ticket)
            attempts += 1
            now = self._clock()
            values: dict[str, Any] = {"attempts": attempts, "last_status": result.status,
                                      "last_error": result.reason[:2000] or None}
            if result.ok:
                values |= {"state": DELIVERED, "done_at": now}
                self.delivered += 1
            elif result.retry and attempts < self._cfg.max_attempts:
                delay = self._sender.delay(attempts, result.retry_after)
                values |= {"next_at": now + timedelta(seconds=delay)}
                self.retried += 1
                log.warning("工单 %s 外送失败（第 %d/%d 次：%s），%.1f 秒后重试",
                            key, attempts, self._cfg.max_attempts, result.reason, delay)
            else:
                values |= {"state": DEAD, "done_at": now}
                self.dead += 1
                await self._dead_letter.put(key, ticket, result.reason, attempts)
                log.error("工单 %s 外送失败，已转入死信（%d 次：%s）", key, attempts,
                          result.reason)
            async with self._engine.begin() as conn:
                await conn.execute(update(TicketOutboxRow)
                                   .where(TicketOutboxRow.id == outbox_id).values(**values))

    async def counts(self) -> OutboxCounts:
        """Rows per state."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(TicketOutboxRow.state, func.count())
                                       .group_by(TicketOutboxRow.state))).all()
        got = {state: int(n) for state, n in rows}
        return OutboxCounts(got.get(PENDING, 0), got.get(DELIVERED, 0), got.get(DEAD, 0))

    async def retry_dead(self, number: str) -> bool:
        """Put a dead-lettered ticket back in line (after the receiver was fixed)."""
        async with self._engine.begin() as conn:
            ticket_id = (await conn.execute(select(TicketRow.id)
                                            .where(TicketRow.number == number))).scalar()
            if ticket_id is None:
                return False
            done = await conn.execute(
                update(TicketOutboxRow)
                .where(and_(TicketOutboxRow.ticket_id == ticket_id,
                            TicketOutboxRow.state == DEAD))
                .values(state=PENDING, attempts=0, next_at=self._clock(), done_at=None))
        self.wake()
        return bool(done.rowcount)
