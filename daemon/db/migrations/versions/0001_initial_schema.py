"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event")),
    )
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_time"), ["time"], unique=False)

    op.create_table(
        "observatory_profile",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("latitude_deg", sa.Double(), nullable=True),
        sa.Column("longitude_deg", sa.Double(), nullable=True),
        sa.Column("elevation_m", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observatory_profile")),
        sa.UniqueConstraint("name", name=op.f("uq_observatory_profile_name")),
    )
    op.create_table(
        "target",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("ra_deg", sa.Double(), nullable=True),
        sa.Column("dec_deg", sa.Double(), nullable=True),
        sa.Column("rotation_deg", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_target")),
        sa.UniqueConstraint("name", name=op.f("uq_target_name")),
    )
    op.create_table(
        "imaging_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("night_date", sa.Date(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("OPEN", "CLOSED", name="sessionstate", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["observatory_profile.id"],
            name=op.f("fk_imaging_session_profile_id_observatory_profile"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_session")),
        sa.UniqueConstraint("profile_id", "night_date", name=op.f("uq_imaging_session_profile_id")),
    )
    op.create_table(
        "frame",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column(
            "frame_type",
            sa.Enum(
                "LIGHT",
                "DARK",
                "FLAT",
                "BIAS",
                "DARKFLAT",
                name="frametype",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("filter_name", sa.String(length=50), nullable=True),
        sa.Column("exposure_s", sa.Float(), nullable=False),
        sa.Column("exposure_start_utc", sa.DateTime(), nullable=False),
        sa.Column("camera_name", sa.String(length=200), nullable=True),
        sa.Column("width_px", sa.Integer(), nullable=False),
        sa.Column("height_px", sa.Integer(), nullable=False),
        sa.Column("gain", sa.Integer(), nullable=True),
        sa.Column("offset", sa.Integer(), nullable=True),
        sa.Column("bin_x", sa.Integer(), nullable=False),
        sa.Column("bin_y", sa.Integer(), nullable=False),
        sa.Column("readout_mode", sa.Integer(), nullable=True),
        sa.Column("sensor_temperature_c", sa.Double(), nullable=True),
        sa.Column("set_point_c", sa.Double(), nullable=True),
        sa.Column("ra_deg", sa.Double(), nullable=True),
        sa.Column("dec_deg", sa.Double(), nullable=True),
        sa.Column("pier_side", sa.String(length=10), nullable=True),
        sa.Column("altitude_deg", sa.Double(), nullable=True),
        sa.Column("azimuth_deg", sa.Double(), nullable=True),
        sa.Column("airmass", sa.Double(), nullable=True),
        sa.Column("focuser_position", sa.Integer(), nullable=True),
        sa.Column("focuser_temperature_c", sa.Double(), nullable=True),
        sa.Column("star_count", sa.Integer(), nullable=True),
        sa.Column("hfr_px", sa.Double(), nullable=True),
        sa.Column("hfr_arcsec", sa.Double(), nullable=True),
        sa.Column("fwhm_px", sa.Double(), nullable=True),
        sa.Column("eccentricity", sa.Double(), nullable=True),
        sa.Column("background_adu", sa.Double(), nullable=True),
        sa.Column("noise_adu", sa.Double(), nullable=True),
        sa.Column("saturated_fraction", sa.Double(), nullable=True),
        sa.Column("guiding_rms_arcsec", sa.Double(), nullable=True),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"], ["imaging_session.id"], name=op.f("fk_frame_session_id_imaging_session")
        ),
        sa.ForeignKeyConstraint(
            ["target_id"], ["target.id"], name=op.f("fk_frame_target_id_target")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_frame")),
        sa.UniqueConstraint("path", name=op.f("uq_frame_path")),
    )
    with op.batch_alter_table("frame", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_frame_frame_type"), ["frame_type"], unique=False)
        batch_op.create_index(batch_op.f("ix_frame_session_id"), ["session_id"], unique=False)

    op.create_table(
        "processing_job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "QUEUED", "RUNNING", "DONE", "FAILED", name="jobstate", native_enum=False, length=20
            ),
            nullable=False,
        ),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["imaging_session.id"],
            name=op.f("fk_processing_job_session_id_imaging_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_processing_job")),
    )


def downgrade() -> None:
    op.drop_table("processing_job")
    with op.batch_alter_table("frame", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_frame_session_id"))
        batch_op.drop_index(batch_op.f("ix_frame_frame_type"))

    op.drop_table("frame")
    op.drop_table("imaging_session")
    op.drop_table("target")
    op.drop_table("observatory_profile")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_time"))

    op.drop_table("event")
