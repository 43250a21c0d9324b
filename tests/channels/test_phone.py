"""Phone intakes from agents' summaries, against the real call tracker driven by the recorded
Asterisk sessions (01 answered, 05 blind transfer) and the in-memory gateway."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from channels.phone import (
    CALLBACK_FORMAT,
    AgentSummary,
    PhoneIntake,
    PhoneIntakeError,
    TrackerCalls,
    caller_phone,
    draft_from_call,
    parse_summary,
)
from db.engine import migrate, open_engine
from httpkit.errors import api_error
from telephony.model import CallPhase, CallRecord
from telephony.seats import SeatSpec
from telephony.store import CallStore
from tests.channels.fakes import MemoryGateway
from tests.telephony.tracker_harness import T0, Harness, make_harness

CALL_01 = "1795398663.0"          # trace 01: 13800138000 answered by seat 1001, 1.010-4.512 s
CALL_05 = "1795399329.0"          # trace 05: seat 1001 blind-transfers at 4.111, caller on to 8.112
SUMMARY = AgentSummary(title="路灯不亮", content="市民反映幸福路 12 号门口路灯连续三晚不亮，请尽快维修。",
                       name="张女士", district="西湖区", street="北山街道", address="幸福路 12 号")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def desk(h: Harness, gateway: MemoryGateway, clock: Clock, **kwargs: Any) -> PhoneIntake:
    """The service wired as the composition root wires it: subscribed before any event."""
    def interface_of(seat_id: str) -> str | None:
        seat = h.board.by_seat_id(seat_id)
        return None if seat is None else seat.interface

    phone = PhoneIntake(TrackerCalls(h.tracker, interface_of), gateway, clock, **kwargs)
    h.tracker.subscribe(phone.remember)
    return phone


async def harness(seats: list[SeatSpec] | None = None) -> Harness:
    # The statistics read the time zone database from disk: not on the loop.
    return await asyncio.to_thread(make_harness, 2.0, seats)


async def replay(h: Harness, name: str, until: float | None = None) -> None:
    """Feed a recorded session (read from disk: in a thread, the loop must not block)."""
    await asyncio.to_thread(h.replay, name, until)


def record(**overrides: Any) -> CallRecord:
    values: dict[str, Any] = {
        "call_id": "1795400000.5", "linkedid": "1795400000.1", "queue": "12345",
        "caller_number": "13800138000", "caller_channel": "PJSIP/trunk-00000009",
        "joined_at": T0, "phase": CallPhase.CONNECTED, "seat": "1001",
        "answered_at": T0 + timedelta(seconds=5)}
    return CallRecord(**(values | overrides))


async def test_summary_during_the_call_becomes_one_phone_intake() -> None:
    h, gateway = await harness(), MemoryGateway()
    phone = desk(h, gateway, Clock(T0 + timedelta(seconds=2)))
    await replay(h, "01-answered", 2.0)
    assert h.tracker.call_of_seat("Local/1001@seats/n") is not None     # talking now

    accepted = await phone.submit_summary("1001", None, SUMMARY)

    assert not accepted.duplicate
    [intake] = gateway.intakes
    assert intake.acceptance_no == accepted.acceptance_no
    assert intake.channel == "phone" and intake.external_id == CALL_01
    assert intake.contact.phone == "13800138000" and intake.contact.name == "张女士"
    assert intake.received_at == T0 + timedelta(seconds=1.008)          # QueueCallerJoin
    assert intake.title == "路灯不亮" and intake.text == SUMMARY.content
    assert (intake.location.district, intake.location.street, intake.location.address) == (
        "西湖区", "北山街道", "幸福路 12 号")
    assert intake.source_ref == f"ami:call/{CALL_01}"
    assert intake.call is not None
    assert (intake.call.call_id, intake.call.seat_id, intake.call.queue) == (CALL_01, "1001",
                                                                           "12345")
    assert intake.call.agent_summary == SUMMARY.content
    assert intake.call.transcript is None and intake.call.recording is None


async def test_the_calls_transcript_is_attached_to_the_intake() -> None:
    """Speech recognition's words for the call (by Linkedid) travel with the intake."""
    asked: list[str] = []

    async def transcript_of(call_id: str) -> str | None:
        asked.append(call_id)
        return "我家楼下的路灯坏了\n幸福路十二号"

    h, gateway = await harness(), MemoryGateway()
    phone = desk(h, gateway, Clock(T0 + timedelta(seconds=2)), transcript_of=transcript_of)
    await replay(h, "01-answered", 2.0)
    await phone.submit_summary("1001", None, SUMMARY)
    [intake] = gateway.intakes
    assert asked == [CALL_01]
    assert intake.call is not None and intake.call.transcript == "我家楼下的路灯坏了\n幸福路十二号"


