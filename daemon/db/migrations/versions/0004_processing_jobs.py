"""processing jobs: source folder, output folder, stage and times

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("processing_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("folder", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("out_dir", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("stage", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("processing_job", schema=None) as batch_op:
        batch_op.drop_column("finished_at")
        batch_op.drop_column("started_at")
        batch_op.drop_column("stage")
        batch_op.drop_column("out_dir")
        batch_op.drop_column("folder")
