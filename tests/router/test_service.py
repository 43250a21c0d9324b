"""The router end to end on the real ticket backend (PostgreSQL and SQLite): an intake becomes
one ticket with unit, type, urgency, deadlines and the reasons; a redelivery makes no second
ticket; a consultation carries knowledge-base answers; an unplaceable intake goes to manual
dispatch; a deadline the calendar cannot compute is left to the dispatcher, the ticket made."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from channels.intake import Contact, Intake, Location
from config.classify import ClassifyRules
from config.kinds import DemandType, Urgency
from config.loader import DEFAULTS_DIR, load_config
from config.sla import SlaConfig
from router.calendar import WorkCalendar
from router.classify import Classifier, TextModel
from router.gazetteer import Gazetteer
from router.kb import Article, KnowledgeBase, load_articles
from router.service import IntakeRouter
from router.ticket_store import TicketStore
from router.train import load_model, train

KB = Path(__file__).resolve().parents[1] / "data" / "kb_sample.yaml"
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "labelled_sample.csv"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> TextModel:
    """The learned model, trained once on the team's labelled sample (as in production,
    where `hotline router train` made it from the hotline's history)."""
    out = tmp_path_factory.mktemp("model") / "router-model.joblib"
    train(SAMPLE, out)
    return load_model(out)


def intake(n: int, text: str, *, title: str = "", street: str | None = None,
           address: str | None = None, at: datetime | None = None) -> Intake:
    return Intake(channel="web", external_id=f"w-{n}", received_at=at or datetime(
        2026, 11, 23, 2, 0, tzinfo=UTC), contact=Contact(name="李女士", phone="13912345678"),
        title=title, text=text, location=Location(street=street, address=address),
        intake_id=f"{n:032x}", acceptance_no=f"2026112301{n:06d}")


async def make_router(engine: Any, model: TextModel, *, sla: SlaConfig | None = None,
                      kb: KnowledgeBase | None = None) -> tuple[IntakeRouter, TicketStore]:
    cfg = await asyncio.to_thread(load_config, DEFAULTS_DIR, {})
    sla = cfg.sla if sla is None else sla
    from zoneinfo import ZoneInfo
    tz = await asyncio.to_thread(ZoneInfo, "Asia/Shanghai")
    store = TicketStore(engine)
    if kb is None:
        kb = KnowledgeBase(await asyncio.to_thread(load_articles, KB))
    router = IntakeRouter(
        classifier=Classifier(ClassifyRules(), model), units=cfg.units,
        gazetteer=Gazetteer(cfg.units), calendar=WorkCalendar(sla.calendar, tz),
        sla=sla, create_ticket=store.create, kb=kb)
    return router, store


async def test_an_outage_becomes_one_ticket_with_deadlines_and_reasons(engine_factory, model) -> None:  # type: ignore[no-untyped-def]
    router, store = await make_router(await engine_factory(), model)
    water = intake(1, "幸福小区3栋从昨天晚上开始停水，到现在还没来水，家里有老人。",
                   title="停水")
    await router.handle(water)
    await router.handle(water)                  # redelivered by the stream
    ticket = await store.by_intake(water.intake_id)
    assert ticket is not None and router.routed == 1
    assert ticket.unit_id == "city.water"
    assert ticket.urgency is Urgency.basic_living
    # 24 hours for basic-living needs (sla.yaml), from acceptance.
    assert ticket.handle_by is not None
    assert ticket.handle_by.astimezone(UTC) == datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    assert ticket.explanation["classification"] and ticket.explanation["routing"]["explain"]
    # Routed, not yet dispatched by the office: the citizen reads 已受理 off the order.
    assert await store.citizen_status(water.acceptance_no) == "accepted"


async def test_a_consultation_carries_knowledge_base_answers(engine_factory, model) -> None:  # type: ignore[no-untyped-def]
    router, store = await make_router(await engine_factory(), model)
    question = intake(2, "请问租房能提取公积金吗？需要带哪些材料？", title="咨询公积金提取")
    await router.handle(question)
    ticket = await store.by_intake(question.intake_id)
    assert ticket is not None and ticket.type is DemandType.consultation
    assert ticket.explanation["kb"][0]["id"] == "hf-rent"


