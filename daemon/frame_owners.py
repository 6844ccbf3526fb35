"""Whose frames these are, when several daemons (one per telescope) share one database.

A frame belongs to a night (imaging session), a night to an observatory profile; a daemon's
owner is its profile's name (`daemon.db.engine.owned_engine`). Frame records store paths
relative to the frames root of the daemon that took them, so only that daemon can read a
frame's file: another telescope's frame with the same relative path would be this one's file.
An engine without an owner (tools, a database of one telescope) sees every frame as its own.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Engine, Select, select
from sqlalchemy.orm import Session

from daemon.db.engine import owner_of
from daemon.db.models import Frame, ImagingSession, ObservatoryProfile
from daemon.errors import Conflict


class AnotherTelescope(Conflict):
    """A frame or night of another profile: its files are on the disk of that profile's
    daemon; ask that daemon."""


def own_frames(engine: Engine) -> list[ColumnElement[bool]]:
    """Filters on `Frame` keeping the frames of `engine`'s owner (none without an owner)."""
    owner = owner_of(engine)
    return [] if owner is None else [Frame.session_id.in_(_session_ids(owner))]


def own_sessions(engine: Engine) -> list[ColumnElement[bool]]:
    """Filters on `ImagingSession` keeping the nights of `engine`'s owner (none without)."""
    owner = owner_of(engine)
    return [] if owner is None else [ImagingSession.id.in_(_session_ids(owner))]


def _session_ids(profile: str) -> Select[int]:
    return (
        select(ImagingSession.id)
        .join(ObservatoryProfile, ObservatoryProfile.id == ImagingSession.profile_id)
        .where(ObservatoryProfile.name == profile)
    )


def session_profile(db: Session, session_id: int) -> str | None:
    """The profile name of night `session_id` (None for an unknown night)."""
    return db.scalar(
        select(ObservatoryProfile.name)
        .join(ImagingSession, ImagingSession.profile_id == ObservatoryProfile.id)
        .where(ImagingSession.id == session_id)
    )


def refuse_another_telescopes_frame(db: Session, engine: Engine, frame: Frame) -> None:
    """`AnotherTelescope` naming the profile when `frame` was taken by another daemon's
    telescope (its file is on that daemon's disk, not under this daemon's frames root)."""
    owner = owner_of(engine)
    if owner is None:
        return
    profile = session_profile(db, frame.session_id)
    if profile != owner:
        raise AnotherTelescope(
            f"frame {frame.id} was taken by profile {profile!r}: its file is on the disk of "
            "that profile's daemon; ask that daemon for it"
        )
