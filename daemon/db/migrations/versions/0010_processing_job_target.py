"""processing jobs of a target across nights: the job's target

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("processing_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("target_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_processing_job_target_id_target"), "target", ["target_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("processing_job", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_processing_job_target_id_target"), type_="foreignkey")
        batch_op.drop_column("target_id")
