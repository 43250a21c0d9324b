"""The ASR slice's table: final transcript segments of each call (written by :mod:`asr.sink`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.tables.base import Base
from db.types import Json, UtcDateTime


class TranscriptSegmentRow(Base):
    """One final transcript segment of a call (``call_transcripts``): what the caller said, in
    order, with word timings; written by :mod:`asr.sink` as recognition finishes each
    utterance. ``call_id`` is the call's Linkedid (the phone intake's ``call.call_id``)."""

    __tablename__ = "call_transcripts"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64))
    stream_id: Mapped[str] = mapped_column(String(64))
    # 'ivr' (the caller's words before the queue) or 'conversation' (after an agent answered).
    purpose: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(Integer())
    text: Mapped[str] = mapped_column(Text())
    start_s: Mapped[float | None] = mapped_column(Float())
    end_s: Mapped[float | None] = mapped_column(Float())
    words: Mapped[list[Any]] = mapped_column(Json, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_call_transcripts_call_id_id", "call_id", "id"),)
