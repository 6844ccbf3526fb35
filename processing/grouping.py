"""Which frames go together: lights by target and settings, and the calibration each needs.

A `FrameInfo` is what grouping knows of one file: its kind, exposure, filter, binning, gain,
temperature and target, read from the FITS header (`frame_info`) or, in the daemon, from the
frame database. The rules are WBPP's and Siril's:

- lights group by target, filter, binning, exposure and gain;
- darks match a light group by binning and gain, exposure within `exposure_tolerance_s` and
  sensor temperature within `temperature_tolerance_c` (when both are known); without darks
  of the lights' exposure, the darks of the longest exposure are scaled (needs a bias);
- flats match by filter and binning; dark-flats by binning, gain and the flats' exposure;
  bias by binning and gain.

Ready-made masters (IMAGETYP "Master Dark" and the like, or Nightowl's NOWLMSTR card) count
as calibration too: a fresh master is built from raw frames when there are some, else the
matching master closest in exposure and temperature is reused. That is how a master library
carries darks and flats across nights.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from processing.debayer import BayerPattern, header_pattern


class FrameKind(enum.StrEnum):
    """Frame kinds as NINA writes IMAGETYP."""

    LIGHT = "LIGHT"
    DARK = "DARK"
    FLAT = "FLAT"
    BIAS = "BIAS"
    DARKFLAT = "DARKFLAT"


# IMAGETYP spellings of NINA, SGP, MaxIm DL, Siril, PixInsight and ASIAIR, upper-cased with
# spaces, dashes and underscores removed.
_KINDS = {
    "LIGHT": FrameKind.LIGHT,
    "LIGHTFRAME": FrameKind.LIGHT,
    "SCIENCE": FrameKind.LIGHT,
    "OBJECT": FrameKind.LIGHT,
    "DARK": FrameKind.DARK,
    "DARKFRAME": FrameKind.DARK,
    "FLAT": FrameKind.FLAT,
    "FLATFIELD": FrameKind.FLAT,
    "FLATFRAME": FrameKind.FLAT,
    "BIAS": FrameKind.BIAS,
    "BIASFRAME": FrameKind.BIAS,
    "OFFSET": FrameKind.BIAS,
    "ZERO": FrameKind.BIAS,
    "DARKFLAT": FrameKind.DARKFLAT,
    "FLATDARK": FrameKind.DARKFLAT,
}
_MASTER_PREFIX = "MASTER"


def frame_kind(imagetyp: str) -> tuple[FrameKind, bool] | None:
    """(kind, is a master) of an IMAGETYP value in any common spelling, or None if unknown."""
    squeezed = re.sub(r"[\s_\-]", "", imagetyp).upper()
    master = squeezed.startswith(_MASTER_PREFIX)
    kind = _KINDS.get(squeezed.removeprefix(_MASTER_PREFIX))
    return None if kind is None else (kind, master)


@dataclass(frozen=True)
class FrameInfo:
    """One frame file and the facts grouping needs. `shape` is ``(y, x)``; None marks an
    unknown value (it then matches anything)."""

    path: Path
    kind: FrameKind
    shape: tuple[int, int]
    exposure_s: float = 0.0
    filter_name: str | None = None
    binning: int = 1
    gain: float | None = None
    temperature_c: float | None = None
    target: str | None = None
    bayer_pattern: BayerPattern | None = None
    is_master: bool = False
    sha256: str | None = None


def frame_info(path: Path, shape: tuple[int, int], header: Mapping[str, object]) -> FrameInfo:
    """A `FrameInfo` from a FITS header. Raises ValueError naming the file when IMAGETYP is
    missing or unknown, since the frame's role cannot be guessed."""
    imagetyp = header.get("IMAGETYP")
    parsed = frame_kind(str(imagetyp)) if imagetyp is not None else None
    if parsed is None:
        raise ValueError(
            f"{path}: IMAGETYP {imagetyp!r} is not LIGHT, DARK, FLAT, BIAS or DARKFLAT "
            "(or a common spelling such as 'Light Frame', 'Flat Field', 'Offset')"
        )
    kind, master = parsed
    exposure = _number(header.get("EXPTIME", header.get("EXPOSURE")))
    try:
        pattern = header_pattern(header)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    return FrameInfo(
        path=path,
        kind=kind,
        shape=shape,
        exposure_s=exposure or 0.0,
        filter_name=_text(header.get("FILTER")),
        binning=int(_number(header.get("XBINNING")) or 1),
        gain=_number(header.get("GAIN")),
        temperature_c=_number(header.get("CCD-TEMP", header.get("SET-TEMP"))),
        target=_text(header.get("OBJECT")),
        bayer_pattern=pattern,
        is_master=master or bool(header.get("NOWLMSTR", False)),
    )


@dataclass(frozen=True)
class GroupingConfig:
    """Tolerances for matching darks to lights (and dark-flats to flats).

    - exposure_tolerance_s: 0.5 s, as NINA's and WBPP's default exposure grouping.
    - temperature_tolerance_c: 2 C: dark current doubles every ~6 C, so 2 C is ~25 %.
    """

    exposure_tolerance_s: float = 0.5
    temperature_tolerance_c: float = 2.0