async def test_a_second_summary_for_the_same_call_is_a_duplicate_with_the_same_number() -> None:
    h, gateway = await harness(), MemoryGateway()
    phone = desk(h, gateway, Clock(T0 + timedelta(seconds=2)))
    await replay(h, "01-answered", 2.0)
    first = await phone.submit_summary("1001", None, SUMMARY)
    corrected = SUMMARY.model_copy(update={"content": "更正：路灯在幸福路 14 号。"})

    again = await phone.submit_summary("1001", CALL_01, corrected)

    assert again.duplicate and again.acceptance_no == first.acceptance_no
    assert [i.text for i in gateway.intakes] == [SUMMARY.content]      # not overwritten


async def test_summary_typed_in_wrap_up_finds_the_call_that_just_ended() -> None:
    h, gateway = await harness(), MemoryGateway()
    clock = Clock(T0 + timedelta(minutes=5))
    phone = desk(h, gateway, clock)
    await replay(h, "01-answered")
    assert h.tracker.get(CALL_01) is None and h.tracker.call_of_seat("Local/1001@seats/n") is None

    await phone.submit_summary("1001", None, SUMMARY)
    assert [i.external_id for i in gateway.intakes] == [CALL_01]

    clock.now = T0 + timedelta(hours=2)           # after a break: the call must be named
    with pytest.raises(PhoneIntakeError) as stale:
        await phone.submit_summary("1001", None, SUMMARY)
    assert stale.value.code == "no_call" and api_error(stale.value).status == 404
    assert "请指定通话编号" in stale.value.message
    named = await phone.submit_summary("1001", CALL_01, SUMMARY)
    assert named.duplicate


async def test_after_a_blind_transfer_the_seat_still_finds_its_call() -> None:
    seats = [SeatSpec("1001", "坐席1001", "Local/1001@seats-long/n")]
    h, gateway = await harness(seats), MemoryGateway()
    phone = desk(h, gateway, Clock(T0 + timedelta(seconds=6)))
    await replay(h, "05-blind-transfer", 6.0)
    # The seat is free, the caller still talks to the department: the tracker has no call
    # for the seat, but the call is not over.
    assert h.tracker.call_of_seat("Local/1001@seats-long/n") is None
    live = h.tracker.get(CALL_05)
    assert live is not None and live.phase is CallPhase.CONNECTED

    await phone.submit_summary("1001", None, SUMMARY)

    assert [i.external_id for i in gateway.intakes] == [CALL_05]


async def test_another_seat_cannot_submit_a_summary_for_the_call() -> None:
    h, gateway = await harness(), MemoryGateway()
    phone = desk(h, gateway, Clock(T0 + timedelta(seconds=2)))
    await replay(h, "01-answered", 2.0)

    with pytest.raises(PhoneIntakeError) as refused:
        await phone.submit_summary("1002", CALL_01, SUMMARY)

    assert refused.value.code == "not_your_call" and api_error(refused.value).status == 403
    assert gateway.intakes == []


async def test_a_seat_without_any_call_and_an_unknown_call_id_are_no_call() -> None:
    h, gateway = await harness(), MemoryGateway()
    phone = desk(h, gateway, Clock(T0))
    await replay(h, "01-answered")
    for seat, call_id in (("1002", None), ("1001", "1795000000.9")):
        with pytest.raises(PhoneIntakeError) as missing:
            await phone.submit_summary(seat, call_id, SUMMARY)
        assert missing.value.code == "no_call"
    assert gateway.intakes == []


async def test_gateway_down_is_a_typed_503_and_nothing_is_promised() -> None:
    h, gateway = await harness(), MemoryGateway()
    phone = desk(h, gateway, Clock(T0 + timedelta(seconds=2)))
    await replay(h, "01-answered", 2.0)
    gateway.fail = True

    with pytest.raises(PhoneIntakeError) as down:
        await phone.submit_summary("1001", None, SUMMARY)

    assert down.value.code == "intake_unavailable" and api_error(down.value).status == 503
    gateway.fail = False
    assert not (await phone.submit_summary("1001", None, SUMMARY)).duplicate


async def test_memory_of_ended_calls_is_bounded() -> None:
    gateway, clock = MemoryGateway(), Clock(T0 + timedelta(minutes=1))
    phone = PhoneIntake(_NoLiveCalls(), gateway, clock, remembered=2)
    for n, seat in enumerate(("1001", "1002", "2001")):
        phone.remember(record(call_id=f"c{n}", linkedid=f"c{n}", seat=seat,
                              phase=CallPhase.ENDED, ended_at=T0 + timedelta(seconds=30)))
    with pytest.raises(PhoneIntakeError):
        await phone.submit_summary("1001", None, SUMMARY)          # forgotten: oldest
    await phone.submit_summary("2001", None, SUMMARY)
    assert [i.external_id for i in gateway.intakes] == ["c2"]


async def test_the_call_can_be_named_by_its_linkedid() -> None:
    gateway = MemoryGateway()
    phone = PhoneIntake(_NoLiveCalls(), gateway, Clock(T0))
    phone.remember(record())

    await phone.submit_summary("1001", "1795400000.1", SUMMARY)

    assert gateway.intakes[0].external_id == "1795400000.1"


