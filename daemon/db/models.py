"""The daemon's tables, as SQLAlchemy 2 typed models.

Timestamps are timezone-aware UTC (`UtcDateTime` stores naive UTC, which every database holds
the same way, and hands back aware datetimes). Relationships load only on request
(``lazy="raise"``), so a route never runs queries by accident. Schema changes go through
alembic migrations in ``migrations/``.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from daemon.db.engine import owner_default
from daemon.states import JobState, SessionState
from sequences.frames import FrameType

# Stable constraint names, so that migrations can alter tables on SQLite (batch mode).
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; naive values are refused."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


def owner_column() -> Mapped[str | None]:
    """The daemon (observatory profile name) a row belongs to, filled from the inserting
    engine (`daemon.db.engine.owned_engine`); None: made without an owner."""
    return mapped_column(String(200), default=owner_default, index=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime, dict[str, Any]: JSON}


class ObservatoryProfile(Base):
    __tablename__ = "observatory_profile"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    latitude_deg: Mapped[float | None]
    longitude_deg: Mapped[float | None]
    elevation_m: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class Target(Base):
    __tablename__ = "target"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    ra_deg: Mapped[float | None]
    dec_deg: Mapped[float | None]
    rotation_deg: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class ImagingSession(Base):
    """One night of one profile; the night date is the local date 12 hours earlier."""

    __tablename__ = "imaging_session"
    __table_args__ = (UniqueConstraint("profile_id", "night_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("observatory_profile.id"))
    night_date: Mapped[date] = mapped_column(Date)
    state: Mapped[SessionState] = mapped_column(
        Enum(SessionState, native_enum=False, length=20), default=SessionState.OPEN
    )
    started_at: Mapped[datetime] = mapped_column(default=utc_now)
    ended_at: Mapped[datetime | None]

    profile: Mapped[ObservatoryProfile] = relationship(lazy="raise")


class Frame(Base):
    """A frame file (path relative to the frames root) and everything known about it."""

    __tablename__ = "frame"
    # Unique per night: telescopes sharing the database write the same relative paths
    # under their own frames roots.
    __table_args__ = (UniqueConstraint("session_id", "path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("imaging_session.id"), index=True)
    target_id: Mapped[int | None] = mapped_column(ForeignKey("target.id"))
    path: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    frame_type: Mapped[FrameType] = mapped_column(
        Enum(FrameType, native_enum=False, length=20), index=True
    )
    filter_name: Mapped[str | None] = mapped_column(String(50))
    exposure_s: Mapped[float] = mapped_column(Float)
    exposure_start_utc: Mapped[datetime]
    camera_name: Mapped[str | None] = mapped_column(String(200))
    width_px: Mapped[int]
    height_px: Mapped[int]
    gain: Mapped[int | None]
    offset: Mapped[int | None]
    bin_x: Mapped[int]
    bin_y: Mapped[int]
    readout_mode: Mapped[int | None]
    sensor_temperature_c: Mapped[float | None]
    set_point_c: Mapped[float | None]
    ra_deg: Mapped[float | None]
    dec_deg: Mapped[float | None]
    pier_side: Mapped[str | None] = mapped_column(String(10))
    altitude_deg: Mapped[float | None]
    azimuth_deg: Mapped[float | None]
    airmass: Mapped[float | None]
    focuser_position: Mapped[int | None]
    focuser_temperature_c: Mapped[float | None]
    star_count: Mapped[int | None]
    hfr_px: Mapped[float | None]
    hfr_arcsec: Mapped[float | None]
    fwhm_px: Mapped[float | None]
    eccentricity: Mapped[float | None]
    background_adu: Mapped[float | None]
    noise_adu: Mapped[float | None]
    saturated_fraction: Mapped[float | None]
    guiding_rms_arcsec: Mapped[float | None]
    bayer_pattern: Mapped[str | None] = mapped_column(String(8))
    """The colour sensor's FITS BAYERPAT (e.g. "RGGB"), so the night's job debayers its
    lights as the live stack did; None for a mono sensor. Rows recorded before the column
    existed read as mono (the migration cannot open their files)."""
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sequence_run.id"), index=True)
    node_path: Mapped[str | None] = mapped_column(String(500))
    """The sequence instruction that took the frame (for resuming: counted, never re-taken)."""
    accepted: Mapped[bool] = mapped_column(Boolean, default=True)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    weather: Mapped[dict[str, Any] | None]
    """The weather station's reading at the exposure's start (`WeatherReading` field names to
    values, only the figures it has); None without a recent reading."""
    created_at: Mapped[datetime] = mapped_column(default=utc_now)

    session: Mapped[ImagingSession] = relationship(lazy="raise")
    target: Mapped[Target | None] = relationship(lazy="raise")


class FrameStars(Base):
    """The stars capture measured on a light (`processing.star_lists.StarList` bytes), so
    the live stack registers it without detecting them again."""

    __tablename__ = "frame_stars"

    frame_id: Mapped[int] = mapped_column(
        ForeignKey("frame.id", ondelete="CASCADE"), primary_key=True
    )
    star_count: Mapped[int]
    stars: Mapped[bytes] = mapped_column(LargeBinary)


class Event(Base):
    """The run and device log: what happened, when, from where, with structured details."""

    __tablename__ = "event"

    id: Mapped[int] = mapped_column(primary_key=True)
    time: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    level: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sequence_run.id"), index=True)
    node_path: Mapped[str | None] = mapped_column(String(500))
    owner: Mapped[str | None] = owner_column()


class ProcessingJob(Base):
    """A processing job: a night's frames (`session_id`), a target's lights across nights
    (`target_id`) or a folder of FITS files, its options (`config`), where it writes
    (`out_dir`), its stage and progress, and the summary of what it produced (`outputs`)
    or why it failed (`error`)."""

    __tablename__ = "processing_job"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("imaging_session.id"))
    target_id: Mapped[int | None] = mapped_column(ForeignKey("target.id"))
    folder: Mapped[str | None] = mapped_column(Text)
    out_dir: Mapped[str | None] = mapped_column(Text)
    stage: Mapped[str | None] = mapped_column(String(40))
    state: Mapped[JobState] = mapped_column(
        Enum(JobState, native_enum=False, length=20), default=JobState.QUEUED
    )
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    owner: Mapped[str | None] = owner_column()
    """The daemon that queued the job: only it runs it, and requeues it after a stop."""


class AutofocusRun(Base):
    """One autofocus: where it started and ended, its samples and fit (the report as JSON)."""

    __tablename__ = "autofocus_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    filter_name: Mapped[str | None] = mapped_column(String(50))
    start_position: Mapped[int]
    final_position: Mapped[int | None]
    best_hfr_px: Mapped[float | None]
    success: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)


class NamedDocument:
    """Columns of a row holding a named, validated JSON document (templates, plans)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    document: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class SequenceTemplate(NamedDocument, Base):
    """A saved sequence document (validated on save), edited over the API and the web UI."""

    __tablename__ = "sequence_template"


