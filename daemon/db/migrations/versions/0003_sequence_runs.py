"""sequence templates and runs; frames and events tagged with their run

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sequence_template",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sequence_template")),
        sa.UniqueConstraint("name", name=op.f("uq_sequence_template_name")),
    )
    op.create_table(
        "sequence_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["sequence_template.id"],
            name=op.f("fk_sequence_run_template_id_sequence_template"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sequence_run")),
    )
    with op.batch_alter_table("sequence_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sequence_run_status"), ["status"], unique=False)
    for table in ("frame", "event"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
            batch_op.add_column(sa.Column("node_path", sa.String(length=500), nullable=True))
            batch_op.create_index(batch_op.f(f"ix_{table}_run_id"), ["run_id"], unique=False)
            batch_op.create_foreign_key(
                batch_op.f(f"fk_{table}_run_id_sequence_run"), "sequence_run", ["run_id"], ["id"]
            )


def downgrade() -> None:
    for table in ("event", "frame"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f"fk_{table}_run_id_sequence_run"), "foreignkey")
            batch_op.drop_index(batch_op.f(f"ix_{table}_run_id"))
            batch_op.drop_column("node_path")
            batch_op.drop_column("run_id")
    with op.batch_alter_table("sequence_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sequence_run_status"))
    op.drop_table("sequence_run")
    op.drop_table("sequence_template")
