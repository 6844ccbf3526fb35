"""autofocus runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "autofocus_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("filter_name", sa.String(length=50), nullable=True),
        sa.Column("start_position", sa.Integer(), nullable=False),
        sa.Column("final_position", sa.Integer(), nullable=True),
        sa.Column("best_hfr_px", sa.Double(), nullable=True),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autofocus_run")),
    )
    with op.batch_alter_table("autofocus_run", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_autofocus_run_started_at"), ["started_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("autofocus_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_autofocus_run_started_at"))

    op.drop_table("autofocus_run")