async def test_nothing_recognisable_goes_to_manual_dispatch(engine_factory, model) -> None:  # type: ignore[no-untyped-def]
    router, store = await make_router(await engine_factory(), model)
    vague = intake(3, "😀😀😀")
    await router.handle(vague)
    ticket = await store.by_intake(vague.intake_id)
    assert ticket is not None and ticket.unit_id is None
    assert ticket.explanation["routing"]["rule"] == "manual"
    assert router.manual == 1 and await store.citizen_status(vague.acceptance_no) == "accepted"


@pytest.mark.parametrize("database_factory", ["sqlite"], indirect=True)
async def test_a_deadline_past_the_calendar_is_left_to_the_dispatcher_in_error_mode(engine_factory, model) -> None:  # type: ignore[no-untyped-def]
    strict = SlaConfig.model_validate({"calendar": {"uncovered_years": "error"}})
    router, store = await make_router(await engine_factory(), model, sla=strict)
    late = intake(4, "小区门口路灯不亮，晚上很黑，请尽快维修。",
                  at=datetime(2026, 12, 28, 2, 0, tzinfo=UTC))
    await router.handle(late)
    ticket = await store.by_intake(late.intake_id)
    assert ticket is not None and ticket.handle_by is None
    assert "2027" in ticket.explanation["deadline"] and not ticket.deadline_provisional


