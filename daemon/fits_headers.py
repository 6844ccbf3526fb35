"""FITS header cards for a captured frame, with the keywords NINA writes.

Siril and PixInsight's WBPP group frames by these keywords (IMAGETYP, EXPTIME, FILTER, XBINNING,
GAIN, CCD-TEMP, ...), so the names and value conventions follow NINA: pixel sizes are the
binned size, RA/DEC are J2000 degrees, OBJCTRA/OBJCTDEC are sexagesimal strings, ROWORDER is
TOP-DOWN (the Alpaca image order).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.metadata import version

from astropy.time import Time

from drivers.base import FocuserStatus, MountInfo, MountStatus, PierSide, RawFrame, SensorType
from processing.io import FitsCard, dec_deg_to_sexagesimal, ra_hours_to_sexagesimal
from processing.stars import FrameQuality
from sequences.astro import airmass
from sequences.frames import FrameType, RunTag

_BAYER_PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")


@dataclass(frozen=True)
class TargetInfo:
    name: str
    ra_deg: float | None = None
    dec_deg: float | None = None


@dataclass(frozen=True)
class CaptureContext:
    """Everything known about one exposure: the camera's frame and the other devices' state."""

    raw: RawFrame
    frame_type: FrameType
    target: TargetInfo | None
    filter_name: str | None
    mount: MountStatus | None
    mount_info: MountInfo | None
    focuser: FocuserStatus | None
    quality: FrameQuality | None
    hfr_arcsec: float | None
    accepted: bool = True
    reject_reason: str | None = None
    tag: RunTag | None = None
    """The sequence run and instruction that took it (kept in the header for crash recovery)."""
    guiding_rms_arcsec: float | None = None
    """Total guide RMS during the exposure (None when not guiding)."""

    @property
    def airmass(self) -> float | None:
        if self.mount is None or self.mount.altitude_deg is None:
            return None
        return airmass(self.mount.altitude_deg)


def bayer_pattern(sensor_type: SensorType, offset_x: int | None, offset_y: int | None) -> str:
    """The BAYERPAT of an RGGB sensor read out from (offset_x, offset_y)."""
    if sensor_type is not SensorType.RGGB:
        return ""
    index = (offset_y or 0) % 2 * 2 + (offset_x or 0) % 2
    return _BAYER_PATTERNS[index]


def header_cards(ctx: CaptureContext) -> list[FitsCard]:
    raw, info, camera = ctx.raw, ctx.raw.info, ctx.raw.status
    start = raw.exposure_start_utc
    middle = start + timedelta(seconds=raw.exposure_s / 2)
    cards: list[FitsCard] = [
        ("IMAGETYP", ctx.frame_type.value, "type of image"),
        ("EXPTIME", raw.exposure_s, "[s] exposure duration"),
        ("EXPOSURE", raw.exposure_s, "[s] exposure duration"),
        ("DATE-OBS", _iso(start), "UTC start of the exposure"),
        ("DATE-AVG", _iso(middle), "UTC middle of the exposure"),
        ("MJD-OBS", float(Time(start).mjd), "modified Julian date of the start"),
        ("XBINNING", camera.bin_x, "binning in x"),
        ("YBINNING", camera.bin_y, "binning in y"),
        ("XPIXSZ", info.pixel_size_x_um * camera.bin_x, "[um] binned pixel width"),
        ("YPIXSZ", info.pixel_size_y_um * camera.bin_y, "[um] binned pixel height"),
        ("INSTRUME", info.name, "camera"),
        ("ROWORDER", "TOP-DOWN", "order of the rows"),
        ("EQUINOX", 2000.0, "equinox of RA, DEC"),
        ("SWCREATE", f"Nightowl {version('nightowl')}", "software that created the file"),
    ]
    optional: list[tuple[str, str | int | float | bool | None, str]] = [
        ("GAIN", camera.gain, "sensor gain"),
        ("OFFSET", camera.offset, "sensor offset"),
        ("READOUTM", _readout_name(raw), "readout mode"),
        ("CCD-TEMP", camera.sensor_temperature_c, "[degC] sensor temperature"),
        ("SET-TEMP", camera.set_point_c, "[degC] sensor set point"),
        ("FILTER", ctx.filter_name, "filter"),
        (
            "BAYERPAT",
            bayer_pattern(info.sensor_type, info.bayer_offset_x, info.bayer_offset_y),
            "Bayer pattern",
        ),
    ]
    if ctx.target is not None:
        optional.append(("OBJECT", ctx.target.name, "target"))
        if ctx.target.ra_deg is not None and ctx.target.dec_deg is not None:
            optional += [
                ("OBJCTRA", ra_hours_to_sexagesimal(ctx.target.ra_deg / 15.0), "target RA J2000"),
                ("OBJCTDEC", dec_deg_to_sexagesimal(ctx.target.dec_deg), "target Dec J2000"),
            ]
    if ctx.mount is not None:
        position = ctx.mount.position
        optional += [
            ("RA", position.ra_deg, "[deg] mount RA J2000"),
            ("DEC", position.dec_deg, "[deg] mount Dec J2000"),
            ("CENTALT", ctx.mount.altitude_deg, "[deg] altitude of the pointing"),
            ("CENTAZ", ctx.mount.azimuth_deg, "[deg] azimuth of the pointing"),
            ("AIRMASS", ctx.airmass, "airmass of the pointing"),
        ]
        if ctx.mount.side_of_pier is not PierSide.UNKNOWN:
            optional.append(("PIERSIDE", ctx.mount.side_of_pier.name, "side of pier"))
    if ctx.mount_info is not None:
        mi = ctx.mount_info
        optional += [
            ("TELESCOP", mi.name, "telescope / mount"),
            (
                "FOCALLEN",
                None if mi.focal_length_m is None else mi.focal_length_m * 1000.0,
                "[mm] focal length",
            ),
            ("SITELAT", mi.site_latitude_deg, "[deg] site latitude"),
            ("SITELONG", mi.site_longitude_deg, "[deg] site longitude, east positive"),
            ("SITEELEV", mi.site_elevation_m, "[m] site elevation"),
        ]
    if ctx.focuser is not None:
        optional += [
            ("FOCPOS", ctx.focuser.position, "[step] focuser position"),
            ("FOCTEMP", ctx.focuser.temperature_c, "[degC] focuser temperature"),
        ]
    if ctx.quality is not None:
        q = ctx.quality
        optional += [
            ("STARS", q.star_count, "stars detected"),
            ("HFR", q.hfr_px, "[px] median half-flux radius"),
            ("HFRARCS", ctx.hfr_arcsec, "[arcsec] median half-flux radius"),
            ("FWHM", q.fwhm_px, "[px] median FWHM"),
            ("ECCENTR", q.eccentricity, "median star eccentricity"),
        ]
    optional += [
        ("NOWLACPT", ctx.accepted, "accepted by the quality rules"),
        ("NOWLRJCT", ctx.reject_reason, "why the quality rules rejected it"),
        ("GUIDRMS", ctx.guiding_rms_arcsec, "[arcsec] total guiding RMS in the exposure"),
        ("NOWLRUN", ctx.tag.run_id if ctx.tag else None, "Nightowl sequence run"),
        ("NOWLNODE", ctx.tag.node_path if ctx.tag else None, "instruction in the run"),
    ]
    cards += [(k, v, c) for k, v, c in optional if v is not None and v != ""]
    return cards


def _iso(moment: datetime) -> str:
    return str(Time(moment).isot)


def _readout_name(raw: RawFrame) -> str | None:
    mode, modes = raw.status.readout_mode, raw.info.readout_modes
    if mode is None or not 0 <= mode < len(modes):
        return None
    return modes[mode]
