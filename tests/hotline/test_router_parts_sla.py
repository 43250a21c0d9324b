"""RouterParts.apply_sla: a (re)loaded sla.yaml replaces the router's calendar and recounts
the provisional orders; a ticket store that does not answer leaves the config in force."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from config.classify import ClassifyRules
from config.kinds import DemandType, Urgency
from config.loader import DEFAULTS_DIR, load_config
from config.schema import HotlineConfig
from config.sla import SlaConfig
from hotline.router_parts import RouterParts
from router.calendar import WorkCalendar
from router.classify import Classifier
from router.gazetteer import Gazetteer
from router.kb_store import KbStore, KbSync
from router.service import IntakeRouter
from router.ticket_store import TicketStore
from router.tickets import NewTicket

EngineFactory = Callable[..., Awaitable[AsyncEngine]]
SHANGHAI = ZoneInfo("Asia/Shanghai")


async def parts_on(engine: AsyncEngine) -> tuple[RouterParts, HotlineConfig]:
    cfg = await asyncio.to_thread(load_config, DEFAULTS_DIR, {})
    store = TicketStore(engine)
    router = IntakeRouter(
        classifier=Classifier(ClassifyRules(), None), units=cfg.units,
        gazetteer=Gazetteer(cfg.units), calendar=WorkCalendar(cfg.sla.calendar, SHANGHAI),
        sla=cfg.sla, create_ticket=store.create)
    kb = KbSync(KbStore(engine), lambda _kb: None)
    return RouterParts(router, store, kb, SHANGHAI), cfg


def with_2027(cfg: HotlineConfig) -> HotlineConfig:
    # A test arrangement for 2027, not the State Council's: Jan 1 and Mon Jan 4 off.
    sla = SlaConfig.model_validate(
        {"calendar": {"years": {2027: {"holidays": ["2027-01-01", "2027-01-04"]}}}})
    return cfg.model_copy(update={"sla": sla})


@pytest.mark.parametrize("database_factory", ["sqlite"], indirect=True)
async def test_a_reloaded_year_replaces_the_calendar_and_recounts(
        engine_factory: EngineFactory) -> None:
    parts, cfg = await parts_on(await engine_factory())
    accepted = datetime(2026, 12, 28, 10, tzinfo=SHANGHAI)
    ticket, _ = await parts.tickets.create(NewTicket(
        intake_id=secrets.token_hex(16), acceptance_no="2026122801000001", channel="web",
        type=DemandType.praise, urgency=Urgency.general, title="表扬",
        handle_by=datetime(2027, 1, 6, tzinfo=SHANGHAI), deadlines_from=accepted,
        deadline_provisional=True))
    assert parts.router.calendar.is_provisional(2027)
    report = await parts.apply_sla(with_2027(cfg))
    assert report is not None and report.changed == 1 and parts.recounted.changed == 1
    assert not parts.router.calendar.is_provisional(2027)
    assert parts.calendar_warning(datetime(2026, 12, 7, tzinfo=SHANGHAI)) is None
    fresh = await parts.tickets.get(ticket.number)
    assert fresh.handle_by == datetime(2027, 1, 7, tzinfo=SHANGHAI)


@pytest.mark.parametrize("database_factory", ["sqlite"], indirect=True)
async def test_a_store_that_does_not_answer_leaves_the_new_calendar_in_force(
        engine_factory: EngineFactory, caplog: pytest.LogCaptureFixture) -> None:
    parts, cfg = await parts_on(await engine_factory(migrated=False))   # no tickets table
    assert await parts.apply_sla(with_2027(cfg)) is None
    assert not parts.router.calendar.is_provisional(2027)
    assert "not recounted" in caplog.text
