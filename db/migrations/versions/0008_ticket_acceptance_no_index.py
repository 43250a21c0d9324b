"""index tickets.acceptance_no: the citizen's status query reads the order by it

Revision ID: 0008
Revises: 0005
Create Date: 2026-11-23

The status queries (web form, app) answer from the work order itself once it exists
(``channels.citizen_status``); without this index every query would scan the tickets table.
Not unique: an existing table is never refused for it, and the store reads the newest row.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tickets_acceptance_no", "tickets", ["acceptance_no"])


def downgrade() -> None:
    op.drop_index("ix_tickets_acceptance_no", table_name="tickets")
