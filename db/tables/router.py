"""The router's tables: work orders with their audit trail, number counters and outbox
(:mod:`router.ticket_store`, :mod:`router.outbox`), and the knowledge base
(:mod:`router.kb_store`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from db.tables.base import Base
from db.types import Json, UtcDateTime


class TicketRow(Base):
    """One work order (工单, table ``tickets``); the store is :mod:`router.ticket_store`.

    ``intake_id`` is unique: a redelivered intake finds its ticket instead of making a second.
    ``status`` and ``action`` values are :class:`router.tickets.TicketStatus` / ``TicketAction``.
    """

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(24), unique=True)
    intake_id: Mapped[str] = mapped_column(String(32), unique=True)
    acceptance_no: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(16))
    urgency: Mapped[str] = mapped_column(String(16))
    # None while the order waits for manual dispatch (人工派单).
    unit_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text())
    citizen_name: Mapped[str | None] = mapped_column(String(100))
    citizen_phone: Mapped[str | None] = mapped_column(String(32))
    citizen_email: Mapped[str | None] = mapped_column(String(254))
    citizen_app_user_id: Mapped[str | None] = mapped_column(String(128))
    location: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sign_by: Mapped[datetime | None] = mapped_column(UtcDateTime())
    handle_by: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # What the router counted the deadlines from, and whether a year on the way had no
    # official holiday arrangement yet (recounted once it is entered: router.provisional).
    deadlines_from: Mapped[datetime | None] = mapped_column(UtcDateTime())
    deadline_provisional: Mapped[bool] = mapped_column(Boolean(), default=False,
                                                       server_default=false())
    extensions: Mapped[int] = mapped_column(Integer(), default=0)
    supervised: Mapped[bool] = mapped_column(Boolean(), default=False)
    repeat_of: Mapped[str | None] = mapped_column(String(24))
    related_to: Mapped[str | None] = mapped_column(String(24))
    explanation: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    survey_satisfied: Mapped[bool | None] = mapped_column(Boolean())
    survey_note: Mapped[str | None] = mapped_column(Text())
    surveyed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # location's street and address as columns: related orders (different citizens, same
    # place) are an indexed look-up.
    place_street: Mapped[str | None] = mapped_column(String(100))
    place_address: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (
        Index("ix_tickets_unit_id_status", "unit_id", "status"),
        Index("ix_tickets_status", "status"),
        # The citizen's status query reads the order by acceptance number (revision 0008).
        Index("ix_tickets_acceptance_no", "acceptance_no"),
        # Repeat detection (重复投诉) looks up the citizens' recent orders by phone, e-mail or
        # app user (an OR: every branch needs its index, or PostgreSQL scans the table).
        Index("ix_tickets_citizen_phone_created_at", "citizen_phone", "created_at"),
        Index("ix_tickets_citizen_email_created_at", "citizen_email", "created_at"),
        Index("ix_tickets_citizen_app_user_id_created_at", "citizen_app_user_id",
              "created_at"),
        Index("ix_tickets_place_street_created_at", "place_street", "created_at"),
        Index("ix_tickets_place_address_created_at", "place_address", "created_at"),
        # The orders to recount when a year's arrangement is entered: few among many.
        Index("ix_tickets_deadline_provisional", "deadline_provisional"),
    )


class TicketEventRow(Base):
    """One change of a ticket (``ticket_events``): the audit trail, written in the same
    transaction as the change itself."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(
        Integer(), ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    # 'router', 'office:<user>' or 'unit:<unit_id>'.
    actor: Mapped[str] = mapped_column(String(150))
    action: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text(), default="")


class TicketOutboxRow(Base):
    """A ticket waiting to be handed to the city's own ticket system (``ticket_outbox``),
    written in the ticket's creating transaction; :mod:`router.outbox` delivers it.

    ``state``: ``pending`` (due at ``next_at``), ``delivered`` or ``dead`` (refused or out of
    attempts: a person must look, ``last_error`` says why).
    """

    __tablename__ = "ticket_outbox"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(
        Integer(), ForeignKey("tickets.id", ondelete="CASCADE"), unique=True
    )
    state: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer(), default=0)
    next_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer())
    last_error: Mapped[str | None] = mapped_column(Text())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_ticket_outbox_state_next_at", "state", "next_at"),)


class TicketNumberCounterRow(Base):
    """Last ticket sequence number handed out per day (``ticket_number_counters``).

    A table, not a process counter: every instance draws from it inside the creating
    transaction, so numbers are unique across instances and a rolled-back create leaves no gap.
    """

    __tablename__ = "ticket_number_counters"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)  # YYYYMMDD, Beijing time
    last: Mapped[int] = mapped_column(Integer())


class KbArticleRow(Base):
    """One knowledge-base article (``kb_articles``), kept current by its unit through the
    API (:mod:`router.kb_http`); ``routing.kb_path`` seeds it. See :class:`router.kb.Article`."""

    __tablename__ = "kb_articles"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text())
    unit: Mapped[str] = mapped_column(String(64), index=True)
    keywords: Mapped[list[str]] = mapped_column(Json, default=list)
    valid_from: Mapped[date | None] = mapped_column(Date())
    valid_to: Mapped[date | None] = mapped_column(Date())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # 'seed' (imported from kb_path), 'office:admin' or 'unit:<unit id>'.
    updated_by: Mapped[str] = mapped_column(String(150))