async def test_after_a_restart_a_named_call_is_found_in_the_call_store(tmp_path: Path) -> None:
    ended = record(phase=CallPhase.ENDED, ended_at=T0 + timedelta(minutes=3))
    url = f"sqlite+aiosqlite:///{tmp_path / 'db' / 'hotline.db'}"
    async with open_engine(url) as engine:
        await migrate(engine)
        store = CallStore(engine)
        await store.flush([ended])                 # what the call writer did before the restart
        gateway = MemoryGateway()
        phone = PhoneIntake(_NoLiveCalls(), gateway, Clock(T0), stored_call=store.get)

        with pytest.raises(PhoneIntakeError):      # nothing in memory: the call must be named
            await phone.submit_summary("1001", None, SUMMARY)
        await phone.submit_summary("1001", ended.call_id, SUMMARY)
        with pytest.raises(PhoneIntakeError) as refused:
            await phone.submit_summary("1002", ended.call_id, SUMMARY)

    assert [i.external_id for i in gateway.intakes] == [ended.linkedid]
    assert refused.value.code == "not_your_call"


class _NoLiveCalls:
    def get(self, call_id: str) -> CallRecord | None:
        return None

    def call_of_seat(self, seat_id: str) -> CallRecord | None:
        return None


# -- the draft ----------------------------------------------------------------------------
@pytest.mark.parametrize("withheld", ["", "anonymous", "Anonymous", "unknown", "<unknown>"])
def test_withheld_caller_number_gives_no_phone_or_the_callback_number(withheld: str) -> None:
    call = record(caller_number=withheld)
    assert draft_from_call(call, SUMMARY, T0, seat_id="1001").contact.phone is None
    with_callback = SUMMARY.model_copy(update={"callback_phone": "13900139000"})
    draft = draft_from_call(call, with_callback, T0, seat_id="1001")
    assert draft.contact.phone == "13900139000" and "回拨电话" not in draft.text


def test_callback_on_another_number_reaches_the_text_caller_stays_contact() -> None:
    _, summary = parse_summary({"content": "噪音扰民", "callback_phone": "139 0013 9000"})
    draft = draft_from_call(record(), summary, T0, seat_id="1001")
    assert draft.contact.phone == "13800138000"
    assert draft.text.endswith("回拨电话：13900139000")
    same = draft_from_call(record(caller_number="+8613900139000"), summary, T0, seat_id="1001")
    assert same.contact.phone == "13900139000" and "回拨电话" not in same.text


def test_draft_refuses_a_call_the_seat_did_not_answer() -> None:
    for call in (record(seat="1002"), record(seat=None, phase=CallPhase.WAITING)):
        with pytest.raises(PhoneIntakeError) as refused:
            draft_from_call(call, SUMMARY, T0, seat_id="1001")
        assert refused.value.code == "not_your_call"


def test_draft_times_are_utc_and_text_is_cleaned() -> None:
    summary = AgentSummary(content="第一行\r\n第二行\x00", title="标题\n换行")
    draft = draft_from_call(record(), summary, datetime(2026, 11, 23, 9, 0), seat_id="1001")
    assert draft.received_at == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert draft.text == "第一行\n第二行" and draft.title == "标题 换行"


@pytest.mark.parametrize(("raw", "expected"), [
    ("13800138000", "13800138000"), ("+8613800138000", "13800138000"),
    ("057188888888", "0571-88888888"), ("+14155550100", "+14155550100"),
    ("10086", "10086"), ("anonymous", None), ("", None), (None, None), ("abc", None),
])
def test_caller_phone(raw: str | None, expected: str | None) -> None:
    assert caller_phone(raw) == expected


# -- validation ---------------------------------------------------------------------------
def test_summary_request_names_every_wrong_field_in_chinese() -> None:
    with pytest.raises(PhoneIntakeError) as invalid:
        parse_summary({"content": "x" * 5001, "title": 12, "callback_phone": "12345",
                       "district": "区" * 51, "call_id": "bad id!", "urgent": True})
    assert invalid.value.code == "invalid_field" and api_error(invalid.value).status == 422
    assert invalid.value.details["fields"] == {
        "content": "诉求内容不能超过 5000 个字", "title": "标题应为文字",
        "callback_phone": CALLBACK_FORMAT, "district": "所在区县不能超过 50 个字",
        "call_id": "通话编号格式不正确", "urgent": "不支持的字段：urgent"}


@pytest.mark.parametrize("content", [None, "", "   ", "\x00\x01"])
def test_summary_content_is_required(content: str | None) -> None:
    body = {} if content is None else {"content": content}
    with pytest.raises(PhoneIntakeError) as invalid:
        parse_summary(body)
    assert invalid.value.details["fields"] == {"content": "请填写诉求内容"}


def test_summary_request_splits_the_call_id_and_normalizes_the_callback() -> None:
    call_id, summary = parse_summary({"content": " 内容 ", "call_id": "1795398663.0",
                                      "callback_phone": "１３９-００１３-９０００", "name": None})
    assert call_id == "1795398663.0"
    assert summary == AgentSummary(content="内容", callback_phone="13900139000")
    assert parse_summary({"content": "内容"})[0] is None