@dataclass(frozen=True)
class LightGroup:
    """Lights integrated together, and the calibration matched to them.

    Each calibration tuple holds raw frames, or one ready-made master. `dark_scaling` is set
    when the darks are of another exposure than the lights.
    """

    target: str
    filter_name: str | None
    binning: int
    exposure_s: float
    gain: float | None
    lights: tuple[FrameInfo, ...]
    bias: tuple[FrameInfo, ...] = ()
    darks: tuple[FrameInfo, ...] = ()
    flats: tuple[FrameInfo, ...] = ()
    dark_flats: tuple[FrameInfo, ...] = ()
    dark_scaling: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        """`<target>_<filter>`, the stem of the integrated result's files."""
        return f"{self.target}_{self.filter_name or 'nofilter'}"


def group_frames(
    frames: Iterable[FrameInfo], config: GroupingConfig = GroupingConfig()
) -> list[LightGroup]:
    """Group the lights and match calibration to each group, ordered by name.

    A group without a usable kind of calibration gets a note saying so and is still
    integrated (uncalibrated frames stack fine, with their dust and gradients).
    """
    frames = list(frames)
    by_kind: dict[FrameKind, list[FrameInfo]] = {kind: [] for kind in FrameKind}
    for frame in frames:
        by_kind[frame.kind].append(frame)
    keyed: dict[tuple[object, ...], list[FrameInfo]] = {}
    for light in by_kind[FrameKind.LIGHT]:
        exposure = round(light.exposure_s / config.exposure_tolerance_s)
        key = (light.target or "target", light.filter_name, light.binning, exposure, light.gain)
        keyed.setdefault(key, []).append(light)
    groups = [_match(lights, by_kind, config) for lights in keyed.values()]
    return sorted(groups, key=lambda g: (g.name, g.exposure_s, g.binning))


def _match(
    lights: list[FrameInfo], by_kind: Mapping[FrameKind, list[FrameInfo]], config: GroupingConfig
) -> LightGroup:
    first = lights[0]
    exposure = sum(light.exposure_s for light in lights) / len(lights)
    temperatures = [light.temperature_c for light in lights if light.temperature_c is not None]
    temperature = sum(temperatures) / len(temperatures) if temperatures else None
    notes: list[str] = []

    def same_sensor(frame: FrameInfo) -> bool:
        return (
            frame.shape == first.shape
            and frame.binning == first.binning
            and _agree(frame.gain, first.gain, 0.0)
        )

    bias = _prefer_raw([f for f in by_kind[FrameKind.BIAS] if same_sensor(f)])
    darks_all = [
        f
        for f in by_kind[FrameKind.DARK]
        if same_sensor(f) and _agree(f.temperature_c, temperature, config.temperature_tolerance_c)
    ]
    darks = _prefer_raw(
        [f for f in darks_all if abs(f.exposure_s - exposure) <= config.exposure_tolerance_s],
        exposure,
        temperature,
    )
    dark_scaling = False
    if not darks and darks_all and bias:
        longest = max(f.exposure_s for f in darks_all)
        darks = _prefer_raw([f for f in darks_all if f.exposure_s == longest], longest, temperature)
        dark_scaling = True
        notes.append(f"no {exposure:g} s darks: {longest:g} s darks scaled by exposure")
    flats = _prefer_raw(
        [
            f
            for f in by_kind[FrameKind.FLAT]
            if f.shape == first.shape
            and f.binning == first.binning
            and f.filter_name == first.filter_name
        ]
    )
    dark_flats: tuple[FrameInfo, ...] = ()
    if flats:
        flat_exposure = flats[0].exposure_s
        dark_flats = _prefer_raw(
            [
                f
                for f in by_kind[FrameKind.DARKFLAT]
                if same_sensor(f)
                and abs(f.exposure_s - flat_exposure) <= config.exposure_tolerance_s
            ]
        )
        if not (dark_flats or bias or flats[0].is_master):
            notes.append("flats without bias or dark-flats: flats not used")
            flats = ()
    for name, found in (("darks", darks), ("flats", flats), ("bias", bias)):
        if not found:
            notes.append(f"no matching {name}")
    return LightGroup(
        target=first.target or "target",
        filter_name=first.filter_name,
        binning=first.binning,
        exposure_s=exposure,
        gain=first.gain,
        lights=tuple(sorted(lights, key=lambda f: f.path)),
        bias=bias,
        darks=darks,
        flats=flats,
        dark_flats=dark_flats,
        dark_scaling=dark_scaling,
        notes=tuple(notes),
    )


def _prefer_raw(
    frames: Sequence[FrameInfo], exposure_s: float = 0.0, temperature_c: float | None = None
) -> tuple[FrameInfo, ...]:
    """Raw frames when there are any (a fresh master), else the master closest in
    exposure, then in temperature."""
    raw = sorted((f for f in frames if not f.is_master), key=lambda f: f.path)
    if raw:
        return tuple(raw)

    def distance(master: FrameInfo) -> tuple[float, float, str]:
        cold = master.temperature_c
        apart = 0.0 if cold is None or temperature_c is None else abs(cold - temperature_c)
        return abs(master.exposure_s - exposure_s), apart, str(master.path)

    masters = sorted((f for f in frames if f.is_master), key=distance)
    return (masters[0],) if masters else ()


def _agree(a: float | None, b: float | None, tolerance: float) -> bool:
    return a is None or b is None or abs(a - b) <= tolerance + 1e-9


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _text(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None
