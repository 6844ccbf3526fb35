"""FITS header cards for a captured frame, with the keywords NINA writes.

Siril and PixInsight's WBPP group frames by these keywords (IMAGETYP, EXPTIME, FILTER, XBINNING,
GAIN, CCD-TEMP, ...), so the names and value conventions follow NINA: pixel sizes are the
binned size, RA/DEC are J2000 degrees, OBJCTRA/OBJCTDEC are sexagesimal strings, ROWORDER is
TOP-DOWN (the Alpaca image order). The weather station's reading goes in with NINA's keywords
and units (`WEATHER_CARDS`: wind in km/h, sky quality as MPSAS).

Keywords of our own (``NOWL`` and a few plain ones), so that a frame file alone gives its database
row back (`daemon.frame_records.frame_from_header`, after a crash between file and row):

- ``STARS``, ``HFR``, ``HFRARCS``, ``FWHM``, ``ECCENTR``: the star figures of a light;
  ``NOWLBKG`` [adu] sky background, ``NOWLNOIS`` [adu] background noise RMS, ``NOWLSATF``
  fraction of saturated pixels: with the star figures, what the acceptance rules compare.
- ``NOWLACPT``/``NOWLRJCT``: the verdict; ``NOWLRUN``/``NOWLNODE``: the run and instruction;
  ``GUIDRMS`` [arcsec]; ``NOWLRDMD``: the readout mode's index (``READOUTM`` is its name);
  ``NOWLRAIN`` [mm/h] the weather station's rain rate (NINA writes none).
- ``NOWLUTF8``: FITS text is printable ASCII, so text cards hold `daemon.naming.ascii_text` of
  their value (``OBJECT = 'Omega Cen'``) and this card keeps the originals that differ, as
  ``KEYWORD=value`` pairs joined by ``&``, each value UTF-8 percent-encoded (RFC 3986; spaces
  and printable ASCII other than ``%&=`` kept): ``NOWLUTF8= 'OBJECT=%CE%A9 Cen'``. A value
  longer than a card is a long string (``CONTINUE`` cards, ``LONGSTRN = 'OGIP 1.0'``).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from urllib.parse import quote, unquote

from astropy.time import Time

from daemon.naming import ascii_text
from drivers.base import (
    FocuserStatus,
    MountInfo,
    MountStatus,
    PierSide,
    RawFrame,
    SensorType,
    WeatherReading,
)
from processing.debayer import BayerPattern
from processing.debayer import bayer_pattern as shifted_pattern
from processing.io import FitsCard, dec_deg_to_sexagesimal, ra_hours_to_sexagesimal
from processing.stars import FrameQuality
from sequences.astro import airmass
from sequences.frames import FrameType, RunTag

ORIGINALS_KEYWORD = "NOWLUTF8"
_KEPT_IN_ORIGINALS = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%&=")
_CARD_TEXT_CHARS = 68
"""The longest string value (quotes doubled) one 80-character card holds; longer ones continue
on CONTINUE cards."""

WEATHER_CARDS: tuple[tuple[str, str, float, str], ...] = (
    ("CLOUDCVR", "cloud_cover_pct", 1.0, "[percent] Cloud cover"),
    ("DEWPOINT", "dew_point_c", 1.0, "[degC] Dew point"),
    ("HUMIDITY", "humidity_pct", 1.0, "[percent] Relative humidity"),
    ("PRESSURE", "pressure_hpa", 1.0, "[hPa] Air pressure"),
    ("SKYBRGHT", "sky_brightness_lux", 1.0, "[lux] Sky brightness"),
    ("MPSAS", "sky_quality_mag_arcsec2", 1.0, "[mags/arcsec^2] Sky quality"),
    ("SKYTEMP", "sky_temperature_c", 1.0, "[degC] Sky temperature"),
    ("STARFWHM", "star_fwhm_arcsec", 1.0, "[arcsec] Star FWHM"),
    ("AMBTEMP", "temperature_c", 1.0, "[degC] Ambient air temperature"),
    ("WINDDIR", "wind_direction_deg", 1.0, "[deg] Wind direction: 0=N, 90=E, 180=S, 270=W"),
    ("WINDGUST", "wind_gust_m_s", 3.6, "[kph] Wind gust"),
    ("WINDSPD", "wind_speed_m_s", 3.6, "[kph] Wind speed"),
    ("NOWLRAIN", "rain_rate_mm_h", 1.0, "[mm/h] Rain rate"),
)
"""(keyword, `WeatherReading` field, card value per unit of the field, comment): NINA's
keywords, units and comments; its wind cards are in km/h where ASCOM reads m/s."""


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
    weather: WeatherReading | None = None
    """The weather station's recent reading when the exposure started (None without one)."""

    @property
    def airmass(self) -> float | None:
        if self.mount is None or self.mount.altitude_deg is None:
            return None
        return airmass(self.mount.altitude_deg)


