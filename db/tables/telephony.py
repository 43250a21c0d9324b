"""Telephony's tables: calls, queue statistics per interval, seat pauses (the store is
:mod:`telephony.store`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from db.tables.base import Base
from db.types import Json, UtcDateTime


class CallRow(Base):
    """One queued call (table ``calls``); mirrors :class:`telephony.model.CallRecord`."""

    __tablename__ = "calls"

    # Asterisk's Uniqueid / Linkedid are at most 150 characters (AST_MAX_UNIQUEID).
    call_id: Mapped[str] = mapped_column(String(150), primary_key=True)
    linkedid: Mapped[str] = mapped_column(String(150))
    queue: Mapped[str] = mapped_column(String(128))
    caller_number: Mapped[str] = mapped_column(String(80))
    caller_channel: Mapped[str] = mapped_column(String(255))
    seat: Mapped[str | None] = mapped_column(String(80))
    seat_channel: Mapped[str | None] = mapped_column(String(255))
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    wait_seconds: Mapped[float | None] = mapped_column(Float())
    talk_seconds: Mapped[float | None] = mapped_column(Float())
    outcome: Mapped[str | None] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(String(16))
    ring_attempts: Mapped[int] = mapped_column(Integer(), default=0)
    no_answer_seats: Mapped[list[str]] = mapped_column(Json, default=list)
    transferred_to: Mapped[str | None] = mapped_column(String(80))
    asr_uuid: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_calls_queue_joined_at", "queue", "joined_at"),
        Index("ix_calls_outcome", "outcome"),
        # open_calls() runs after every AMI reconnect; a partial index keeps it cheap when the
        # table holds years of ended calls.
        Index(
            "ix_calls_open_joined_at",
            "joined_at",
            postgresql_where=text("phase <> 'ended'"),
            sqlite_where=text("phase <> 'ended'"),
        ),
    )


class QueueIntervalRow(Base):
    """Statistics of one queue over one interval, 15 minutes by default (``queue_intervals``)."""

    __tablename__ = "queue_intervals"

    queue: Mapped[str] = mapped_column(String(128), primary_key=True)
    interval_start: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    offered: Mapped[int] = mapped_column(Integer(), default=0)
    answered: Mapped[int] = mapped_column(Integer(), default=0)
    answered_within_sl: Mapped[int] = mapped_column(Integer(), default=0)
    abandoned: Mapped[int] = mapped_column(Integer(), default=0)
    timed_out: Mapped[int] = mapped_column(Integer(), default=0)
    unknown_end: Mapped[int] = mapped_column(Integer(), default=0)
    pbx_shutdown: Mapped[int] = mapped_column(Integer(), default=0)   # revision 0009
    completed: Mapped[int] = mapped_column(Integer(), default=0)
    sum_wait_seconds: Mapped[float] = mapped_column(Float(), default=0.0)
    sum_talk_seconds: Mapped[float] = mapped_column(Float(), default=0.0)


class SeatPauseRow(Base):
    """The pause each seat should have (``seat_pauses``, revision 0009): what the agent last
    chose, learnt from Asterisk's ``QueueMemberPause`` events. Re-applied when Asterisk lost
    its members (a restart), also after a restart of the service itself."""

    __tablename__ = "seat_pauses"

    seat_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean())
    reason: Mapped[str] = mapped_column(String(80), default="")   # Asterisk keeps 80 bytes
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
