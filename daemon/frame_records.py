"""Database records of frames: profiles, nights, targets, frame rows, and scanned files.

Functions take an open SQLAlchemy `Session` and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo

from sqlalchemy import ColumnElement, Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from daemon.db.models import Frame, ImagingSession, ObservatoryProfile, SequenceRun, Target
from daemon.fits_headers import TargetInfo, header_texts, header_weather
from daemon.naming import night_date
from daemon.states import SessionState
from daemon.store import FrameStore, ScanResult, StoredFile
from drivers.base import MountInfo, WeatherReading
from processing.debayer import header_pattern
from processing.grouping import frame_kind
from processing.io import read_fits
from processing.stars import FrameQuality
from sequences.frames import FrameType

log = logging.getLogger(__name__)


def ensure_profile(db: Session, name: str, mount_info: MountInfo | None) -> ObservatoryProfile:
    profile = db.scalar(select(ObservatoryProfile).where(ObservatoryProfile.name == name))
    if profile is None:
        profile = ObservatoryProfile(name=name)
        db.add(profile)
    if mount_info is not None:
        profile.latitude_deg = mount_info.site_latitude_deg
        profile.longitude_deg = mount_info.site_longitude_deg
        profile.elevation_m = mount_info.site_elevation_m
    db.flush()
    return profile


def ensure_session(
    db: Session, profile: ObservatoryProfile, moment_utc: datetime, timezone: tzinfo
) -> ImagingSession:
    """The imaging session (night) that `moment_utc` falls in, created when first needed.

    A night's first frame ends the profile's earlier nights that are still open (closed,
    `ended_at` now): a finished sequence run closes its own nights, but nights of manual
    captures have no run to close them, and a closed night's live cache can age out. A night
    created for a frame older than the profile's latest night (a start-up scan of old files)
    is created closed for the same reason.
    """
    night = night_date(moment_utc, timezone)
    session = db.scalar(
        select(ImagingSession).where(
            ImagingSession.profile_id == profile.id, ImagingSession.night_date == night
        )
    )
    if session is None:
        now = datetime.now(UTC)
        latest = db.scalar(
            select(func.max(ImagingSession.night_date)).where(
                ImagingSession.profile_id == profile.id
            )
        )
        session = ImagingSession(profile_id=profile.id, night_date=night, started_at=moment_utc)
        if latest is not None and latest > night:
            session.state, session.ended_at = SessionState.CLOSED, now
        db.add(session)
        db.execute(
            update(ImagingSession)
            .where(
                ImagingSession.profile_id == profile.id,
                ImagingSession.night_date < night,
                ImagingSession.state == SessionState.OPEN,
            )
            .values(state=SessionState.CLOSED, ended_at=now)
        )
        db.flush()
    return session


def ensure_target(db: Session, target: TargetInfo | None) -> Target | None:
    """The target's row, created when first needed. Targets are shared by the daemons of a
    database: when another one creates the same name at the same moment, its row is used."""
    if target is None:
        return None
    query = select(Target).where(Target.name == target.name)
    row = db.scalar(query)
    if row is None:
        try:
            with db.begin_nested():
                row = Target(name=target.name, ra_deg=target.ra_deg, dec_deg=target.dec_deg)
                db.add(row)
        except IntegrityError:
            row = db.scalars(query).one()
    return row


def next_frame_number(
    db: Session,
    session: ImagingSession,
    frame_type: FrameType,
    filter_name: str | None,
    target: Target | None,
) -> int:
    """1 + the frames of this night with the same type, filter and target."""
    query = select(func.count(Frame.id)).where(
        Frame.session_id == session.id,
        Frame.frame_type == frame_type,
        _same_filter(filter_name),
        Frame.target_id.is_(None) if target is None else Frame.target_id == target.id,
    )
    return int(db.scalar(query) or 0) + 1


def _same_filter(filter_name: str | None) -> ColumnElement[bool]:
    return Frame.filter_name.is_(None) if filter_name is None else Frame.filter_name == filter_name


def accepted_history(
    db: Session, session: ImagingSession, filter_name: str | None, exposure_s: float
) -> list[FrameQuality]:
    """Quality of this night's accepted lights with the same filter and exposure, oldest first."""
    rows = db.scalars(
        select(Frame)
        .where(
            Frame.session_id == session.id,
            Frame.frame_type == FrameType.LIGHT,
            Frame.accepted.is_(True),
            Frame.star_count.is_not(None),
            _same_filter(filter_name),
            func.abs(Frame.exposure_s - exposure_s) < 1e-3,
        )
        .order_by(Frame.exposure_start_utc)
    )
    return [
        FrameQuality(
            star_count=row.star_count or 0,
            hfr_px=row.hfr_px,
            fwhm_px=row.fwhm_px,
            eccentricity=row.eccentricity,
            background_adu=row.background_adu or 0.0,
            noise_adu=row.noise_adu or 0.0,
            saturated_fraction=row.saturated_fraction or 0.0,
        )
        for row in rows
    ]


