"""The screen transfer function (PixInsight's auto-STF), linked across channels.

A linear frame keeps its signal in the lowest percent of the range; the STF clips the shadows
a few MADs below the sky and bends the midtones so the sky lands on a chosen grey. "Linked"
means one transfer for all channels: colour ratios survive, where balancing each channel on
its own would paint every sky neutral grey and lose them for good.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_UINT16_FULL_SCALE_ADU = 65535.0
# Shadows stay below white, so a saturated frame still has a range to stretch (and shows white).
_MAX_SHADOWS = 1.0 - 1.0 / _UINT16_FULL_SCALE_ADU
# MAD x 1.4826 estimates the standard deviation of Gaussian noise.
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class StfConfig:
    """PixInsight's auto-STF defaults: shadows 2.8 normalised MADs below the median, sky at 0.25."""

    shadows_clip_mad: float = -2.8
    target_background: float = 0.25

    def __post_init__(self) -> None:
        if self.shadows_clip_mad > 0:
            raise ValueError(f"shadows_clip_mad must be <= 0, got {self.shadows_clip_mad}")
        if not 0.0 < self.target_background < 1.0:
            raise ValueError(f"target_background must be in (0, 1), got {self.target_background}")


@dataclass(frozen=True)
class StfParameters:
    """Shadows and highlights clip points and the midtones balance, all on the [0, 1] scale."""

    shadows: float
    midtones: float
    highlights: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.shadows < self.highlights <= 1.0:
            raise ValueError(
                f"need 0 <= shadows < highlights <= 1, got {self.shadows}, {self.highlights}"
            )
        if not 0.0 <= self.midtones <= 1.0:
            raise ValueError(f"midtones must be in [0, 1], got {self.midtones}")


def full_scale(dtype: np.dtype[np.generic]) -> float:
    """The pixel value of `dtype` that means white: division by it maps an image onto [0, 1].

    uint16 frames span 0..65535 ADU; floating data is taken to be normalised already. Raises
    ValueError for other dtypes, whose full scale is unknown.
    """
    if dtype == np.uint16:
        return _UINT16_FULL_SCALE_ADU
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise ValueError(f"images are uint16 or floating point in [0, 1], not {dtype}")


def midtones_transfer(x: npt.NDArray[np.floating], m: float) -> npt.NDArray[np.floating]:
    """MTF(x) = (m - 1) x / ((2m - 1) x - m), with x clipped to [0, 1].

    MTF(0) = 0, MTF(m) = 0.5, MTF(1) = 1, increasing in between; m = 0.5 is the identity and a
    smaller m brightens. Keeps the float dtype of `x`. Raises ValueError unless 0 <= m <= 1.
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"midtones balance must be in [0, 1], got {m}")
    clipped = np.clip(x, 0.0, 1.0)
    denominator = (2.0 * m - 1.0) * clipped - m
    # The denominator is negative on (0, 1) for every m in [0, 1]; it only vanishes at the
    # end points (x = 0 with m = 0, x = 1 with m = 1), which are set explicitly below.
    curve = (m - 1.0) * clipped / np.where(denominator == 0.0, -1.0, denominator)
    return np.where(clipped <= 0.0, 0.0, np.where(clipped >= 1.0, 1.0, curve))


def auto_stf(image: npt.NDArray[np.generic], config: StfConfig = StfConfig()) -> StfParameters:
    """One linked STF for an ``(y, x)`` or ``(y, x, c)`` image, uint16 or float in [0, 1].

    Shadows = mean median + `shadows_clip_mad` x mean normalised MAD (channel statistics are
    averaged, as PixInsight's linked auto-STF does), so a channel whose sky lies more than the
    clip below the mean sky turns black: neutralise a strong colour cast first. The midtones
    balance puts the mean median exactly on `target_background`; PixInsight skips the rescaling
    by the clipped range (1 - shadows), which leaves its sky about 0.2 x shadows brighter.
    Raises ValueError for other dtypes or shapes.
    """
    channels = _as_channels(_to_unit_range(image))
    medians = np.median(channels, axis=0)
    mads = np.median(np.abs(channels - medians), axis=0) * _MAD_TO_SIGMA
    median = float(np.mean(medians))
    shadows = min(max(median + config.shadows_clip_mad * float(np.mean(mads)), 0.0), _MAX_SHADOWS)
    background = np.array([(median - shadows) / (1.0 - shadows)])
    midtones = float(midtones_transfer(background, config.target_background)[0])
    return StfParameters(shadows=shadows, midtones=midtones)


def apply_stf(image: npt.NDArray[np.generic], params: StfParameters) -> npt.NDArray[np.float32]:
    """`image` (uint16 or float in [0, 1]) clipped to the shadows/highlights and bent by the MTF.

    Returns float32 in [0, 1] with the input's shape; the same transfer for every channel.
    """
    shadows, highlights = np.float32(params.shadows), np.float32(params.highlights)
    # Both differences in float32, so a pixel at the highlights maps to exactly 1.
    rescaled = (_to_unit_range(image) - shadows) / (highlights - shadows)
    return midtones_transfer(rescaled, params.midtones).astype(np.float32, copy=False)


def _to_unit_range(image: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    # Division, not multiplication by the reciprocal, so full scale lands exactly on 1.0.
    return image.astype(np.float32) / np.float32(full_scale(image.dtype))


def _as_channels(unit: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The pixels as rows of an ``(n, c)`` array; a 2-D image is one channel."""
    if unit.ndim == 2:
        return unit.reshape(-1, 1)
    if unit.ndim == 3:
        return unit.reshape(-1, unit.shape[2])
    raise ValueError(f"images have axes (y, x) or (y, x, c), got shape {unit.shape}")
