"""tickets: deadlines counted on a provisional holiday calendar

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

* ``tickets.deadlines_from``: the moment the router counted the deadlines from (the intake's
  acceptance), so they can be counted again.
* ``tickets.deadline_provisional``: a year on the way had no official holiday arrangement
  (``chinese_calendar`` and ``sla.yaml`` do not cover it); the router recounts such open orders
  once the year is entered (``router.provisional``). Existing orders are final: ``false``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tickets", sa.Column("deadlines_from", sa.DateTime(timezone=True),
                                       nullable=True))
    op.add_column("tickets", sa.Column("deadline_provisional", sa.Boolean(), nullable=False,
                                       server_default=sa.false()))
    op.create_index("ix_tickets_deadline_provisional", "tickets", ["deadline_provisional"])


def downgrade() -> None:
    op.drop_index("ix_tickets_deadline_provisional", table_name="tickets")
    op.drop_column("tickets", "deadline_provisional")
    op.drop_column("tickets", "deadlines_from")