def weather_record(reading: WeatherReading | None) -> dict[str, float] | None:
    """A frame row's weather: the reading's figures the station has (None: no reading)."""
    if reading is None:
        return None
    figures = {k: v for k, v in dataclasses.asdict(reading).items() if v is not None}
    return figures or None


def _frame_type(imagetyp: str) -> FrameType:
    """The frame type of an IMAGETYP in any common spelling ("Bias Frame", "Master Dark"...);
    ValueError names an unknown one."""
    found = frame_kind(imagetyp)
    if found is None:
        raise ValueError(f"IMAGETYP {imagetyp!r} is not a light, dark, flat, bias or dark flat")
    return FrameType(found[0].value)


def frame_from_header(
    stored: StoredFile, header: Mapping[str, object], shape: tuple[int, ...]
) -> dict[str, object]:
    """Frame row fields recovered from a file's FITS header (for files found by the scan): the
    same row the capture recorded, quality figures and original (non-ASCII) texts included.
    Raises ValueError (or KeyError for a missing DATE-OBS) when the header cannot give one."""
    text = header_texts(header).get

    def number(key: str) -> float | None:
        value = header.get(key)
        return float(value) if isinstance(value, int | float) else None

    def integer(key: str) -> int | None:
        value = header.get(key)
        return int(value) if isinstance(value, int | float) else None

    start = datetime.fromisoformat(str(header["DATE-OBS"])).replace(tzinfo=UTC)
    stars = integer("STARS")
    pattern = header_pattern(header)
    return {
        "path": str(stored.path),
        "sha256": stored.sha256,
        "size_bytes": stored.size_bytes,
        "frame_type": _frame_type(str(header.get("IMAGETYP", "LIGHT"))),
        "filter_name": text("FILTER"),
        "exposure_s": number("EXPTIME") or 0.0,
        "exposure_start_utc": start,
        "camera_name": text("INSTRUME"),
        "width_px": shape[-1],
        "height_px": shape[-2],
        "gain": integer("GAIN"),
        "offset": integer("OFFSET"),
        "bin_x": integer("XBINNING") or 1,
        "bin_y": integer("YBINNING") or 1,
        "readout_mode": integer("NOWLRDMD"),
        "sensor_temperature_c": number("CCD-TEMP"),
        "set_point_c": number("SET-TEMP"),
        "ra_deg": number("RA"),
        "dec_deg": number("DEC"),
        "pier_side": text("PIERSIDE"),
        "altitude_deg": number("CENTALT"),
        "azimuth_deg": number("CENTAZ"),
        "airmass": number("AIRMASS"),
        "focuser_position": integer("FOCPOS"),
        "focuser_temperature_c": number("FOCTEMP"),
        "star_count": stars,
        "hfr_px": number("HFR"),
        "hfr_arcsec": number("HFRARCS"),
        "fwhm_px": number("FWHM"),
        "eccentricity": number("ECCENTR"),
        "background_adu": number("NOWLBKG"),
        "noise_adu": number("NOWLNOIS"),
        "saturated_fraction": number("NOWLSATF"),
        "accepted": str(header.get("NOWLACPT", "T")) not in ("F", "False", "0"),
        "reject_reason": text("NOWLRJCT"),
        "guiding_rms_arcsec": number("GUIDRMS"),
        "bayer_pattern": None if pattern is None else pattern.value,
        "run_id": integer("NOWLRUN"),
        "node_path": text("NOWLNODE"),
        "weather": weather_record(header_weather(header)),
    }


def register_unrecorded_files(
    engine: Engine, store: FrameStore, profile_name: str, timezone: tzinfo
) -> ScanResult:
    """Give every complete frame file without a row its row back (after a crash between the
    file's rename and the row's commit); remove partial files. Only the frames of
    `profile_name` count as known: other telescopes sharing the database keep files of the
    same relative paths under their own roots. Blocking."""
    with Session(engine) as db:
        known = set(
            db.scalars(
                select(Frame.path)
                .join(ImagingSession, ImagingSession.id == Frame.session_id)
                .join(ObservatoryProfile, ObservatoryProfile.id == ImagingSession.profile_id)
                .where(ObservatoryProfile.name == profile_name)
            )
        )
    result = store.scan(known)
    for stored in result.unregistered:
        try:
            data, header = read_fits(store.absolute(stored.path))
            fields = frame_from_header(stored, header, data.shape)
        except (OSError, ValueError, KeyError) as e:
            # Another program's file in the frames folder: left alone, never a failed start.
            log.warning("frame scan: %s left without a row: %s", stored.path, e)
            continue
        with Session(engine) as db, db.begin():
            profile = ensure_profile(db, profile_name, None)
            start = fields["exposure_start_utc"]
            assert isinstance(start, datetime)
            session = ensure_session(db, profile, start, timezone)
            name = header_texts(header).get("OBJECT")
            target = ensure_target(db, TargetInfo(name) if name else None)
            if fields["run_id"] is not None and db.get(SequenceRun, fields["run_id"]) is None:
                fields["run_id"] = fields["node_path"] = None  # files from another database
            db.add(Frame(session_id=session.id, target_id=target.id if target else None, **fields))
    return result
