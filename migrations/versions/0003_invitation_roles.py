"""Role-bound invitations: ``tokens.role`` (rep, buyer or participant; NULL for presenter tokens
and plain invitations), so a join link can seat its holder as the rep or the buyer.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch mode: SQLite cannot add a CHECK constraint to an existing table in place
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=True))
        batch.create_check_constraint("ck_tokens_role", "role IS NULL OR role IN ('rep', 'buyer', 'participant')")


def downgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.drop_constraint("ck_tokens_role", type_="check")
        batch.drop_column("role")
