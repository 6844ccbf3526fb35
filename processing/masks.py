"""Masks for the finishing steps: luminance, range selection, stars, and their inverse.

A mask is a float32 ``(y, x)`` array in [0, 1]: 1 where a step acts fully, 0 where it leaves
the image alone; `blend` mixes a step's result into the image through one. Each kind has its
own frozen config; `MaskConfig` is their union and `make_mask` picks the builder from the
config's type through a table, so a recipe's mask is data, never a function name. Inversion
is a separate step (`invert_mask`): the seeds desaturate and denoise the background through
an inverted luminance mask.

Blurs are Gaussian (OpenCV, reflected borders) with sigma in pixels; a blur never takes a
mask outside [0, 1], being a weighted mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

import cv2
import numpy as np
import numpy.typing as npt
from numba import njit

from processing.stars import StarConfig, detect_stars
from processing.stretch import (
    LUMINANCE_WEIGHTS,
    LuminanceWeights,
    StfConfig,
    apply_stf,
    auto_stf,
    luminance,
)

Mask: TypeAlias = npt.NDArray[np.float32]

_MAX_BLUR_PX = 100.0
_MASK_STARS = StarConfig(max_stars=20_000, edge_margin_px=0)


def _check_blur(name: str, value: float) -> None:
    if not 0.0 <= value <= _MAX_BLUR_PX:
        raise ValueError(f"{name} must be in [0, {_MAX_BLUR_PX:g}] px, got {value}")


def _check_weights(weights: str) -> None:
    if weights not in LUMINANCE_WEIGHTS:
        raise ValueError(f"weights must be one of {sorted(LUMINANCE_WEIGHTS)}, got {weights!r}")


@dataclass(frozen=True)
class LuminanceMaskConfig:
    """The image's own brightness as a mask: bright target 1, dark sky near 0.

    - auto_stretch: put the luminance through its own auto-STF (`stf`) first, so a linear
      image (sky ~0.01) still gives a useful mask; turn off for an image already stretched.
    - blur_px: Gaussian sigma, px, 0..100: a soft mask hides the seam between treated and
      untreated pixels (0 = no blur).
    - weights: how the channels make the luminance (`processing.stretch.LuminanceWeights`).
    """

    auto_stretch: bool = True
    blur_px: float = 2.0
    weights: LuminanceWeights = "mean"
    stf: StfConfig = field(default_factory=StfConfig)

    def __post_init__(self) -> None:
        _check_blur("blur_px", self.blur_px)
        _check_weights(self.weights)


@dataclass(frozen=True)
class RangeMaskConfig:
    """PixInsight's RangeSelection on the luminance v (after an auto-STF if `auto_stretch`).

    mask = 1 for low <= v <= high, falling linearly to 0 over `fuzziness` outside:
    1 - (low - v) / fuzziness below, 1 - (v - high) / fuzziness above (clipped at 0); with
    fuzziness 0 the edges are hard. Then a Gaussian blur of sigma `blur_px` (PixInsight's
    smoothness).

    - low, high: 0 <= low <= high <= 1.
    - fuzziness: 0..1, width of the soft edges on the luminance scale.
    - blur_px: 0..100 px.
    - auto_stretch: off by default: a range is usually chosen on the image as it looks.
    """

    low: float
    high: float
    fuzziness: float = 0.0
    blur_px: float = 0.0
    auto_stretch: bool = False
    weights: LuminanceWeights = "mean"
    stf: StfConfig = field(default_factory=StfConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(
                f"low, high need 0 <= low <= high <= 1, got low={self.low}, high={self.high}"
            )
        if not 0.0 <= self.fuzziness <= 1.0:
            raise ValueError(f"fuzziness must be in [0, 1], got {self.fuzziness}")
        _check_blur("blur_px", self.blur_px)
        _check_weights(self.weights)


@dataclass(frozen=True)
class StarMaskConfig:
    """Discs over the stars `processing.stars.detect_stars` finds in the luminance.

    Each star gets a disc of radius `radius_hfr` x its half-flux radius + `grow_px` (its
    edge anti-aliased over one pixel), then the mask is blurred by `blur_px`. A Gaussian star
    of sigma s has HFR 1.18 s, so the default 2.5 HFR reaches ~3 s, where the star is down to
    1 % of its peak; bright stars' halos need a larger factor or growth.

    - radius_hfr: 0.5..20.
    - grow_px: 0..100 px added to every radius.
    - blur_px: 0..100 px Gaussian sigma.
    - stars: the detection settings. Detection works on linear and stretched images alike
      (sep subtracts its own background). The default keeps up to 20,000 stars (a mask should
      miss none; a 24 MP Milky Way field costs ~1.5 s) and stars up to the border.
    """

    radius_hfr: float = 2.5
    grow_px: float = 1.0
    blur_px: float = 1.0
    weights: LuminanceWeights = "mean"
    stars: StarConfig = field(default_factory=lambda: _MASK_STARS)

    def __post_init__(self) -> None:
        if not 0.5 <= self.radius_hfr <= 20.0:
            raise ValueError(f"radius_hfr must be in [0.5, 20], got {self.radius_hfr}")
        _check_blur("grow_px", self.grow_px)
        _check_blur("blur_px", self.blur_px)
        _check_weights(self.weights)


MaskConfig: TypeAlias = LuminanceMaskConfig | RangeMaskConfig | StarMaskConfig


def luminance_mask(
    image: npt.NDArray[np.generic], config: LuminanceMaskConfig = LuminanceMaskConfig()
) -> Mask:
    """The (optionally auto-stretched) luminance of `image`, blurred; float32 ``(y, x)``.

    `image` is ``(y, x)`` or ``(y, x, c)``, uint16 or float in [0, 1]; it is never modified.
    Raises ValueError for other shapes or dtypes.
    """
    values = _brightness(image, config.weights, config.auto_stretch, config.stf)
    return _blur(np.clip(values, 0.0, 1.0), config.blur_px)


def range_mask(image: npt.NDArray[np.generic], config: RangeMaskConfig) -> Mask:
    """1 inside [low, high] of the luminance, linear ramps of `fuzziness` outside, blurred.

    See `RangeMaskConfig` for the formula. Raises ValueError for other shapes or dtypes.
    """
    values = _brightness(image, config.weights, config.auto_stretch, config.stf)
    distance = np.maximum(
        np.float32(config.low) - values, values - np.float32(config.high)
    )  # > 0 outside the range, <= 0 inside
    if config.fuzziness > 0.0:
        selected = np.clip(1.0 - distance / np.float32(config.fuzziness), 0.0, 1.0)
    else:
        selected = (distance <= 0.0).astype(np.float32)
    return _blur(selected.astype(np.float32, copy=False), config.blur_px)


def star_mask(image: npt.NDArray[np.generic], config: StarMaskConfig = StarMaskConfig()) -> Mask:
    """Discs over the detected stars (see `StarMaskConfig`), 0 on the empty sky.

    Detection runs on the luminance; centres keep sub-pixel precision. Raises ValueError for
    other shapes or dtypes.
    """
    lum = luminance(image, config.weights)
    stars = detect_stars(lum, config.stars)
    mask = np.zeros(lum.shape, dtype=np.float32)
    radii = config.radius_hfr * stars.hfr_px + config.grow_px
    for y, x, radius in zip(stars.y, stars.x, radii, strict=True):
        if math.isfinite(radius) and radius > 0.0:
            _draw_disc(mask, float(y), float(x), float(radius))
    return _blur(mask, config.blur_px)


def make_mask(image: npt.NDArray[np.generic], config: MaskConfig) -> Mask:
    """The mask `config` describes, built by the function of its type."""
    builder = _BUILDERS[type(config)]
    return builder(image, config)


def invert_mask(mask: npt.NDArray[np.floating]) -> Mask:
    """1 - mask, float32: swaps what a step treats and what it protects.

    Raises ValueError unless `mask` is a 2-D mask in [0, 1].
    """
    return np.float32(1.0) - as_mask(mask)


def blend(
    original: npt.NDArray[np.floating],
    processed: npt.NDArray[np.floating],
    mask: npt.NDArray[np.floating] | None,
) -> npt.NDArray[np.float32]:
    """mask x processed + (1 - mask) x original, per pixel over every channel; float32.

    Where the mask is 0 the original comes back bit for bit, where it is 1 the processed
    image (finite values). `mask` None means the step acts everywhere (`processed` as
    float32). Raises ValueError when the shapes differ or the mask is not a mask.
    """
    if original.shape != processed.shape:
        raise ValueError(f"blend needs equal shapes, got {original.shape}, {processed.shape}")
    if mask is None:
        return np.array(processed, dtype=np.float32)
    weights = as_mask(mask, original.shape)
    out = np.empty(original.shape, dtype=np.float32)
    channels = original.shape[2] if original.ndim == 3 else 1
    _blend_pixels(
        np.ascontiguousarray(original, dtype=np.float32).reshape(-1, channels),
        np.ascontiguousarray(processed, dtype=np.float32).reshape(-1, channels),
        np.ascontiguousarray(weights).reshape(-1),
        out.reshape(-1, channels),
    )
    return out


def as_mask(mask: npt.NDArray[np.floating], image_shape: tuple[int, ...] | None = None) -> Mask:
    """`mask` checked (2-D, finite, in [0, 1], covering ``image_shape[:2]`` when given) and
    as float32 (the same array when it is float32 already; callers must not write into it).

    Raises ValueError naming what is wrong.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (y, x), got shape {mask.shape}")
    if image_shape is not None and mask.shape != tuple(image_shape[:2]):
        raise ValueError(f"mask shape {mask.shape} differs from the image's {image_shape[:2]}")
    if not np.issubdtype(mask.dtype, np.floating):
        raise ValueError(f"mask must be floating point in [0, 1], not {mask.dtype}")
    checked = np.asarray(mask, dtype=np.float32)
    if checked.size and not (checked.min() >= 0.0 and checked.max() <= 1.0):
        raise ValueError("mask values must be finite and in [0, 1]")
    return checked


