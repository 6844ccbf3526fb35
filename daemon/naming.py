"""Frame file names from a NINA-style pattern, kept inside the frames root whatever the input.

Tokens (as NINA spells them): ``$$TARGETNAME$$``, ``$$DATEMINUS12$$`` (the night's date: local
date 12 hours earlier), ``$$DATE$$``, ``$$TIME$$``, ``$$DATETIME$$``, ``$$IMAGETYPE$$``,
``$$FILTER$$``, ``$$EXPOSURETIME$$``, ``$$SENSORTEMP$$``, ``$$SETTEMP$$``, ``$$GAIN$$``,
``$$OFFSET$$``, ``$$BINNING$$``, ``$$FRAMENR$$``, ``$$CAMERA$$``, ``$$READOUTMODE$$``.
``/`` in the pattern separates folders; every value is sanitised so that it can neither add
folders nor climb out of the root (a target named ``../../etc`` becomes ``_.._etc``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import PurePosixPath

DEFAULT_PATTERN = (
    "$$TARGETNAME$$/$$DATEMINUS12$$/$$IMAGETYPE$$/"
    "$$DATETIME$$_$$FILTER$$_$$EXPOSURETIME$$s_$$FRAMENR$$"
)
TOKENS = frozenset(
    {
        "TARGETNAME",
        "DATEMINUS12",
        "DATE",
        "TIME",
        "DATETIME",
        "IMAGETYPE",
        "FILTER",
        "EXPOSURETIME",
        "SENSORTEMP",
        "SETTEMP",
        "GAIN",
        "OFFSET",
        "BINNING",
        "FRAMENR",
        "CAMERA",
        "READOUTMODE",
    }
)
_TOKEN = re.compile(r"\$\$([A-Z0-9]+)\$\$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+()\- ]")


def night_date(moment_utc: datetime, timezone: tzinfo) -> date:
    """The observing night a moment belongs to: the local date 12 hours earlier."""
    return (moment_utc.astimezone(timezone) - timedelta(hours=12)).date()


def validate_pattern(pattern: str) -> str:
    """Return `pattern` or raise `ValueError` naming an unknown token or an empty segment."""
    unknown = sorted(set(_TOKEN.findall(pattern)) - TOKENS)
    if unknown:
        raise ValueError(
            f"unknown token(s) {', '.join(f'$${t}$$' for t in unknown)}; "
            f"known: {', '.join(sorted(TOKENS))}"
        )
    if any(not part.strip() for part in pattern.split("/")):
        raise ValueError("the pattern has an empty folder name (a leading, trailing or '//')")
    return pattern


@dataclass(frozen=True)
class FrameNaming:
    """What a frame's file name can be made of."""

    target_name: str | None
    image_type: str
    filter_name: str | None
    exposure_s: float
    exposure_start_utc: datetime
    sensor_temperature_c: float | None
    set_point_c: float | None
    gain: int | None
    offset: int | None
    bin_x: int
    bin_y: int
    frame_number: int
    camera_name: str | None
    readout_mode: int | None


def sanitise(value: str) -> str:
    """One safe path segment: no separators, no leading dot, nothing outside a small alphabet."""
    cleaned = _UNSAFE.sub("_", value.replace("/", "_").replace("\\", "_")).strip()
    cleaned = cleaned.lstrip(".") or "_"
    return cleaned[:120]


def render(pattern: str, naming: FrameNaming, timezone: tzinfo) -> PurePosixPath:
    """The frame's path relative to the frames root, with ``.fits`` appended."""
    local = naming.exposure_start_utc.astimezone(timezone)
    values = {
        "TARGETNAME": naming.target_name or "NoTarget",
        "DATEMINUS12": night_date(naming.exposure_start_utc, timezone).isoformat(),
        "DATE": local.strftime("%Y-%m-%d"),
        "TIME": local.strftime("%H-%M-%S"),
        "DATETIME": local.strftime("%Y-%m-%d_%H-%M-%S"),
        "IMAGETYPE": naming.image_type,
        "FILTER": naming.filter_name or "NoFilter",
        "EXPOSURETIME": f"{naming.exposure_s:.2f}",
        "SENSORTEMP": _number(naming.sensor_temperature_c),
        "SETTEMP": _number(naming.set_point_c),
        "GAIN": "" if naming.gain is None else str(naming.gain),
        "OFFSET": "" if naming.offset is None else str(naming.offset),
        "BINNING": f"{naming.bin_x}x{naming.bin_y}",
        "FRAMENR": f"{naming.frame_number:04d}",
        "CAMERA": naming.camera_name or "",
        "READOUTMODE": "" if naming.readout_mode is None else str(naming.readout_mode),
    }
    parts = []
    for segment in validate_pattern(pattern).split("/"):
        text = _TOKEN.sub(lambda m: values[m.group(1)].replace("/", "_"), segment)
        parts.append(sanitise(text))
    parts[-1] += ".fits"
    return PurePosixPath(*parts)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
