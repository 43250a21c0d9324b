"""The AudioSocket server over real TCP: trace 11's byte stream, correlation, bad input.

The recogniser is a recording double (see conftest): these tests check what the server hands
to recognition, not Vosk.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from asr.audiosocket import audio_frame, dtmf_frame, encode, error_frame, hangup_frame
from asr.audiosocket import uuid_frame
from asr.metrics import AudioSocketCollector
from asr.server import CallRef
from tests.asr.conftest import RigFactory, Trace11

UUID = "0b1c2d3e-4f50-4172-8394-a5b6c7d8e9f0"
CALL = CallRef(linkedid="1700000000.1", uniqueid="1700000000.1", purpose="ivr")
FRAME = bytes(range(256)) + bytes(64)       # 320 bytes of recognisable audio


async def _expect_server_hangup(reader: asyncio.StreamReader) -> None:
    """The server tells Asterisk to end AudioSocket() (0x00) and closes."""
    async with asyncio.timeout(5):
        assert await reader.read() == hangup_frame()


async def test_trace11_stream_gives_the_wav_samples_of_its_call(
        rig: RigFactory, trace11: Trace11) -> None:
    varset, wav = trace11.varset, trace11.wav
    async with rig() as r:
        r.calls.on_event(varset)
        reader, writer = await r.connect()
        writer.write(trace11.stream)
        await writer.drain()
        writer.close()                     # like the recording: no hangup frame, just EOF
        stream = await r.recognizer.next_closed()
        await writer.wait_closed()
    assert stream.stream_id == varset.value == "da7bc2f8-ed5d-4086-9f5c-261ac8d64dfa"
    assert stream.sample_rate == 8000
    # The brief's "318 × 160 = 50880 vs 50759" miscounts: the stream holds 317 frames of 320
    # bytes and a last one of 34, 317 × 160 + 17 = 50737 samples, byte for byte the first 50737
    # of the WAV's 50759. The WAV's last partial 20 ms holds 39 samples (50759 - 317 × 160);
    # Asterisk passed on only 17 of them, 22 samples (2.75 ms) were dropped inside Asterisk
    # before the AudioSocket app read them (the Playback on the other Local leg ending; not
    # verifiable here). The server loses nothing: every sample in the byte stream arrives.
    assert len(stream.pcm) == 317 * 320 + 34
    assert bytes(stream.pcm) == wav[:50737 * 2]
    assert len(wav) // 2 - len(stream.pcm) // 2 == 22
    assert stream.finished
    assert r.segments == [(CallRef("1795399483.0", "1795399483.0", "ivr"), r.segments[0][1])]
    assert r.segments[0][1].text == "50737 samples" and r.segments[0][1].final
    assert r.server.stats.ended == {"eof": 1}
    assert r.server.stats.accepted == 1 and not r.server.stats.rejected
    assert abs(r.server.stats.audio_seconds - 50737 / 8000) < 1e-9


async def test_stream_waits_for_a_late_varset(rig: RigFactory) -> None:
    """The TCP connect may beat the AMI VarSet: the server waits correlate_seconds."""
    async with rig(correlate_seconds=2.0) as r:
        reader, writer = await r.connect()
        writer.write(uuid_frame(UUID) + audio_frame(FRAME))
        await writer.drain()
        await asyncio.sleep(0.1)
        assert r.recognizer.open_now == 0
        r.calls.note(UUID, CALL)
        writer.write(hangup_frame())
        await writer.drain()
        stream = await r.recognizer.next_closed()
        assert await reader.read() == b""     # the peer hung up: nothing sent back
        writer.close()
    assert bytes(stream.pcm) == FRAME and stream.finished
    assert r.server.stats.ended == {"hangup": 1}


@pytest.mark.parametrize(("data", "reason"), [
    (audio_frame(FRAME) + uuid_frame(UUID), "audio_before_uuid"),
    (dtmf_frame("1"), "no_uuid"),
    (b"\x05\x00\x02ab", "unknown_type"),
    (encode(0x01, bytes(15)), "bad_length"),
    (b"\x01\x00\x10" + bytes(7), "truncated"),
    (b"", "empty"),
])
async def test_refused_before_recognition(rig: RigFactory, data: bytes, reason: str) -> None:
    async with rig() as r:
        r.calls.note(UUID, CALL)
        reader, writer = await r.connect()
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        await _expect_server_hangup(reader)
        writer.close()
        assert r.server.stats.rejected == {reason: 1}
        assert r.recognizer.streams == [] and r.recognizer.open_now == 0


async def test_uuid_of_no_known_call_is_refused(rig: RigFactory) -> None:
    async with rig(correlate_seconds=0.2) as r:
        reader, writer = await r.connect()
        writer.write(uuid_frame(UUID) + audio_frame(FRAME))
        await writer.drain()
        await _expect_server_hangup(reader)
        writer.close()
        assert r.server.stats.rejected == {"unknown_call": 1}
        assert r.recognizer.streams == []


@pytest.mark.parametrize(("tail", "reason"), [
    (b"\x10\x00\x03abc", "bad_length"),                   # odd audio length
    (b"\x10\x00\x00", "bad_length"),                      # empty audio frame
    (b"\x42\x00\x01x", "unknown_type"),
    (struct.pack(">BH", 0x10, 320) + bytes(100), "truncated"),   # cut mid-frame
    (b"\x10\x01", "truncated"),                           # cut mid-header
    (error_frame(0x02), "asterisk_error"),
    (audio_frame(bytes(640), 16000), "sample_rate"),      # 0x12 slin16 to an 8 kHz recogniser
    (uuid_frame(UUID), "unexpected_uuid"),
    (encode(0x03, b"x"), "bad_dtmf"),
])
async def test_bad_frame_mid_stream_keeps_the_audio_so_far(
        rig: RigFactory, tail: bytes, reason: str) -> None:
    async with rig() as r:
        r.calls.note(UUID, CALL)
        reader, writer = await r.connect()
        writer.write(uuid_frame(UUID) + audio_frame(FRAME) * 2 + tail)
        await writer.drain()
        writer.write_eof()
        stream = await r.recognizer.next_closed()
        await _expect_server_hangup(reader)
        writer.close()
        assert bytes(stream.pcm) == FRAME * 2        # never silently truncated
        assert stream.finished                        # its final result is delivered
        assert r.server.stats.ended == {reason: 1}
        assert r.recognizer.open_now == 0


async def test_dtmf_is_reported_with_its_time_and_audio_continues(rig: RigFactory) -> None:
    async with rig() as r:
        r.calls.note(UUID, CALL)
        reader, writer = await r.connect()
        writer.write(uuid_frame(UUID) + audio_frame(FRAME) * 5 + dtmf_frame("5")
                     + audio_frame(FRAME) + hangup_frame())
        await writer.drain()
        stream = await r.recognizer.next_closed()
        writer.close()
    [(call, digit, at)] = r.dtmf
    assert (call, digit) == (CALL, "5") and at == pytest.approx(0.1)   # after 5 × 20 ms
    assert bytes(stream.pcm) == FRAME * 6
    assert r.server.stats.dtmf == 1 and r.server.stats.ended == {"hangup": 1}


async def test_idle_stream_is_closed(rig: RigFactory) -> None:
    async with rig(idle_seconds=0.3) as r:
        r.calls.note(UUID, CALL)
        reader, writer = await r.connect()
        writer.write(uuid_frame(UUID) + audio_frame(FRAME))
        await writer.drain()
        await _expect_server_hangup(reader)
        stream = await r.recognizer.next_closed()
        writer.close()
    assert bytes(stream.pcm) == FRAME and stream.finished
    assert r.server.stats.ended == {"idle": 1}


async def test_ivr_window_and_max_length_end_streams(rig: RigFactory) -> None:
    conversation = CallRef("1700000000.2", "1700000000.2", "conversation")
    other = "1f2e3d4c-5b6a-4789-8a9b-0c1d2e3f4a5b"
    async with rig(ivr_seconds=0.3, max_stream_seconds=0.6) as r:
        r.calls.note(UUID, CALL)
        r.calls.note(other, conversation)
        for stream_uuid in (UUID, other):
            reader, writer = await r.connect()
            writer.write(uuid_frame(stream_uuid))

            async def talk(writer: asyncio.StreamWriter = writer) -> None:
                for _ in range(100):                 # up to 2 s of audio, 20 ms apart
                    writer.write(audio_frame(FRAME))
                    await writer.drain()
                    await asyncio.sleep(0.02)

            async with asyncio.TaskGroup() as tg:
                talking = tg.create_task(talk())
                await _expect_server_hangup(reader)
                talking.cancel()
            writer.close()
            stream = await r.recognizer.next_closed()
            assert stream.finished and 0 < len(stream.pcm) < 100 * 320
    assert r.server.stats.ended == {"ivr_window": 1, "too_long": 1}


async def test_capacity_refuses_new_streams_only(rig: RigFactory) -> None:
    second = "1f2e3d4c-5b6a-4789-8a9b-0c1d2e3f4a5b"
    async with rig(max_streams=1) as r:
        r.calls.note(UUID, CALL)
        r.calls.note(second, CallRef("1700000000.3", "1700000000.3", "ivr"))
        _, w1 = await r.connect()
        w1.write(uuid_frame(UUID) + audio_frame(FRAME))
        await w1.drain()
        while r.recognizer.open_now == 0:
            await asyncio.sleep(0.01)
        reader2, w2 = await r.connect()
        w2.write(uuid_frame(second) + audio_frame(FRAME))
        await w2.drain()
        await _expect_server_hangup(reader2)
        w2.close()
        assert r.server.stats.rejected == {"capacity": 1}
        assert r.server.active_streams == 1
        w1.write(audio_frame(FRAME) + hangup_frame())   # the running one is untouched
        await w1.drain()
        stream = await r.recognizer.next_closed()
        w1.close()
    assert bytes(stream.pcm) == FRAME * 2 and stream.finished


async def test_slow_recogniser_holds_back_the_socket_and_close_frees_it(
        rig: RigFactory) -> None:
    """feed() blocking (full queue) is backpressure; closing the server mid-stream cancels
    the stream without finish() and still frees the recogniser."""
    async with rig() as r:
        r.recognizer.slow = True
        r.calls.note(UUID, CALL)
        _, writer = await r.connect()
        writer.write(uuid_frame(UUID) + audio_frame(FRAME) * 3)
        await writer.drain()
        while not r.recognizer.streams:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        stream = r.recognizer.streams[0]
        assert stream.pcm == b"" and r.server.active_streams == 1
        await r.server.close()
        writer.close()
        assert stream.closed and not stream.finished
    assert r.recognizer.open_now == 0


async def test_duplicate_uuid_is_refused(rig: RigFactory) -> None:
    async with rig() as r:
        r.calls.note(UUID, CALL)
        _, w1 = await r.connect()
        w1.write(uuid_frame(UUID))
        await w1.drain()
        while r.recognizer.open_now == 0:
            await asyncio.sleep(0.01)
        reader2, w2 = await r.connect()
        w2.write(uuid_frame(UUID))
        await w2.drain()
        await _expect_server_hangup(reader2)
        w2.close()
        w1.close()
        await r.recognizer.next_closed()
    assert r.server.stats.rejected == {"duplicate_uuid": 1}


async def test_metrics_show_refusals_ends_and_active_streams(rig: RigFactory) -> None:
    registry = CollectorRegistry(auto_describe=False)
    async with rig(correlate_seconds=0.1) as r:
        registry.register(AudioSocketCollector(r.server.stats))
        r.calls.note(UUID, CALL)
        reader, writer = await r.connect()
        writer.write(uuid_frame(UUID) + audio_frame(FRAME) * 50)   # one second
        await writer.drain()
        while r.server.active_streams == 0:
            await asyncio.sleep(0.01)
        assert "hotline_asr_streams_active 1.0" in generate_latest(registry).decode()
        reader2, writer2 = await r.connect()
        writer2.write(audio_frame(FRAME))
        await writer2.drain()
        await _expect_server_hangup(reader2)
        writer2.close()
        writer.write(hangup_frame())
        await writer.drain()
        await r.recognizer.next_closed()
        writer.close()
    text = generate_latest(registry).decode()
    assert 'hotline_asr_streams_rejected_total{reason="audio_before_uuid"} 1.0' in text
    assert 'hotline_asr_streams_ended_total{reason="hangup"} 1.0' in text
    assert "hotline_asr_streams_active 0.0" in text
    assert "hotline_asr_audio_seconds_total 1.0" in text


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a peer that crashed or a NAT that dropped us."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.mark.parametrize("before", ["nothing", "uuid", "audio"])
async def test_an_abruptly_closed_socket_is_one_line_counted_not_a_traceback(
        rig: RigFactory, caplog: pytest.LogCaptureFixture, before: str) -> None:
    """A peer that resets the connection is not a server error: one line, counted; the audio
    already received is still finished. Before, it was an ``internal_error`` with a
    traceback."""
    caplog.set_level(logging.INFO)
    data = {"nothing": b"", "uuid": uuid_frame(UUID),
            "audio": uuid_frame(UUID) + audio_frame(FRAME) + struct.pack(">BH", 0x10, 320)}
    async with rig() as r:
        r.calls.note(UUID, CALL)
        for _ in range(3):
            _, writer = await r.connect()
            writer.write(data[before])
            await writer.drain()
            await asyncio.sleep(0.05)
            _reset(writer)
            for _ in range(100):
                if sum(r.server.stats.ended.values()) + sum(r.server.stats.rejected.values()) \
                        and not r.server.active_streams:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
        stats = r.server.stats
        assert "internal_error" not in stats.ended
        assert sum(stats.ended.values()) + sum(stats.rejected.values()) == 3
        if before == "audio":
            assert stats.ended == {"reset": 3}
            assert all(s.finished and bytes(s.pcm) == FRAME for s in r.recognizer.streams)
    assert not [rec for rec in caplog.records if rec.exc_info or rec.levelno >= logging.ERROR]
