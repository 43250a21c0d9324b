"""The frame codec against Asterisk's real byte stream (trace 11), the call directory, the
conversation tap's AMI action."""

from __future__ import annotations

import asyncio

import pytest

from asr.audiosocket import AUDIO_RATES, Frame, FrameError, Kind, audio_frame, check
from asr.audiosocket import describe_error, dtmf_frame, encode, hangup_frame, parse_dtmf
from asr.audiosocket import parse_uuid, read_frame, uuid_frame
from asr.calls import AsrCallDirectory
from asr.server import CallRef
from telephony.asr_tap import conversation_tap
from telephony.errors import UnsafeActionValue
from telephony.events import VariableSet
from telephony.simulator.audiosocket_client import frames
from tests.asr.conftest import Trace11


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def _all(data: bytes) -> list[Frame]:
    reader, out = _reader(data), []
    while (frame := await read_frame(reader)) is not None:
        out.append(frame)
    return out


async def test_trace11_stream_decodes_to_uuid_and_slin_frames(trace11: Trace11) -> None:
    got = await _all(trace11.stream)
    assert parse_uuid(got[0].payload) == trace11.varset.value
    assert [f.kind for f in got[1:]] == [Kind.AUDIO] * 318
    assert [len(f.payload) for f in got[1:]] == [320] * 317 + [34]
    assert all(f.sample_rate == 8000 for f in got[1:])


def test_encoder_reproduces_asterisks_bytes(trace11: Trace11) -> None:
    """What the simulator sends is what Asterisk sent, for the samples Asterisk had."""
    sent = uuid_frame(trace11.varset.value) + b"".join(frames(trace11.wav[:50737 * 2]))
    assert sent == trace11.stream
    assert uuid_frame(trace11.varset.value.upper()) == trace11.stream[:19]


def test_frame_kinds_and_rates() -> None:
    assert hangup_frame() == b"\x00\x00\x00"
    assert dtmf_frame("#") == b"\x03\x00\x01#"
    assert parse_dtmf(b"7") == "7"
    assert audio_frame(b"\x01\x02", 16000)[0] == 0x12
    assert AUDIO_RATES[0x18] == 192000 and AUDIO_RATES[0x10] == 8000
    assert "主叫挂机" in describe_error(b"\x01")
    with pytest.raises(ValueError):
        encode(Kind.AUDIO, bytes(65536))


@pytest.mark.parametrize(("frame", "reason"), [
    (Frame(Kind.UUID, bytes(17)), "bad_length"),
    (Frame(Kind.DTMF, b"12"), "bad_length"),
    (Frame(Kind.AUDIO, b"abc"), "bad_length"),
    (Frame(Kind.AUDIO_48K, b""), "bad_length"),
    (Frame(Kind.HANGUP, b"x"), "bad_length"),
    (Frame(Kind.ERROR, b"xy"), "bad_length"),
    (Frame(0x02, b""), "unknown_type"),
    (Frame(0x19, b"ab"), "unknown_type"),
])
def test_check_refuses_lengths_the_kind_forbids(frame: Frame, reason: str) -> None:
    with pytest.raises(FrameError) as err:
        check(frame)
    assert err.value.reason == reason


async def test_cut_streams() -> None:
    with pytest.raises(FrameError, match="truncated|帧头") as err:
        await _all(b"\x10\x01")
    assert err.value.reason == "truncated"
    with pytest.raises(FrameError) as err:
        await _all(b"\x10\x01\x40" + bytes(10))
    assert err.value.reason == "truncated"
    assert await _all(b"") == []


async def test_directory_first_note_wins_and_waiters_wake() -> None:
    calls = AsrCallDirectory(keep=2)
    uuid = "da7bc2f8-ed5d-4086-9f5c-261ac8d64dfa"
    waiting = asyncio.ensure_future(calls.wait_for(uuid.upper(), 2.0))
    await asyncio.sleep(0)
    tap = CallRef("1.1", "1.1", "conversation")
    calls.note(uuid, tap)
    assert await waiting == tap
    # The tap channel's own VarSet does not re-file the stream under the Local channel.
    calls.on_event(VariableSet("Local/x@asr-tap-00000001;1", "9.9", "9.9", "ASR_UUID", uuid))
    assert calls.get(uuid) == tap
    lone = "33333333-3333-4333-8333-333333333333"     # a tap the service never announced
    calls.on_event(VariableSet("Local/x@asr-tap-00000002;2", "9.8", "9.8", "ASR_UUID", lone))
    assert calls.get(lone) is None
    assert await calls.wait_for("00000000-0000-4000-8000-000000000000", 0.05) is None
    assert await calls.wait_for("not-a-uuid", 1.0) is None
    calls.on_event(VariableSet("c", "2.2", "", "ASR_UUID", "11111111-1111-4111-8111-111111111111"))
    calls.on_event(VariableSet("c", "3.3", "3.0", "ASR_UUID",
                               "22222222-2222-4222-8222-222222222222"))
    assert len(calls) == 2 and calls.get(uuid) is None          # bounded: oldest forgotten
    assert calls.get("11111111-1111-4111-8111-111111111111") == CallRef("2.2", "2.2", "ivr")


def test_conversation_tap_action() -> None:
    action = conversation_tap("1795399483.0", "DA7BC2F8-ED5D-4086-9F5C-261AC8D64DFA")
    assert action.to_wire("a-1") == (
        "Action: Originate\r\n"
        "Channel: Local/da7bc2f8-ed5d-4086-9f5c-261ac8d64dfa@asr-tap/n\r\n"
        "Application: ChanSpy\r\n"
        "Data: 1795399483.0,qEou\r\n"
        "Variable: ASR_UUID=da7bc2f8-ed5d-4086-9f5c-261ac8d64dfa\r\n"
        "Async: true\r\n"
        "ActionID: a-1\r\n\r\n")
    assert not action.idempotent
    for uniqueid, uuid in [("1.2,qB", "da7bc2f8-ed5d-4086-9f5c-261ac8d64dfa"),
                           ("1.2\r\nAction: Hangup", "da7bc2f8-ed5d-4086-9f5c-261ac8d64dfa"),
                           ("1.2", "x\nAction: Hangup"), ("1.2", "not-a-uuid")]:
        with pytest.raises(UnsafeActionValue):
            conversation_tap(uniqueid, uuid)
