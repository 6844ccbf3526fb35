"""frame bayer pattern: colour nights debayered by their job

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows stay NULL (mono): their files are not reachable from here.
    with op.batch_alter_table("frame") as batch:
        batch.add_column(sa.Column("bayer_pattern", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("frame") as batch:
        batch.drop_column("bayer_pattern")