def _brightness(
    image: npt.NDArray[np.generic], weights: LuminanceWeights, stretch: bool, stf: StfConfig
) -> npt.NDArray[np.float32]:
    lum = luminance(image, weights)
    if not stretch:
        return lum
    return apply_stf(lum, auto_stf(lum, stf))


def _blur(mask: npt.NDArray[np.float32], sigma_px: float) -> Mask:
    if sigma_px <= 0.0:
        return mask
    blurred = cv2.GaussianBlur(
        np.ascontiguousarray(mask),
        (0, 0),
        sigmaX=sigma_px,
        sigmaY=sigma_px,
        borderType=cv2.BORDER_REFLECT,
    )
    # A weighted mean stays in [0, 1]; the clip only removes float rounding.
    return np.clip(np.asarray(blurred, dtype=np.float32), 0.0, 1.0)


def _draw_disc(mask: Mask, y: float, x: float, radius: float) -> None:
    """Raise `mask` to a disc of `radius` around (y, x): 1 inside, 0 beyond radius + 1/2, the
    edge linear in the distance (a one-pixel anti-aliased rim)."""
    height, width = mask.shape
    reach = radius + 0.5
    y0, y1 = max(0, math.floor(y - reach)), min(height, math.ceil(y + reach) + 1)
    x0, x1 = max(0, math.floor(x - reach)), min(width, math.ceil(x + reach) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    rows = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(y)
    cols = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(x)
    disc = np.clip(np.float32(reach) - np.sqrt(rows * rows + cols * cols), 0.0, 1.0)
    window = mask[y0:y1, x0:x1]
    np.maximum(window, disc, out=window)


_BUILDERS: dict[type, Callable[[npt.NDArray[np.generic], MaskConfig], Mask]] = {
    LuminanceMaskConfig: luminance_mask,  # type: ignore[dict-item]
    RangeMaskConfig: range_mask,  # type: ignore[dict-item]
    StarMaskConfig: star_mask,  # type: ignore[dict-item]
}


@njit(cache=True, nogil=True)
def _blend_pixels(original: Mask, processed: Mask, weights: Mask, out: Mask) -> None:
    """One pass over ``(n, c)`` pixels (numba): numpy would need five with temporaries."""
    for i in range(original.shape[0]):
        m = weights[i]
        for c in range(original.shape[1]):
            out[i, c] = m * processed[i, c] + (np.float32(1.0) - m) * original[i, c]
