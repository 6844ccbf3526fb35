"""Curves (PixInsight's CurvesTransformation) and background desaturation, through masks.

A curve is a list of (x, y) points on [0, 1], joined by monotone piecewise cubic (PCHIP)
interpolation: it passes through every point and never overshoots them, so points that
rise give a curve that rises, with no ringing between close points. A curve is evaluated once
on a 4096-entry table; pixels read it with linear interpolation between entries (error below
1e-7 for curves of ordinary bend), in a compiled loop (numba), so a 24 MP RGB image takes a
fraction of a second.

Images are stretched float data ``(y, x, c)`` (c = 1 or 3) or ``(y, x)``, nominally in [0, 1];
every function returns a new float32 array and never modifies its input.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, fields
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
from numba import njit
from scipy.interpolate import PchipInterpolator

from processing.masks import LuminanceMaskConfig, as_mask, blend, invert_mask, luminance_mask

Points: TypeAlias = tuple[tuple[float, float], ...]
"""(x, y) points of a curve; an empty tuple leaves that channel alone."""

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

LUT_SIZE = 4096


@dataclass(frozen=True)
class CurvesConfig:
    """One curve per channel, as PixInsight's CurvesTransformation has them.

    - red, green, blue: each channel through its own curve first;
    - rgb: then every channel through this one (PixInsight's RGB/K);
    - saturation: then the HSV saturation S = (max - min) / max of each pixel through this
      curve. The pixel becomes L + f (x - L), L the mean of its channels, with f chosen so its
      saturation is curve(S): hue and L stay exactly, grey (S = 0) stays grey. Where that would
      push a channel past 1, f is capped at the largest value that does not (the saturation
      then rises less than asked, the colour is not clipped).

    Each curve is a tuple of (x, y) points in [0, 1] with x strictly increasing from 0 to 1
    (the first point has x = 0, the last x = 1), or empty for "leave alone". Lists (from JSON)
    are accepted and stored as tuples.
    """

    rgb: Points = ()
    red: Points = ()
    green: Points = ()
    blue: Points = ()
    saturation: Points = ()

    def __post_init__(self) -> None:
        for item in fields(self):
            points = _checked_points(item.name, getattr(self, item.name))
            object.__setattr__(self, item.name, points)

    def colour_curves_set(self) -> bool:
        """Whether any curve other than rgb changes something (those need an RGB image)."""
        return any(
            not _is_identity(points)
            for points in (self.red, self.green, self.blue, self.saturation)
        )


def curve_table(points: Points, size: int = LUT_SIZE) -> F64:
    """The curve through `points` sampled at ``size`` evenly spaced x in [0, 1] (PCHIP).

    Empty points give the identity. Raises ValueError for invalid points (see `CurvesConfig`).
    """
    checked = _checked_points("points", points)
    grid = np.linspace(0.0, 1.0, size)
    return _curve(checked)(grid)


def apply_curves(
    image: npt.NDArray[np.floating],
    config: CurvesConfig,
    mask: npt.NDArray[np.floating] | None = None,
) -> F32:
    """The image through the curves of `config` (channel curves, rgb, then saturation),
    applied through `mask` (``(y, x)`` in [0, 1]): out = mask x curved + (1 - mask) x image,
    so pixels where the mask is 0 come back exactly as they were.

    Values are clipped to [0, 1] by any curve that changes them; a channel whose curves are
    all empty passes unchanged. Raises ValueError for a non-float image, other shapes, a mask
    that does not fit, or colour curves (red, green, blue, saturation) on a mono image.
    """
    data = _float_image(image)
    planar = data if data.ndim == 3 else data[..., None]
    channels = planar.shape[2]
    if channels == 1 and config.colour_curves_set():
        raise ValueError("red, green, blue and saturation curves need an RGB image (y, x, 3)")
    curved = np.array(planar, dtype=np.float32, order="C", copy=True)
    pixels = curved.reshape(-1, channels)  # a view: the kernels work in place
    per_channel = (config.red, config.green, config.blue) if channels == 3 else ((),)
    for channel, points in enumerate(per_channel):
        if _is_identity(points) and _is_identity(config.rgb):
            continue
        # The channel's curve, then the rgb curve, composed exactly at the table's points.
        table = _curve(config.rgb)(_curve(points)(np.linspace(0.0, 1.0, LUT_SIZE)))
        _lookup_channel(pixels, channel, np.clip(table, 0.0, 1.0))
    if channels == 3 and not _is_identity(config.saturation):
        _saturate(pixels, np.clip(curve_table(config.saturation), 0.0, 1.0))
    result = curved.reshape(data.shape)
    return result if mask is None else blend(data, result, mask)


def desaturate(
    image: npt.NDArray[np.floating],
    amount: float,
    mask: npt.NDArray[np.floating] | None = None,
) -> F32:
    """Pull each pixel's colour towards its grey (the mean of its channels) by amount x mask.

    out = x - amount x mask x (x - L), L = mean of the pixel's channels: `amount` 0 keeps the
    colour, 1 makes the masked pixels grey; L is kept. `mask` None means the background:
    the inverse of the image's auto-stretched luminance mask (`LuminanceMaskConfig()`), so a
    linear or stretched image alike has its sky greyed and its bright target kept. A mono
    image is returned unchanged (as float32). Raises ValueError for an amount outside [0, 1],
    a non-float image, other shapes or a mask that does not fit.
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    data = _float_image(image)
    weights = as_mask(
        invert_mask(luminance_mask(data, LuminanceMaskConfig())) if mask is None else mask,
        data.shape,
    )
    out = np.array(data, dtype=np.float32, order="C", copy=True)
    if data.ndim == 3 and data.shape[2] > 1:
        _desaturate_pixels(out.reshape(-1, data.shape[2]), weights.reshape(-1), amount)
    return out


def _curve(points: Points) -> PchipInterpolator | _Identity:
    if _is_identity(points):
        return _Identity()
    xs, ys = zip(*points, strict=True)
    return PchipInterpolator(np.array(xs), np.array(ys))


class _Identity:
    def __call__(self, x: F64) -> F64:
        return x


def _is_identity(points: Points) -> bool:
    return all(x == y for x, y in points)


def _checked_points(name: str, points: object) -> Points:
    """`points` as a tuple of (x, y) float pairs; ValueError naming `name` otherwise."""
    try:
        pairs = tuple((float(x), float(y)) for x, y in points)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a sequence of (x, y) pairs, got {points!r}") from e
    if not pairs:
        return ()
    if len(pairs) < 2:
        raise ValueError(f"{name} needs at least 2 points, got {len(pairs)}")
    if not all(0.0 <= v <= 1.0 for pair in pairs for v in pair):  # NaN fails too
        raise ValueError(f"{name}: every x and y must be in [0, 1], got {pairs}")
    xs = [x for x, _ in pairs]
    if any(b <= a for a, b in itertools.pairwise(xs)):
        raise ValueError(f"{name}: x must increase strictly, got {xs}")
    if xs[0] != 0.0 or xs[-1] != 1.0:
        raise ValueError(f"{name} must start at x = 0 and end at x = 1, got {xs[0]}..{xs[-1]}")
    return pairs


def _float_image(image: npt.NDArray[np.floating]) -> F32:
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"curves take float images in [0, 1], not {image.dtype}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        raise ValueError(f"images have axes (y, x) or (y, x, c), c 1 or 3; got {image.shape}")
    return np.asarray(image, dtype=np.float32)


@njit(cache=True, nogil=True)
def _table_value(table: F64, v: float) -> float:
    """Linear interpolation in a table of a curve on [0, 1]; v clipped (NaN reads 0)."""
    if not v > 0.0:
        return float(table[0])
    last = table.shape[0] - 1
    if v >= 1.0:
        return float(table[last])
    position = v * last
    i = int(position)
    return float(table[i] + (position - i) * (table[i + 1] - table[i]))


@njit(cache=True, nogil=True)
def _lookup_channel(pixels: F32, channel: int, table: F64) -> None:
    """In place on one channel of ``(n, c)`` pixels: each value through `table`."""
    for i in range(pixels.shape[0]):
        pixels[i, channel] = _table_value(table, float(pixels[i, channel]))


@njit(cache=True, nogil=True)
def _saturate(rgb: F32, table: F64) -> None:
    """In place on ``(n, 3)`` pixels: HSV saturation through `table`, hue and mean kept."""
    for i in range(rgb.shape[0]):
        r = min(max(float(rgb[i, 0]), 0.0), 1.0)
        g = min(max(float(rgb[i, 1]), 0.0), 1.0)
        b = min(max(float(rgb[i, 2]), 0.0), 1.0)
        high = max(r, g, b)
        chroma = high - min(r, g, b)
        mean = (r + g + b) / 3.0
        factor = 1.0
        if chroma > 0.0 and high > mean:
            wanted = _table_value(table, chroma / high)
            # S' = f C / (L + f (max - L)) solved for f; the denominator is >= L - min > 0.
            denominator = chroma - wanted * (high - mean)
            factor = wanted * mean / denominator if denominator > 0.0 else math.inf
            factor = max(min(factor, (1.0 - mean) / (high - mean)), 0.0)
        rgb[i, 0] = mean + factor * (r - mean)
        rgb[i, 1] = mean + factor * (g - mean)
        rgb[i, 2] = mean + factor * (b - mean)


@njit(cache=True, nogil=True)
def _desaturate_pixels(pixels: F32, weights: F32, amount: float) -> None:
    """In place on ``(n, c)`` pixels: x - amount m (x - mean); untouched where m = 0."""
    channels = pixels.shape[1]
    for i in range(pixels.shape[0]):
        pull = np.float32(amount * weights[i])
        if pull == 0.0:
            continue
        total = np.float32(0.0)
        for c in range(channels):
            total += pixels[i, c]
        mean = total / np.float32(channels)
        for c in range(channels):
            pixels[i, c] = pixels[i, c] - pull * (pixels[i, c] - mean)
