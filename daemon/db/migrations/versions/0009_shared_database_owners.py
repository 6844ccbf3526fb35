"""owners for a database shared by several daemons; frame paths unique per night

Runs, processing jobs, night plans and events carry the daemon (observatory profile name)
that made them. A frame's relative path is unique within its night, no longer across the
database: telescopes sharing it write the same relative paths under their own frames roots.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OWNED_TABLES = ("sequence_run", "processing_job", "night_plan", "event")


def upgrade() -> None:
    for table in OWNED_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("owner", sa.String(length=200), nullable=True))
            batch.create_index(batch.f(f"ix_{table}_owner"), ["owner"], unique=False)
    with op.batch_alter_table("frame") as batch:
        batch.drop_constraint("uq_frame_path", type_="unique")
        batch.create_unique_constraint(batch.f("uq_frame_session_id"), ["session_id", "path"])


def downgrade() -> None:
    with op.batch_alter_table("frame") as batch:
        batch.drop_constraint("uq_frame_session_id", type_="unique")
        batch.create_unique_constraint(batch.f("uq_frame_path"), ["path"])
    for table in reversed(OWNED_TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(batch.f(f"ix_{table}_owner"))
            batch.drop_column("owner")
