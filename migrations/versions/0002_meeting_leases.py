"""Meeting leases: which bridge worker holds which meeting, one row per grant (bridge/cluster/lease.py).

Hand-written and kept identical to bridge/store/tables.py ``LeaseRow``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
ID = sa.String(256)


def upgrade() -> None:
    op.create_table(
        "meeting_leases",
        sa.Column("meeting_id", ID, nullable=False),
        sa.Column("token", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("holder_url", sa.String(200), nullable=False),
        sa.Column("acquired_at", TIMESTAMP, nullable=False),
        sa.Column("renewed_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.Column("requeued_at", TIMESTAMP, nullable=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("meeting_id", "token", name="pk_meeting_leases"),
        sa.ForeignKeyConstraint(
            ["meeting_id"], ["meetings.id"], name="fk_meeting_leases_meeting_id_meetings", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("meeting_leases")
