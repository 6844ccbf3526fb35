"""frame star lists

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "frame_stars",
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("star_count", sa.Integer(), nullable=False),
        sa.Column("stars", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["frame_id"],
            ["frame.id"],
            name=op.f("fk_frame_stars_frame_id_frame"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("frame_id", name=op.f("pk_frame_stars")),
    )


def downgrade() -> None:
    op.drop_table("frame_stars")
