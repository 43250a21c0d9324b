"""Transcript segments to their destinations, on the real Redis (pub/sub) and the real
databases: partials and finals live on the call's channel, finals stored in order with word
timings, the whole transcript for the phone intake, and a database outage loses nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from asr.metrics import TranscriptSinkCollector
from asr.ports import Segment, Word
from asr.server import CallRef
from asr.sink import CallTranscripts
from channels.durable import NO_METADATA_LOOKUP
from tests.hotline.conftest import (  # noqa: F401 (fixtures)
    database_factory,
    engine_factory,
    pg_database_factory,
    sqlite_database_factory,
)

IVR = CallRef(linkedid="1795399483.0", uniqueid="1795399483.0", purpose="ivr")
TALK = CallRef(linkedid="1795399483.0", uniqueid="1795399483.0", purpose="conversation")


def final(stream: str, seq: int, text: str, start: float) -> Segment:
    words = tuple(Word(w, start + i * 0.4, start + i * 0.4 + 0.3, 0.9)
                  for i, w in enumerate(text.split()))
    return Segment(stream, text, True, words, start, words[-1].end if words else start, seq)


async def test_segments_go_live_and_finals_onto_the_call(engine_factory: Any) -> None:  # noqa: F811
    engine: AsyncEngine = await engine_factory()
    redis = aioredis.Redis.from_url("redis://127.0.0.1:6379/0", **NO_METADATA_LOOKUP)
    prefix = "{t" + uuid.uuid4().hex[:8] + "}"
    hub = CallTranscripts(engine, redis, prefix)
    listener = redis.pubsub()
    try:
        await listener.subscribe(hub.channel(IVR.linkedid))
        await listener.get_message(timeout=1.0)             # the subscribe confirmation
        ivr = hub.sink_for(IVR)
        talk = hub.sink_for(TALK)
        await talk.segment(final("s-2", 1, "물이 안 나와요", 0.5))
        await ivr.segment(Segment("s-1", "수도", False, seq=0))
        await ivr.segment(final("s-1", 1, "수도 요금 문의", 0.2))
        await ivr.segment(final("s-1", 2, "", 3.0))         # silence: published, not stored
        got = []
        for _ in range(4):
            msg = None
            while msg is None:
                msg = await listener.get_message(ignore_subscribe_messages=True, timeout=1.0)
            got.append(json.loads(msg["data"]))
        assert [(g["purpose"], g["final"], g["text"]) for g in got] == [
            ("conversation", True, "물이 안 나와요"), ("ivr", False, "수도"),
            ("ivr", True, "수도 요금 문의"), ("ivr", True, "")]
        assert got[2]["words"][0] == {"word": "수도", "start": 0.2, "end": 0.5, "conf": 0.9}
        # IVR first, then the conversation.
        assert await hub.text_of(IVR.linkedid) == "수도 요금 문의\n물이 안 나와요"
        segs = await hub.segments_of(IVR.linkedid)
        assert [s["stream_id"] for s in segs] == ["s-2", "s-1"]
        assert segs[1]["words"][2]["word"] == "문의"
        assert await hub.text_of("no-such-call") is None
        assert hub.stats.segments == {"partial": 1, "final": 3}
        assert not hub.stats.errors
    finally:
        await listener.aclose()  # type: ignore[no-untyped-call]
        await redis.aclose()


async def test_a_database_outage_keeps_the_finals_until_it_returns(engine_factory: Any) -> None:  # noqa: F811
    engine: AsyncEngine = await engine_factory(migrated=False)    # no table yet: inserts fail
    hub = CallTranscripts(engine, None, "{x}")
    sink = hub.sink_for(IVR)
    await sink.segment(final("s-1", 1, "첫 번째", 0.0))
    assert await hub.text_of(IVR.linkedid) == "첫 번째"          # from memory
    assert hub.stats.errors == {"database": 1}
    from db.engine import migrate
    await migrate(engine)
    await sink.segment(final("s-1", 2, "두 번째", 2.0))
    assert await hub.text_of(IVR.linkedid) == "첫 번째\n두 번째"
    assert len(await hub.segments_of(IVR.linkedid)) == 2          # both stored, none twice


async def test_the_sink_counters_are_read_by_their_collector() -> None:
    hub = CallTranscripts(None, None, "{x}")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TranscriptSinkCollector(hub.stats))
    before = generate_latest(registry).decode()
    # Every series is there from the start, at 0, so rate() works from the first scrape.
    assert 'hotline_asr_segments_total{kind="final"} 0.0' in before
    assert 'hotline_asr_sink_errors_total{target="database"} 0.0' in before
    sink = hub.sink_for(IVR)
    await sink.segment(Segment("s-1", "수도", False, seq=0))
    await sink.segment(final("s-1", 1, "수도 요금", 0.0))
    await sink.segment(final("s-1", 2, "문의", 1.0))
    after = generate_latest(registry).decode()
    assert 'hotline_asr_segments_total{kind="final"} 2.0' in after
    assert 'hotline_asr_segments_total{kind="partial"} 1.0' in after