class RecipeRow(NamedDocument, Base):
    """A saved processing recipe (`processing.recipe.Recipe` as JSON, validated on save)."""

    __tablename__ = "recipe"


class SequenceRun(Base):
    """One run of a document (copied from its template, so later edits do not change it) and
    its journaled run state."""

    __tablename__ = "sequence_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("sequence_template.id", ondelete="SET NULL")
    )
    name: Mapped[str] = mapped_column(String(200))
    document: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)
    ended_at: Mapped[datetime | None]
    owner: Mapped[str | None] = owner_column()
    """The daemon that runs it: only it marks it interrupted and resumes it."""


class PlanNightState(enum.StrEnum):
    WAITING = "waiting"
    """Armed: waiting for dusk."""
    RUNNING = "running"
    PAUSED = "paused"
    """Held by the safety supervisor (unsafe, or waiting for the safe delay)."""
    FINISHED = "finished"
    STOPPED = "stopped"
    """Ended by a person, a lost device, or a daemon that came back after dawn."""


class NightPlanRow(NamedDocument, Base):
    """A night plan (`sequences.plan.NightPlan` as JSON): targets, goals and constraints."""

    __tablename__ = "night_plan"

    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    owner: Mapped[str | None] = owner_column()
    """The daemon it was saved on: only that one arms it at dusk."""


class PlanNight(Base):
    """One night of a plan: its dark window, what it is doing, why it ended."""

    __tablename__ = "plan_night"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(
        ForeignKey("night_plan.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[PlanNightState] = mapped_column(
        Enum(PlanNightState, native_enum=False, length=20), default=PlanNightState.WAITING
    )
    dusk: Mapped[datetime]
    dawn: Mapped[datetime]
    current_target: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utc_now)
    ended_at: Mapped[datetime | None]


class PlanRun(Base):
    """A sequence run made by a plan's night, for one target (or the night's end area)."""

    __tablename__ = "plan_run"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("sequence_run.id", ondelete="CASCADE"), primary_key=True
    )
    night_id: Mapped[int] = mapped_column(
        ForeignKey("plan_night.id", ondelete="CASCADE"), index=True
    )
    target_name: Mapped[str | None] = mapped_column(String(200))
