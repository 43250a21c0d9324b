"""The PBX simulator's ``[incoming-asr]`` call streams its speech to the real AudioSocket
server, which files it under the call announced on AMI (the same path Asterisk takes)."""

from __future__ import annotations

import asyncio
import socket

from asr.server import CallRef
from telephony.asr_tap import conversation_tap, new_tap_uuid
from telephony.events import VariableSet, parse_event
from telephony.simulator.audiosocket_client import AudioSocketSource
from telephony.simulator.server import PbxSimulator
from tests.asr.conftest import RigFactory, Trace11
from tests.telephony.simulator.ami_client import RawAmi, ami_client

TIME_SCALE = 10.0


async def _call_into_asr(ami: RawAmi) -> None:
    await ami.action("Originate", Channel="Local/talk@citizen", Context="incoming-asr",
                           Exten="12345", Priority="1", CallerID='"" <13800138011>',
                           Variable="SPEECH=citizen-ko,TALK=6", Async="true")


async def test_simulated_call_streams_the_wav_to_the_server(
        rig: RigFactory, trace11: Trace11) -> None:
    async with rig() as r, PbxSimulator(port=0, time_scale=TIME_SCALE, seed=11) as pbx:
        pbx.dialplan.audiosocket = AudioSocketSource(trace11.wav, port=r.server.port)
        async with ami_client(pbx.port) as ami:
            await _call_into_asr(ami)
            async with asyncio.timeout(10):
                while True:      # the service's own parser and directory hook, as wired
                    msg = await ami.read()
                    event = parse_event(msg) if "Event" in msg else None
                    if isinstance(event, VariableSet):
                        r.calls.on_event(event)
                        varset = event
                    if msg.get("Application") == "AudioSocket":
                        assert msg["AppData"] == f"{varset.value},127.0.0.1:{r.server.port}"
                    if msg.get("Event") == "QueueCallerJoin":   # AudioSocket() returned
                        break
            stream = await r.recognizer.next_closed()
    # The whole file, every sample in order (the simulator has the file's last 22 samples
    # too: it sends the short last frame Asterisk's Playback cut).
    assert bytes(stream.pcm) == trace11.wav
    assert stream.stream_id == varset.value and stream.finished
    assert r.segments[0][0] == CallRef(varset.linkedid, varset.uniqueid, "ivr")
    # The simulator ended it at its recorded AudioSocket time (9.346 s), as Asterisk's
    # peer did: EOF, not a refusal.
    assert r.server.stats.ended == {"eof": 1}


async def test_unreachable_server_hangs_the_caller_up(trace11: Trace11) -> None:
    """app_audiosocket.c returns -1 when it cannot connect: Asterisk hangs the channel up."""
    with socket.socket() as s:            # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with PbxSimulator(port=0, time_scale=TIME_SCALE, seed=11) as pbx:
        pbx.dialplan.audiosocket = AudioSocketSource(trace11.wav, port=port)
        async with ami_client(pbx.port) as ami:
            await _call_into_asr(ami)
            async with asyncio.timeout(10):
                while True:
                    msg = await ami.read()
                    assert msg.get("Event") != "QueueCallerJoin"
                    if msg.get("Event") == "Hangup" and "incoming-asr" in msg.get("Context", ""):
                        break


async def test_conversation_tap_streams_the_callers_speech(
        rig: RigFactory, trace11: Trace11) -> None:
    """The service's tap Originate (ChanSpy into AudioSocket) streams until the caller
    hangs up; the stream is filed under the caller's call, not the tap's Local channel."""
    async with rig() as r, PbxSimulator(port=0, time_scale=TIME_SCALE, seed=5) as pbx:
        pbx.dialplan.audiosocket = AudioSocketSource(trace11.wav, port=r.server.port)
        async with ami_client(pbx.port) as ami:
            # A caller who waits in the queue and hangs up after 8 s.
            await ami.action("Originate", Channel="Local/talk@citizen-impatient",
                             Context="incoming", Exten="12345", Priority="1",
                             CallerID='"" <13800138012>', Variable="PATIENCE=8", Async="true")
            async with asyncio.timeout(10):
                join = await _event(ami, "QueueCallerJoin")
                stream_uuid = new_tap_uuid()
                call = CallRef(join["Linkedid"], join["Uniqueid"], "conversation")
                r.calls.note(stream_uuid, call)        # before the Originate, as wired
                ami.writer.write(conversation_tap(join["Uniqueid"], stream_uuid)
                                 .to_wire("tap-1").encode())
                await ami.writer.drain()
                start = await _event(ami, "ChanSpyStart")
                assert start["SpyeeUniqueid"] == join["Uniqueid"]
                while True:
                    msg = await ami.read()
                    event = parse_event(msg) if "Event" in msg else None
                    if isinstance(event, VariableSet):   # the tap's own VarSet
                        assert "@asr-tap-" in event.channel
                        r.calls.on_event(event)
                    if msg.get("Event") == "ChanSpyStop":
                        break
            stream = await r.recognizer.next_closed()
    assert bytes(stream.pcm) == trace11.wav and stream.stream_id == stream_uuid
    assert {c for c, _ in r.segments} == {call}
    assert r.server.stats.ended == {"eof": 1}


async def _event(ami: RawAmi, name: str) -> dict[str, str]:
    while True:
        msg = await ami.read()
        if msg.get("Event") == name:
            return msg
