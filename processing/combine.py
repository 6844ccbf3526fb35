"""Channel combination: mono masters of one target into one colour image.

The masters are integrated on one common pixel grid, float32 ``(y, x)`` (or ``(y, x, 1)``),
linear, 1.0 = full scale. Three combinations:

- RGB: three broadband masters stacked as they are (colour calibration comes later).
- Narrowband palettes (SHO, HOO): each line is linear-fitted to H-alpha first, so every
  channel shares Ha's background and signal scale and no line paints the sky or swamps the
  others merely because its exposure or filter throughput differed.
- LRGB: a luminance master replaces the lightness of an RGB image while its colour is kept.

`channel_of` maps a FITS ``FILTER`` name onto one of the channel names in `CHANNELS`, so a
job can group its masters and say with `missing_channels` what a combination still lacks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import numpy as np
import numpy.typing as npt

from processing.normalize import MAD_TO_SIGMA

log = logging.getLogger(__name__)

Plane = npt.NDArray[np.floating]

CHANNELS = ("L", "R", "G", "B", "Ha", "OIII", "SII")
"""The channel names this module speaks: luminance, broadband R, G, B, and three lines."""

RGB_CHANNELS = ("R", "G", "B")
LRGB_CHANNELS = ("L", "R", "G", "B")

# FILTER names after lower-casing and dropping blanks, hyphens and underscores.
_FILTER_ALIASES: dict[str, str] = {
    "r": "R",
    "red": "R",
    "g": "G",
    "green": "G",
    "b": "B",
    "blue": "B",
    "l": "L",
    "lum": "L",
    "luminance": "L",
    "clear": "L",
    "ha": "Ha",
    "halpha": "Ha",
    "oiii": "OIII",
    "o3": "OIII",
    "sii": "SII",
    "s2": "SII",
}


class Palette(StrEnum):
    """A narrowband palette: which line goes to R, G and B (see `palette_channels`)."""

    SHO = "SHO"
    HOO = "HOO"


_PALETTE_CHANNELS: dict[Palette, tuple[str, str, str]] = {
    Palette.SHO: ("SII", "Ha", "OIII"),
    Palette.HOO: ("Ha", "OIII", "OIII"),
}

# Every palette is fitted to this line: the strongest in emission nebulae, usually the
# cleanest master.
PALETTE_REFERENCE = "Ha"

# sRGB (IEC 61966-2-1) primaries, D65 white: linear RGB -> CIE XYZ. Row 2 is the luminance Y.
_XYZ_FROM_RGB = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
# The white point is the XYZ of RGB = (1, 1, 1): full scale in every channel is white.
_WHITE_XYZ = _XYZ_FROM_RGB.sum(axis=1)
# CIE constants, exact: the cube root is replaced by a line below EPSILON.
_LAB_EPSILON = 216.0 / 24389.0
_LAB_KAPPA = 24389.0 / 27.0
_LAB_F_EPSILON = 6.0 / 29.0

# Above this many pixels the statistics of a fit are taken on a regular subsample; a few
# million pixels fix a sky level and a mean of the brightest 0.5 % far better than a fit needs.
_MAX_FIT_SAMPLES = 2_000_000
_BACKGROUND_ITERATIONS = 10


@dataclass(frozen=True)
class LinearFitConfig:
    """How `linear_fit` measures background and signal.

    "The signal" is the mean of the pixels at or above the `signal_percentile` (in (50, 100))
    level: the brightest (100 - p) % of the pixels, which should be stars and nebula standing
    clearly above the sky, not noise. A mean of many pixels, not the one percentile value,
    so the noise of each image hardly moves it. `background_clip_sigma` (> 0) is the sigma
    clip that finds the sky peak.
    Pixels at or above `saturation` (in (0, 1]) in either image, and non-finite ones, are
    left out of both, so a star saturated in one channel only does not skew the fit.
    """

    signal_percentile: float = 99.5
    background_clip_sigma: float = 3.0
    saturation: float = 0.95

    def __post_init__(self) -> None:
        if not 50.0 < self.signal_percentile < 100.0:
            raise ValueError(
                f"signal_percentile must be in (50, 100), got {self.signal_percentile}"
            )
        if not self.background_clip_sigma > 0.0:
            raise ValueError(f"background_clip_sigma must be > 0, got {self.background_clip_sigma}")
        if not 0.0 < self.saturation <= 1.0:
            raise ValueError(f"saturation must be in (0, 1], got {self.saturation}")


@dataclass(frozen=True)
class LrgbConfig:
    """Options of `combine_lrgb`.

    `method`: "lab" replaces CIE L* and keeps a*, b* (PixInsight's LRGBCombination in spirit);
    "ratio" scales the linear RGB by new / old luminance, which keeps the channel ratios
    exactly wherever the old luminance exceeds `ratio_floor` (full-scale units, in (0, 1));
    below it the colour differences from grey are scaled by 1 + (new - old) / floor instead,
    since a ratio taken of a luminance that is mostly noise would be noise.
    `lightness_weight` in [0, 1]: how much of the new lightness comes from L (0 keeps the RGB
    lightness, 1 takes L's alone). `chroma` in [0, 10] scales the colour (1 keeps it, 0 gives
    grey, above 1 saturates). `fit` is how L is matched to the RGB luminance first.
    """

    method: Literal["lab", "ratio"] = "lab"
    lightness_weight: float = 1.0
    chroma: float = 1.0
    ratio_floor: float = 1e-3
    fit: LinearFitConfig = field(default_factory=LinearFitConfig)

    def __post_init__(self) -> None:
        if self.method not in ("lab", "ratio"):
            raise ValueError(f"method must be 'lab' or 'ratio', got {self.method!r}")
        if not 0.0 <= self.lightness_weight <= 1.0:
            raise ValueError(f"lightness_weight must be in [0, 1], got {self.lightness_weight}")
        if not 0.0 <= self.chroma <= 10.0:
            raise ValueError(f"chroma must be in [0, 10], got {self.chroma}")
        if not 0.0 < self.ratio_floor < 1.0:
            raise ValueError(f"ratio_floor must be in (0, 1), got {self.ratio_floor}")


def channel_of(filter_name: str) -> str | None:
    """The channel name (one of `CHANNELS`) of a FITS ``FILTER`` value, or None if unknown.

    Case, blanks, hyphens and underscores are ignored: "H-alpha", "Halpha" and "ha" are Ha;
    "O3" is OIII, "S2" is SII; "Lum", "Luminance" and "Clear" are L.
    """
    key = "".join(ch for ch in filter_name.lower() if ch not in " -_\t")
    return _FILTER_ALIASES.get(key)


def palette_channels(palette: Palette) -> tuple[str, str, str]:
    """The channels a palette puts into R, G and B, in that order."""
    return _PALETTE_CHANNELS[Palette(palette)]


def missing_channels(available: Iterable[str], wanted: Palette | Iterable[str]) -> list[str]:
    """The channels of `wanted` not in `available`, in `wanted`'s order, each once.

    Names on both sides may be FILTER names ("Red", "O3"); they are compared as channel
    names. `wanted` may be a `Palette` (or its name) or names such as `LRGB_CHANNELS`.
    Raises ValueError for a bare string that names no palette.
    """
    if isinstance(wanted, str):
        try:
            wanted = palette_channels(Palette(wanted))
        except ValueError as e:
            names = ", ".join(p.value for p in Palette)
            raise ValueError(f"wanted {wanted!r} is no palette ({names})") from e
    have = {_canonical(name) for name in available}
    missing: list[str] = []
    for name in wanted:
        channel = _canonical(name)
        if channel not in have and channel not in missing:
            missing.append(channel)
    return missing


def combine_rgb(r: Plane, g: Plane, b: Plane) -> npt.NDArray[np.float32]:
    """R, G, B masters ``(y, x)`` or ``(y, x, 1)`` stacked into a float32 ``(y, x, 3)`` image.

    No scaling: white balance belongs to colour calibration. Raises ValueError naming the
    channel whose shape is not a plane or differs from R's.
    """
    planes = [_as_plane(r, "R"), _as_plane(g, "G"), _as_plane(b, "B")]
    for name, plane in zip(RGB_CHANNELS[1:], planes[1:], strict=True):
        if plane.shape != planes[0].shape:
            raise ValueError(f"channel {name} has shape {plane.shape}, R has {planes[0].shape}")
    return np.stack(planes, axis=-1)


def linear_fit(
    channel: Plane, reference: Plane, config: LinearFitConfig = LinearFitConfig()
) -> tuple[float, float]:
    """(scale, offset) so that ``scale * channel + offset`` matches `reference`'s levels.

    Not a regression but a match of two levels. Scale: the distance from the sky (an
    iterated sigma-clipped median, so nebulosity does not pull it up) to the mean of the
    brightest pixels (`LinearFitConfig`), reference over channel. Offset: the median of
    ``reference - scale * channel`` over the pixels that are sky in both, so the skies meet
    pixel by pixel and faint wings hidden in either image's noise mostly cancel. Unlike a
    least-squares line through the scatter of two lines' images (PixInsight's LinearFit), it
    neither needs the channels to be correlated pixel by pixel nor is it flattened by noise
    in `channel`. Every statistic is affine equivariant, so for ``reference = a * channel +
    c`` (a > 0) it returns (a, c). Both images must have the same shape (one pixel grid).
    Raises ValueError for different shapes, too few usable pixels, or an image with no
    signal above its sky.
    """
    x = np.asarray(channel, dtype=np.float32)
    y = np.asarray(reference, dtype=np.float32)
    if x.shape != y.shape:
        raise ValueError(f"channel has shape {x.shape}, reference has {y.shape}")
    x, y = x.reshape(-1), y.reshape(-1)
    step = max(1, -(-x.size // _MAX_FIT_SAMPLES))
    x, y = x[::step], y[::step]
    usable = np.isfinite(x) & np.isfinite(y) & (x < config.saturation) & (y < config.saturation)
    if np.count_nonzero(usable) < 16:
        raise ValueError(
            f"only {np.count_nonzero(usable)} pixels are finite and below saturation "
            f"{config.saturation} in both images; need at least 16"
        )
    x, y = x[usable], y[usable]
    clip = config.background_clip_sigma
    sky_x, sigma_x = _sky_level(x, clip)
    sky_y, sigma_y = _sky_level(y, clip)
    signal_x = _tail_mean(x, config.signal_percentile) - sky_x
    signal_y = _tail_mean(y, config.signal_percentile) - sky_y
    if not signal_x > 0.0:
        raise ValueError(
            f"channel has no signal above its sky: its brightest pixels are {signal_x:+.3g} "
            "from the sky"
        )
    if not signal_y > 0.0:
        raise ValueError(
            f"reference has no signal above its sky: its brightest pixels are {signal_y:+.3g} "
            "from the sky"
        )
    scale = signal_y / signal_x
    sky = (np.abs(x - sky_x) < clip * sigma_x) & (np.abs(y - sky_y) < clip * sigma_y)
    if np.count_nonzero(sky) >= 16:
        offset = float(np.median(y[sky] - np.float32(scale) * x[sky]))
    else:
        offset = sky_y - scale * sky_x
    log.debug("linear fit: scale %.6g, offset %.6g", scale, offset)
    return scale, offset


def fit_to(
    channel: Plane, reference: Plane, config: LinearFitConfig = LinearFitConfig()
) -> npt.NDArray[np.float32]:
    """`channel` rescaled by `linear_fit` onto `reference`'s sky and signal; float32, same shape.

    Raises what `linear_fit` raises.
    """
    scale, offset = linear_fit(channel, reference, config)
    out = np.asarray(channel, dtype=np.float32) * np.float32(scale) + np.float32(offset)
    return out.astype(np.float32, copy=False)


def combine_palette(
    channels: Mapping[str, Plane],
    palette: Palette,
    fit: LinearFitConfig = LinearFitConfig(),
) -> npt.NDArray[np.float32]:
    """A narrowband palette image float32 ``(y, x, 3)`` from masters keyed by channel name.

    Keys may be FILTER names ("H-alpha", "O3"). Ha is the reference and is kept as it is;
    every other line is `fit_to` Ha first. Channels the palette does not use are ignored.
    Raises ValueError naming missing channels ("palette SHO needs SII; have Ha, OIII") or a
    shape that differs from Ha's, and what `linear_fit` raises.
    """
    palette = Palette(palette)
    by_channel: dict[str, Plane] = {}
    for key, plane in channels.items():
        by_channel.setdefault(_canonical(key), plane)
    wanted = palette_channels(palette)
    missing = missing_channels(by_channel, (*wanted, PALETTE_REFERENCE))
    if missing:
        have = ", ".join(sorted(by_channel, key=_channel_order)) or "none"
        raise ValueError(f"palette {palette.value} needs {', '.join(missing)}; have {have}")
    reference = _as_plane(by_channel[PALETTE_REFERENCE], PALETTE_REFERENCE)
    fitted: dict[str, npt.NDArray[np.float32]] = {PALETTE_REFERENCE: reference}
    for name in dict.fromkeys(wanted):
        if name == PALETTE_REFERENCE:
            continue
        plane = _as_plane(by_channel[name], name)
        if plane.shape != reference.shape:
            raise ValueError(
                f"channel {name} has shape {plane.shape}, {PALETTE_REFERENCE} has {reference.shape}"
            )
        fitted[name] = fit_to(plane, reference, fit)
    return np.stack([fitted[name] for name in wanted], axis=-1)


def rgb_luminance(rgb: Plane) -> npt.NDArray[np.float32]:
    """The CIE Y (relative luminance) of linear sRGB-primaries data ``(y, x, 3)``, float32."""
    image = _as_rgb(rgb, "rgb")
    y: npt.NDArray[np.float32] = image @ _XYZ_FROM_RGB[1].astype(np.float32)
    return y


def linear_rgb_to_lab(rgb: Plane) -> npt.NDArray[np.float32]:
    """CIE L*a*b* (D65) of linear RGB ``(y, x, 3)`` taken as linear-light sRGB primaries.

    No sRGB transfer curve: the data are linear already, and RGB = (1, 1, 1) (full scale)
    is the white, L* = 100. Uses the exact CIE constants and extends the linear segment to
    negative values, so it inverts exactly (`lab_to_linear_rgb`) on noisy data around zero,
    where skimage's lab2xyz would clip and warn.
    """
    image = _as_rgb(rgb, "rgb")
    xyz = image @ (_XYZ_FROM_RGB / _WHITE_XYZ[:, None]).T.astype(np.float32)
    f = _lab_f(xyz)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def lab_to_linear_rgb(lab: Plane) -> npt.NDArray[np.float32]:
    """The inverse of `linear_rgb_to_lab`: CIE L*a*b* ``(y, x, 3)`` to linear RGB, float32."""
    values = _as_rgb(lab, "lab")
    f = np.empty_like(values)
    f[..., 1] = (values[..., 0] + 16.0) / 116.0
    f[..., 0] = f[..., 1] + values[..., 1] / 500.0
    f[..., 2] = f[..., 1] - values[..., 2] / 200.0
    xyz = _lab_f_inverse(f)
    matrix = (_RGB_FROM_XYZ * _WHITE_XYZ[None, :]).T.astype(np.float32)
    out: npt.NDArray[np.float32] = xyz @ matrix
    return out


def combine_lrgb(
    luminance: Plane, rgb: Plane, config: LrgbConfig = LrgbConfig()
) -> npt.NDArray[np.float32]:
    """LRGB: `luminance` ``(y, x)`` replaces the lightness of linear `rgb` ``(y, x, 3)``.

    L is first `fit_to` the RGB image's own luminance (CIE Y), so a longer or clearer L
    exposure brings no jump in level; then the new lightness is ``w * L + (1 - w) * Y`` with
    w = `lightness_weight`. With "lab" that blend is made on CIE L* (the L* of the linear
    luminance, white = full scale) and a*, b* (times `chroma`) are kept; with "ratio" see
    `LrgbConfig`. Either way the result's CIE Y equals the new lightness. Returns linear
    float32 ``(y, x, 3)``. Raises ValueError for shapes that differ and what `linear_fit`
    raises.
    """
    image = _as_rgb(rgb, "rgb")
    lum = _as_plane(luminance, "L")
    if lum.shape != image.shape[:2]:
        raise ValueError(f"channel L has shape {lum.shape}, RGB has {image.shape[:2]}")
    old_y = rgb_luminance(image)
    fitted = fit_to(lum, old_y, config.fit)
    weight = np.float32(config.lightness_weight)
    if config.method == "lab":
        lab = linear_rgb_to_lab(image)
        new_lightness = 116.0 * _lab_f(fitted) - 16.0
        lab[..., 0] = weight * new_lightness + (1.0 - weight) * lab[..., 0]
        lab[..., 1:] *= np.float32(config.chroma)
        return lab_to_linear_rgb(lab)
    new_y = weight * fitted + (1.0 - weight) * old_y
    floor = np.float32(config.ratio_floor)
    # Above the floor the gain is new Y / old Y, so out = rgb x gain; below it the floor
    # divides, so a luminance of noise around zero cannot blow the colour up. Continuous, and
    # exactly 1 where the lightness is unchanged.
    gain = 1.0 + (new_y - old_y) / np.maximum(old_y, floor)
    colour = (image - old_y[..., None]) * np.float32(config.chroma)
    out = new_y[..., None] + colour * gain[..., None]
    return out.astype(np.float32, copy=False)


def _lab_f(t: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """CIE f(t): cube root above EPSILON, the tangent-matched line below (and below zero)."""
    linear = (_LAB_KAPPA * t + 16.0) / 116.0
    cube = np.cbrt(np.maximum(t, _LAB_EPSILON))
    return np.where(t > _LAB_EPSILON, cube, linear).astype(np.float32, copy=False)


def _lab_f_inverse(f: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    linear = (116.0 * f - 16.0) / _LAB_KAPPA
    return np.where(f > _LAB_F_EPSILON, f**3, linear).astype(np.float32, copy=False)


def _sky_level(values: npt.NDArray[np.float32], clip_sigma: float) -> tuple[float, float]:
    """(level, sigma) of the sky: the median of the pixels within `clip_sigma` MAD-sigmas of
    it, iterated, and the MAD-sigma of those pixels.

    Each pass clips around the last level with the spread of the pixels it kept, so the
    level walks down from the median of sky plus nebula to the peak of the sky alone.
    """
    kept = values
    level = float(np.median(kept))
    sigma = 0.0
    for _ in range(_BACKGROUND_ITERATIONS):
        sigma = MAD_TO_SIGMA * float(np.median(np.abs(kept - level)))
        if sigma == 0.0:
            break
        kept = values[np.abs(values - level) < clip_sigma * sigma]
        new_level = float(np.median(kept))
        if new_level == level:
            break
        level = new_level
    return level, sigma


def _tail_mean(values: npt.NDArray[np.float32], percentile: float) -> float:
    """Mean of the values at or above their `percentile` (affine equivariant for scale > 0)."""
    threshold = np.percentile(values, percentile)
    return float(np.mean(values[values >= threshold], dtype=np.float64))


def _canonical(name: str) -> str:
    return channel_of(name) or name


def _channel_order(name: str) -> tuple[int, str]:
    return (CHANNELS.index(name) if name in CHANNELS else len(CHANNELS), name)


def _as_plane(image: Plane, name: str) -> npt.NDArray[np.float32]:
    """A float32 ``(y, x)`` view or copy of a ``(y, x)`` or ``(y, x, 1)`` master; never written."""
    plane = np.asarray(image, dtype=np.float32)
    if plane.ndim == 3 and plane.shape[2] == 1:
        plane = plane[..., 0]
    if plane.ndim != 2:
        raise ValueError(f"channel {name} must have axes (y, x), got shape {plane.shape}")
    return plane


def _as_rgb(image: Plane, name: str) -> npt.NDArray[np.float32]:
    values = np.asarray(image, dtype=np.float32)
    if values.ndim != 3 or values.shape[2] != 3:
        raise ValueError(f"{name} must have axes (y, x, 3), got shape {values.shape}")
    return values
