"""ticket place columns and citizen indexes (repeats, related orders), ticket_outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

* ``tickets.place_street`` / ``place_address``: the order's street and address, copied from
  ``location`` so that "different citizens about the same place" is an indexed look-up.
* Indexes on ``citizen_email`` and ``citizen_app_user_id`` (with ``created_at``): the repeat
  look-up ORs phone, e-mail and app user; without an index on every branch PostgreSQL cannot
  combine bitmap scans and reads the whole table.
* ``ticket_outbox``: tickets waiting to be handed to a city's own ticket system, written in the
  ticket's own transaction (a crash between commit and POST loses nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("tickets", sa.Column("place_street", sa.String(100), nullable=True))
    op.add_column("tickets", sa.Column("place_address", sa.String(300), nullable=True))
    _backfill_places()
    op.create_index("ix_tickets_citizen_email_created_at", "tickets",
                    ["citizen_email", "created_at"])
    op.create_index("ix_tickets_citizen_app_user_id_created_at", "tickets",
                    ["citizen_app_user_id", "created_at"])
    op.create_index("ix_tickets_place_street_created_at", "tickets",
                    ["place_street", "created_at"])
    op.create_index("ix_tickets_place_address_created_at", "tickets",
                    ["place_address", "created_at"])
    op.create_table(
        "ticket_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_at", _TS, nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("done_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ticket_outbox"),
        sa.UniqueConstraint("ticket_id", name="uq_ticket_outbox_ticket_id"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"],
                                name="fk_ticket_outbox_ticket_id_tickets", ondelete="CASCADE"),
    )
    op.create_index("ix_ticket_outbox_state_next_at", "ticket_outbox", ["state", "next_at"])


def _backfill_places() -> None:
    """Copy street/address out of ``location`` for tickets made before this revision."""
    conn = op.get_bind()
    tickets = sa.table("tickets", sa.column("id", sa.Integer()), sa.column("location", sa.JSON()),
                       sa.column("place_street", sa.String()),
                       sa.column("place_address", sa.String()))
    rows = conn.execute(sa.select(tickets.c.id, tickets.c.location)).all()
    updates = [{"tid": row.id, "street": (row.location or {}).get("street"),
                "address": (row.location or {}).get("address")}
               for row in rows if row.location]
    updates = [u for u in updates if u["street"] or u["address"]]
    if updates:
        conn.execute(
            tickets.update().where(tickets.c.id == sa.bindparam("tid"))
            .values(place_street=sa.bindparam("street"), place_address=sa.bindparam("address")),
            updates)


def downgrade() -> None:
    op.drop_index("ix_ticket_outbox_state_next_at", table_name="ticket_outbox")
    op.drop_table("ticket_outbox")
    for name in ("ix_tickets_place_address_created_at", "ix_tickets_place_street_created_at",
                 "ix_tickets_citizen_app_user_id_created_at",
                 "ix_tickets_citizen_email_created_at"):
        op.drop_index(name, table_name="tickets")
    op.drop_column("tickets", "place_address")
    op.drop_column("tickets", "place_street")
