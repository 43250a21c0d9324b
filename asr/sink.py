"""Where transcript segments go: live to the agent's screen-pop, finals onto the call record.

* **Live**: every segment (partials too) is published as JSON on the Redis channel
  ``<prefix>:transcript:<linkedid>``; the desk's websocket subscribes for the call its agent
  is on (Redis pub/sub fans out across service instances).
* **Call record**: final segments are stored in ``call_transcripts`` (with word timings),
  ordered, keyed by the call's Linkedid; :meth:`CallTranscripts.text_of` gives the whole
  transcript for the phone intake and the ticket.

A failure of either never stops recognition: it is logged and counted (``stats``, on
``/metrics`` through :class:`asr.metrics.TranscriptSinkCollector`), and the finals stay in a
bounded in-memory buffer until the database takes them.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from asr.metrics import SinkStats
from asr.ports import Segment, TranscriptSink
from asr.server import CallRef
from channels.intake import utc_now
from db.tables.asr import TranscriptSegmentRow

log = logging.getLogger(__name__)



def segment_json(call: CallRef, seg: Segment) -> dict[str, Any]:
    """A segment as published and as the API shows it."""
    return {"call_id": call.linkedid, "stream_id": seg.stream_id, "purpose": call.purpose,
            "final": seg.final, "seq": seg.seq, "text": seg.text, "start": seg.start,
            "end": seg.end, "words": [asdict(w) for w in seg.words]}


class CallTranscripts:
    """Makes the sink of each recognised stream (``sink_for`` is the AudioSocket server's
    ``sink_factory``) and answers "what was said on call X"."""

    def __init__(self, engine: AsyncEngine | None, redis: aioredis.Redis | None,
                 prefix: str, *, clock: Callable[[], datetime] = utc_now,
                 remembered_calls: int = 2000) -> None:
        self._engine = engine
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._limit = remembered_calls
        self.stats = SinkStats()
        # Finals not (yet) in the database, per call: the fallback of text_of.
        self._unsaved: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    def channel(self, call_id: str) -> str:
        """The Redis pub/sub channel of one call's live transcript."""
        return f"{self._prefix}:transcript:{call_id}"

    def sink_for(self, call: CallRef) -> TranscriptSink:
        """The sink of one stream of ``call``."""
        return _CallSink(self, call)

    async def publish(self, call: CallRef, seg: Segment) -> None:
        """Deliver one segment: live always, stored when final and not empty."""
        self.stats.segments["final" if seg.final else "partial"] += 1
        data = segment_json(call, seg)
        if self._redis is not None:
            try:
                await self._redis.publish(self.channel(call.linkedid),
                                          json.dumps(data, ensure_ascii=False))
            except (RedisError, OSError) as exc:
                self.stats.errors["redis"] += 1
                log.warning("转写片段未能实时推送（Redis）/ live transcript not published: %s",
                            exc)
        if seg.final and seg.text:
            await self._store(self._row(call, seg, seg.stream_id))

    def _row(self, call: CallRef, seg: Segment, stream_id: str) -> dict[str, Any]:
        """A ``call_transcripts`` row of one final segment."""
        return {"call_id": call.linkedid, "stream_id": stream_id, "purpose": call.purpose,
                "seq": seg.seq, "text": seg.text, "start_s": seg.start, "end_s": seg.end,
                "words": [asdict(w) for w in seg.words], "created_at": self._clock()}

    async def _store(self, row: dict[str, Any]) -> None:
        pending = self._unsaved.pop(row["call_id"], []) + [row]
        if self._engine is not None:
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(insert(TranscriptSegmentRow), pending)
                return
            except (SQLAlchemyError, OSError) as exc:
                self.stats.errors["database"] += 1
                log.warning("转写片段暂存内存，数据库不可用 / transcript kept in memory: %s", exc)
        self._unsaved[row["call_id"]] = pending
        while len(self._unsaved) > self._limit:
            self._unsaved.popitem(last=False)

    async def replace_stream(self, call: CallRef, stream_id: str,
                             segments: list[Segment]) -> None:
        """Store ``segments`` as the whole transcript of ``stream_id`` on ``call``, replacing
        what an earlier run stored for it (re-transcribing a recording adds nothing twice).
        Raises the database error: the caller reports it."""
        if self._engine is None:
            raise RuntimeError("no database: transcripts cannot be stored")
        rows = [self._row(call, seg, stream_id) for seg in segments if seg.final and seg.text]
        async with self._engine.begin() as conn:
            await conn.execute(delete(TranscriptSegmentRow).where(
                TranscriptSegmentRow.call_id == call.linkedid,
                TranscriptSegmentRow.stream_id == stream_id))
            if rows:
                await conn.execute(insert(TranscriptSegmentRow), rows)

    async def segments_of(self, call_id: str) -> list[dict[str, Any]]:
        """The call's final segments, in order (stored, then any not yet stored)."""
        rows: list[dict[str, Any]] = []
        if self._engine is not None:
            query = (select(TranscriptSegmentRow.__table__)
                     .where(TranscriptSegmentRow.call_id == call_id)
                     .order_by(TranscriptSegmentRow.id))
            try:
                async with self._engine.connect() as conn:
                    rows = [dict(r._mapping) for r in (await conn.execute(query)).all()]
            except (SQLAlchemyError, OSError) as exc:
                log.warning("转写记录读取失败 / transcript not read: %s", exc)
        return rows + list(self._unsaved.get(call_id, []))

    async def text_of(self, call_id: str) -> str | None:
        """The whole transcript of a call, one line per utterance, IVR first; ``None`` if
        nothing was recognised."""
        segs = await self.segments_of(call_id)
        if not segs:
            return None
        order = {"ivr": 0, "conversation": 1}
        segs.sort(key=lambda r: (order.get(r["purpose"], 2), r["start_s"] or 0.0))
        return "\n".join(r["text"] for r in segs)


class _CallSink:
    def __init__(self, hub: CallTranscripts, call: CallRef) -> None:
        self._hub = hub
        self._call = call

    async def segment(self, seg: Segment) -> None:
        await self._hub.publish(self._call, seg)
