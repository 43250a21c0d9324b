"""The composition root's view of the ticket store for the citizen status queries
(``hotline.router_parts.order_status_lookup``), on the real databases."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from channels.citizen_status import OrderStatusUnavailable
from db.engine import create_engine
from hotline.router_parts import order_status_lookup
from router.ticket_store import TicketStore
from router.tickets import NewTicket
from tests.hotline.conftest import EngineFactory

NO = "2026112301000001"


async def test_the_lookup_answers_from_the_order(engine_factory: EngineFactory) -> None:
    store = TicketStore(await engine_factory())
    lookup = order_status_lookup(store)
    assert await lookup(NO) is None
    await store.create(NewTicket(intake_id=secrets.token_hex(16), acceptance_no=NO,
                                 channel="web", type="complaint", urgency="general",
                                 unit_id="city.water"))
    assert await lookup(NO) == "accepted"


@pytest.mark.parametrize("url", [
    "postgresql+asyncpg://postgres@127.0.0.1:1/test",          # nothing listens there
    "sqlite+aiosqlite:///{tmp}/never-migrated.db",            # a database without the table
])
async def test_a_database_not_answering_is_unavailable_not_unknown(
        url: str, tmp_path: Path) -> None:
    """The status query must answer 503 then, never "no order yet" (which would show 已受理
    for an order long in progress)."""
    engine = await asyncio.to_thread(create_engine, url.format(tmp=tmp_path))
    try:
        with pytest.raises(OrderStatusUnavailable):
            await order_status_lookup(TicketStore(engine))(NO)
    finally:
        await engine.dispose()