def bayer_pattern(sensor_type: SensorType, offset_x: int | None, offset_y: int | None) -> str:
    """The BAYERPAT of an RGGB sensor read out from (offset_x, offset_y); "" for another."""
    if sensor_type is not SensorType.RGGB:
        return ""
    return shifted_pattern(BayerPattern.RGGB.value, offset_x or 0, offset_y or 0).value


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
            ("NOWLBKG", q.background_adu, "[adu] sky background level"),
            ("NOWLNOIS", q.noise_adu, "[adu] background noise RMS"),
            ("NOWLSATF", q.saturated_fraction, "fraction of saturated pixels"),
        ]
    if ctx.weather is not None:
        optional += [
            (keyword, _scaled(getattr(ctx.weather, field), factor), comment)
            for keyword, field, factor, comment in WEATHER_CARDS
        ]
    optional += [
        ("NOWLRDMD", camera.readout_mode, "readout mode index"),
        ("NOWLACPT", ctx.accepted, "accepted by the quality rules"),
        ("NOWLRJCT", ctx.reject_reason, "why the quality rules rejected it"),
        ("GUIDRMS", ctx.guiding_rms_arcsec, "[arcsec] total guiding RMS in the exposure"),
        ("NOWLRUN", ctx.tag.run_id if ctx.tag else None, "Nightowl sequence run"),
        ("NOWLNODE", ctx.tag.node_path if ctx.tag else None, "instruction in the run"),
    ]
    cards += [(k, v, c) for k, v, c in optional if v is not None and v != ""]
    return _writable(cards)


def text_problem(value: str) -> str | None:
    """Why `value` (a name the user gave) cannot go into a header card, or None.

    Any Unicode text can (see `ascii_text` and ``NOWLUTF8``), except control characters, which
    no name should hold (a pasted line break, a tab), and text that is not valid Unicode.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"is not valid Unicode ({e.reason} at position {e.start})"
    for position, char in enumerate(value):
        if unicodedata.category(char) == "Cc":
            return f"holds a control character (U+{ord(char):04X} at position {position})"
    return None


def header_texts(header: Mapping[str, object]) -> dict[str, str]:
    """The header's text cards, with the original of each transliterated one (``NOWLUTF8``)."""
    texts = {keyword: value for keyword, value in header.items() if isinstance(value, str)}
    encoded = texts.pop(ORIGINALS_KEYWORD, "")
    for pair in filter(None, encoded.split("&")):
        keyword, _, value = pair.partition("=")
        texts[keyword] = unquote(value)
    return texts


def _writable(cards: list[FitsCard]) -> list[FitsCard]:
    """`cards` as FITS can hold them: ASCII text (originals kept in ``NOWLUTF8``), finite
    numbers (a device's NaN costs its card, not the frame)."""
    written: list[FitsCard] = []
    originals: list[str] = []
    for keyword, value, comment in cards:
        if isinstance(value, float) and not math.isfinite(value):
            continue
        if isinstance(value, str):
            plain = ascii_text(value)
            if plain != value:
                quoted = quote(value, safe=_KEPT_IN_ORIGINALS, errors="backslashreplace")
                originals.append(f"{keyword}={quoted}")
            value = plain
        written.append((keyword, value, comment))
    if originals:
        written.append((ORIGINALS_KEYWORD, "&".join(originals), "UTF-8 originals of text cards"))
    if any(
        isinstance(v, str) and len(v.replace("'", "''")) > _CARD_TEXT_CHARS for _, v, _ in written
    ):
        written.append(("LONGSTRN", "OGIP 1.0", "long strings continue on CONTINUE cards"))
    return written


def header_weather(header: Mapping[str, object]) -> WeatherReading | None:
    """The weather reading a header's weather cards hold (None when it has none)."""
    found = {
        field: value / factor
        for keyword, field, factor, _ in WEATHER_CARDS
        if isinstance(value := header.get(keyword), int | float) and not isinstance(value, bool)
    }
    return WeatherReading(**found) if found else None


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _iso(moment: datetime) -> str:
    """ISO 8601 UTC to the microsecond, so a re-registered row has the exact start."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _readout_name(raw: RawFrame) -> str | None:
    mode, modes = raw.status.readout_mode, raw.info.readout_modes
    if mode is None or not 0 <= mode < len(modes):
        return None
    return modes[mode]
