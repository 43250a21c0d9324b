"""queue_intervals.pbx_shutdown and seat_pauses: calls cut by a PBX stop, desired pauses

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("queue_intervals",
                  sa.Column("pbx_shutdown", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "seat_pauses",
        sa.Column("seat_id", sa.String(80), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(80), nullable=False, server_default=""),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seat_id", name="pk_seat_pauses"),
    )


def downgrade() -> None:
    op.drop_table("seat_pauses")
    # SQLite cannot drop a column in place: batch mode copies the table.
    with op.batch_alter_table("queue_intervals") as batch:
        batch.drop_column("pbx_shutdown")
