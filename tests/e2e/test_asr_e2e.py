"""Speech through the running service, as Asterisk drives it: a caller's IVR utterance is
streamed over AudioSocket by the PBX simulator, filed under the call announced on AMI,
recognised by the real Vosk model (the Korean one: no Mandarin model can be installed here),
published live for the screen-pop, stored on the call; after a seat answers, the service taps
the conversation; the agent's summary carries the transcript to the intake and the ticket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from asr.ports import Segment
from asr.server import CallRef
from channels.durable import NO_METADATA_LOOKUP
from telephony.simulator.audiosocket_client import AudioSocketSource
from telephony.simulator.server import PbxSimulator
from tests.asr.recog_fixtures import AUDIO, korean, ko_model, ko_model_dir  # noqa: F401
from tests.e2e.conftest import (
    ADMIN,
    AGENT_1001,
    AGENT_1002,
    eventually,
    free_port,
    wait_ready,
)

SECRET = "hotline-demo-secret"
QUEUES = ("12345", "enterprise")


async def test_transcript_segments_are_counted_on_metrics(service_factory) -> None:  # type: ignore[no-untyped-def]
    # The service's own sink (live recognition and recordings both deliver through it): its
    # counters once went to the process-global registry, which /metrics does not serve.
    async with PbxSimulator(secret=SECRET, queues=QUEUES, time_scale=1, seed=3) as sim:
        async with service_factory(sim.port) as svc:
            await wait_ready(svc)
            assert svc.hot.transcripts is not None
            call = CallRef("1795399483.0", "1795399483.0", "ivr")
            await svc.hot.transcripts.publish(call, Segment("s-1", "수도", False, seq=0))
            await svc.hot.transcripts.publish(call, Segment("s-1", "수도 요금", True, seq=1))
            status, text = await svc.get("/metrics", token=None)
            assert status == 200
            assert 'hotline_asr_segments_total{kind="final"} 1.0' in text
            assert 'hotline_asr_segments_total{kind="partial"} 1.0' in text
            assert 'hotline_asr_sink_errors_total{target="redis"} 0.0' in text


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_the_callers_words_reach_the_screen_pop_the_call_and_the_ticket(  # type: ignore[no-untyped-def]
        service_factory, ko_model_dir: Path, korean) -> None:  # noqa: F811
    expected = " ".join(s.text for s in korean.reference["ko-1"])
    assert expected, "the reference decode of ko-1.wav found no words"
    port = free_port()
    env = {"HOTLINE_ASR__ENABLED": "true", "HOTLINE_ASR__OPTIONAL": "false",
           "HOTLINE_ASR__MODEL_PATH": str(ko_model_dir), "HOTLINE_ASR__WORKERS": "2",
           "HOTLINE_ASR__AUDIOSOCKET__PORT": str(port)}
    source = await asyncio.to_thread(AudioSocketSource.from_wav, AUDIO / "ko-1.wav",
                                     port=port)
    async with PbxSimulator(secret=SECRET, queues=QUEUES, time_scale=1, seed=21) as sim:
        sim.dialplan.audiosocket = source
        async with service_factory(sim.port, extra_env=env) as svc:
            await wait_ready(svc)
            assert svc.hot.asr is not None and svc.hot.transcripts is not None
            redis = aioredis.Redis.from_url("redis://127.0.0.1:6379/0", **NO_METADATA_LOOKUP)
            live = redis.pubsub()
            prefix = "{" + svc.hot.config.channels.redis.key_prefix + "}"
            await live.psubscribe(f"{prefix}:transcript:*")
            try:
                sim.add_caller("13800138011", talk=8, context="incoming-asr")
                seen: list[dict[str, Any]] = []

                async def ivr_final() -> Any:
                    msg = await live.get_message(ignore_subscribe_messages=True, timeout=0.2)
                    if msg is not None:
                        seen.append(json.loads(msg["data"]))
                    return next((s for s in seen if s["final"] and s["purpose"] == "ivr"
                                 and s["text"]), None)
                first = await eventually(ivr_final, timeout=30, what="the IVR utterance")
                call_id = first["call_id"]
                # Partials came first, live, on the call's own channel.
                assert any(not s["final"] for s in seen[:seen.index(first)])
                stored = await eventually(
                    lambda: svc.hot.transcripts.segments_of(call_id), timeout=30,
                    what="the utterance on the call record")
                ivr = " ".join(s["text"] for s in stored if s["purpose"] == "ivr")
                # The pipeline gives what the same model gives on the same audio.
                assert ivr == expected
                _, scraped = await svc.get("/metrics", token=None)
                assert 'hotline_asr_segments_total{kind="final"}' in scraped

                # A seat answers: the service taps the conversation (ChanSpy → AudioSocket).
                await eventually(lambda: any(r.answered_at for r in svc.hot.tracker.active()),
                                 timeout=30, what="call answered")
                call = next(r for r in svc.hot.tracker.active() if r.answered_at)
                assert call.linkedid == call_id

                async def conversation() -> Any:
                    segs = await svc.hot.transcripts.segments_of(call_id)
                    return [s for s in segs if s["purpose"] == "conversation"] or None
                await eventually(conversation, timeout=30, what="the conversation's words")
                assert svc.hot.asr.tapper is not None and svc.hot.asr.tapper.sent >= 1

                token = AGENT_1001 if call.seat == "1001" else ADMIN
                # The agent reads the call's words; another seat may not.
                status, said = await svc.get(
                    f"/api/seats/{call.seat}/calls/{call_id}/transcript", token=token)
                assert status == 200 and said["call_id"] == call_id
                assert " ".join(s["text"] for s in said["segments"]
                                if s["purpose"] == "ivr") == expected
                other = "1002" if call.seat != "1002" else "1001"
                status, refused = await svc.get(
                    f"/api/seats/{other}/calls/{call_id}/transcript",
                    token=AGENT_1002 if other == "1002" else AGENT_1001)
                assert status == 403 and refused["error"] == "not_your_call"
                status, accepted = await svc.post(f"/api/seats/{call.seat}/intake", {
                    "title": "咨询", "content": "来电反映小区停水。"}, token=token)
                assert status == 201, accepted

                async def ticket() -> Any:
                    _, page = await svc.get("/api/tickets", token=ADMIN)
                    return next((t for t in page.get("tickets", [])
                                 if t["acceptance_no"] == accepted["acceptance_no"]), None)
                made = await eventually(ticket, timeout=30, what="the phone intake's ticket")
                assert "【通话转写】" in made["text"] and expected in made["text"]
            finally:
                await live.aclose()  # type: ignore[no-untyped-call]
                await redis.aclose()
        assert svc.hot.asr.recognizer.active_streams == 0
