"""frame weather

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("frame") as batch:
        batch.add_column(sa.Column("weather", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("frame") as batch:
        batch.drop_column("weather")
