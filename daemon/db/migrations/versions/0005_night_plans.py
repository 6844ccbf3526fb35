"""night plans, their nights and runs

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "night_plan",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_night_plan")),
        sa.UniqueConstraint("name", name=op.f("uq_night_plan_name")),
    )
    op.create_table(
        "plan_night",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "WAITING",
                "RUNNING",
                "PAUSED",
                "FINISHED",
                "STOPPED",
                name="plannightstate",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("dusk", sa.DateTime(), nullable=False),
        sa.Column("dawn", sa.DateTime(), nullable=False),
        sa.Column("current_target", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["night_plan.id"],
            name=op.f("fk_plan_night_plan_id_night_plan"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_night")),
    )
    with op.batch_alter_table("plan_night", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plan_night_plan_id"), ["plan_id"], unique=False)

    op.create_table(
        "plan_run",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("night_id", sa.Integer(), nullable=False),
        sa.Column("target_name", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["night_id"],
            ["plan_night.id"],
            name=op.f("fk_plan_run_night_id_plan_night"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sequence_run.id"],
            name=op.f("fk_plan_run_run_id_sequence_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_plan_run")),
    )
    with op.batch_alter_table("plan_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plan_run_night_id"), ["night_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("plan_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plan_run_night_id"))

    op.drop_table("plan_run")
    with op.batch_alter_table("plan_night", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plan_night_plan_id"))

    op.drop_table("plan_night")
    op.drop_table("night_plan")