async def test_a_deadline_into_2027_is_computed_and_provisional_on_the_order(engine_factory, model) -> None:  # type: ignore[no-untyped-def]
    router, store = await make_router(await engine_factory(), model)
    received = datetime(2026, 12, 29, 2, 0, tzinfo=UTC)      # Tuesday 10:00 in Beijing
    late = intake(4, "小区门口路灯不亮，晚上很黑，请尽快维修。", at=received)
    await router.handle(late)
    ticket = await store.by_intake(late.intake_id)
    assert ticket is not None and ticket.handle_by is not None
    assert ticket.deadline_provisional and ticket.deadlines_from == received
    # Routing keeps deadlining: the limit runs through New Year 2027 on the rules' calendar.
    assert ticket.handle_by > datetime(2027, 1, 1, tzinfo=UTC)
    assert "临时期限" in ticket.explanation["deadline"]
    assert "2027" in ticket.explanation["deadline"]
    # Before December the same demand is final: nothing flagged, no note.
    early = intake(5, "小区门口路灯不亮，晚上很黑，请尽快维修。",
                   at=datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    await router.handle(early)
    final = await store.by_intake(early.intake_id)
    assert final is not None and not final.deadline_provisional
    assert "deadline" not in final.explanation


@pytest.mark.parametrize("database_factory", ["sqlite"], indirect=True)
async def test_knowledge_base_answers_are_valid_on_the_beijing_date(engine_factory, model) -> None:  # type: ignore[no-untyped-def]
    from_new_year = Article(id="hf-2027", title="2027 年起租房提取公积金新规定",
                            body="自 2027 年 1 月 1 日起，租房提取住房公积金每年可提取两次。",
                            unit="city.housing_fund", keywords=("公积金", "租房提取"),
                            valid_from=date(2027, 1, 1))
    router, store = await make_router(await engine_factory(), model,
                                         kb=KnowledgeBase([from_new_year]))
    # 00:30 on January 1 in Beijing is still December 31 in UTC.
    question = intake(6, "请问租房能提取公积金吗？需要带哪些材料？", title="咨询公积金提取",
                      at=datetime(2026, 12, 31, 16, 30, tzinfo=UTC))
    await router.handle(question)
    ticket = await store.by_intake(question.intake_id)
    assert ticket is not None and ticket.type is DemandType.consultation
    assert [a["id"] for a in ticket.explanation["kb"]] == ["hf-2027"]


async def test_a_batch_makes_one_ticket_per_intake_in_one_go(engine_factory, model) -> None:  # type: ignore[no-untyped-def]
    router, store = await make_router(await engine_factory(), model)
    router.create_tickets = store.create_many
    batch = [intake(10 + n, f"幸福小区{n}栋停水了") for n in range(5)]
    await router.handle_many(batch)
    await router.handle_many(batch[:2])         # redelivered
    assert router.routed == 5
    numbers = {(await store.by_intake(i.intake_id)).number for i in batch}  # type: ignore[union-attr]
    assert len(numbers) == 5


async def test_the_same_citizen_again_is_linked_as_a_repeat(engine_factory, model) -> None:  # type: ignore[no-untyped-def]
    router, store = await make_router(await engine_factory(), model)
    router.earlier_orders = store.earlier_orders
    first = intake(20, "幸福小区3栋旁边的工地每天晚上十一点以后还在施工，噪音太大睡不着。",
                   title="噪音扰民")
    again = intake(21, "上次反映的幸福小区3栋旁工地夜间施工噪音还是没人管，晚上十一点后仍在施工。",
                   title="噪音扰民")
    await router.handle(first)
    await router.handle(again)
    ticket_1 = await store.by_intake(first.intake_id)
    ticket_2 = await store.by_intake(again.intake_id)
    assert ticket_1 is not None and ticket_2 is not None
    assert ticket_1.repeat_of is None and ticket_2.repeat_of == ticket_1.number
    assert "重复诉求" in ticket_2.explanation["repeats"][0]


async def test_other_citizens_at_the_same_place_are_linked_as_related(engine_factory, model) -> None:  # type: ignore[no-untyped-def]
    """Different citizens, same address, similar problem: related (hot-spot material); a
    different problem at the same address, or the same problem elsewhere, is not."""
    router, store = await make_router(await engine_factory(), model)
    router.earlier_orders = store.earlier_orders
    router.create_tickets = store.create_many
    text = "幸福路12号小区门口的下水道堵塞，污水漫到路面，臭味很大，请尽快疏通。"
    first = intake(30, text, address="幸福路12号")
    await router.handle_many([first])

    def other(n: int, body: str, address: str) -> Intake:
        return intake(n, body, address=address).model_copy(
            update={"contact": Contact(name="王先生", phone=f"1370000{n:04d}")})

    same = other(31, "幸福路12号门口下水道堵塞了，污水漫到路面上，很臭，请尽快疏通。", "幸福路12号")
    unlike = other(32, "幸福路12号小区的物业费收费标准不透明，要求公示。", "幸福路12号")
    elsewhere = other(33, text, "和平路8号")
    await router.handle_many([same, unlike, elsewhere])
    t1, t_same, t_unlike, t_elsewhere = [await store.by_intake(i.intake_id)
                                         for i in (first, same, unlike, elsewhere)]
    assert t1 is not None and t_same is not None
    assert t_same.related_to == t1.number and t_same.repeat_of is None
    assert any("相关诉求" in line and "幸福路12号" in line
               for line in t_same.explanation["repeats"])
    assert t_unlike is not None and t_unlike.related_to is None
    assert t_elsewhere is not None and t_elsewhere.related_to is None


@pytest.mark.parametrize("database_factory", ["postgresql"], indirect=True)
async def test_awkward_intakes_still_become_tickets(engine_factory, model) -> None:  # type: ignore[no-untyped-def]
    """Bad input the channels let through (a mail body with NUL bytes, emoji, mixed scripts,
    a huge text, no contact details, an unknown place) makes a ticket, in one batch, on the
    real PostgreSQL (which refuses NUL in text)."""
    router, store = await make_router(await engine_factory(), model)
    router.create_tickets = store.create_many
    router.earlier_orders = store.earlier_orders
    awkward = [
        intake(40, "停水\x00了\x00三天", title="停\x00水"),
        intake(41, "😡😡😡 噪音 noise ноль 소음 " * 3),
        intake(42, "路灯坏了" * 20000, street="不存在的街道"),
        intake(43, "").model_copy(update={"contact": Contact()}),
    ]
    await router.handle_many(awkward)
    tickets = [await store.by_intake(i.intake_id) for i in awkward]
    assert all(t is not None for t in tickets)
    assert tickets[0] is not None and "\x00" not in tickets[0].text + tickets[0].title
    assert tickets[0].text == "停水了三天"


async def test_a_calls_transcript_is_on_its_ticket(engine_factory, model) -> None:  # type: ignore[no-untyped-def]
    from channels.intake import CallDetails
    router, store = await make_router(await engine_factory(), model)
    call = intake(50, "路灯不亮", title="路灯").model_copy(update={
        "channel": "phone", "call": CallDetails(call_id="1795399483.0", seat_id="1001",
                                                agent_summary="路灯不亮",
                                                transcript="我家门口的路灯坏了三天了")})
    await router.handle(call)
    ticket = await store.by_intake(call.intake_id)
    assert ticket is not None
    assert ticket.text == "路灯不亮\n\n【通话转写】\n我家门口的路灯坏了三天了"
