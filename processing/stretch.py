"""Stretches from linear to display: the screen transfer function, histogram transformation,
arcsinh and generalised hyperbolic stretches.

A linear frame keeps its signal in the lowest percent of the range; the STF clips the shadows
a few MADs below the sky and bends the midtones so the sky lands on a chosen grey. "Linked"
means one transfer for all channels: colour ratios survive, where balancing each channel on
its own would paint every sky neutral grey and lose them for good. The arcsinh stretch keeps
colour by stretching a luminance and scaling the channels of a pixel alike; the generalised
hyperbolic stretch (GHS) is a family of curves that put the contrast where the user asks.

The functions take ``(y, x)`` or ``(y, x, c)`` images (uint16 ADU or float in [0, 1]) and never
modify them; the stretches return float32 in [0, 1] of the input's shape. Long formulas run
in bands of rows (`map_blocks`), so a 24 MP RGB frame needs no gigabytes of temporaries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from processing.normalize import MAD_TO_SIGMA

_UINT16_FULL_SCALE_ADU = 65535.0
# Shadows stay below white, so a saturated frame still has a range to stretch (and shows white).
_MAX_SHADOWS = 1.0 - 1.0 / _UINT16_FULL_SCALE_ADU
# Pixels per block in `map_blocks`: ~1 MB of float32 per temporary, so the many temporaries of
# a curve stay in cache and a 24 MP RGB image does not need gigabytes of scratch memory.
_BLOCK_PIXELS = 1 << 18
# A luminance this small stands for 0 in the arcsinh stretch (a normal float32 number).
_TINY_LUMINANCE = np.float32(1e-30)
# Channel statistics come from at most this many pixels per channel, a regular subsample: the
# median of 4 M Gaussian samples scatters by 1.25 sigma / sqrt(4 M) ~ 0.0006 sigma, far below
# what a stretch shows, and a 24 MP frame's STF then costs ~0.1 s instead of ~1 s per channel.
_MAX_STATISTICS_PIXELS = 1 << 22

LuminanceWeights = Literal["mean", "rec709"]
"""How channels are weighted into a luminance: ``mean`` (equal thirds, Siril's "even" and
PixInsight's default for camera RGB, right for data not yet in a calibrated colour space) or
``rec709`` (0.2126 R + 0.7152 G + 0.0722 B, Siril's "human-weighted", for colour-calibrated
linear sRGB primaries)."""

LUMINANCE_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "mean": (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0),
    "rec709": (0.2126, 0.7152, 0.0722),
}

FloatArray = npt.NDArray[np.floating]
_F = TypeVar("_F", bound=np.floating)


@dataclass(frozen=True)
class StfConfig:
    """PixInsight's auto-STF defaults: shadows 2.8 normalised MADs below the median, sky at 0.25.

    linked: one transfer for all channels from the averaged channel statistics (keeps colour
    ratios), or one per channel (`auto_stf_channels`), which puts every channel's sky on
    `target_background` and so neutralises the background for good.
    """

    shadows_clip_mad: float = -2.8
    target_background: float = 0.25
    linked: bool = True

    def __post_init__(self) -> None:
        if self.shadows_clip_mad > 0:
            raise ValueError(f"shadows_clip_mad must be <= 0, got {self.shadows_clip_mad}")
        if not 0.0 < self.target_background < 1.0:
            raise ValueError(f"target_background must be in (0, 1), got {self.target_background}")


@dataclass(frozen=True)
class StfParameters:
    """Shadows and highlights clip points and the midtones balance, all on the [0, 1] scale.

    The same three numbers define PixInsight's HistogramTransformation, hence the alias
    `HistogramTransform`: x -> MTF((x - shadows) / (highlights - shadows), midtones), clipped.
    """

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


HistogramTransform = StfParameters


@dataclass(frozen=True)
class ArcsinhConfig:
    """The colour-preserving arcsinh stretch (Siril's and PixInsight's ArcsinhStretch).

    - stretch: beta, 1..1000 (both programs' range); the faint end is lifted about
      beta / asinh(beta) times (x 3.4 at beta = 10, x 133 at beta = 1000).
    - black_point: level set to black before the stretch, in [0, 1).
    - protect_highlights: a pixel whose brightest channel would pass 1 is scaled down as a
      whole (its colour kept, Siril's per-pixel protection); without it each channel is clipped
      at 1, which bleaches saturated colours towards white.
    - luminance: the weights of the luminance the stretch is computed from (see
      `LuminanceWeights`).
    """

    stretch: float
    black_point: float = 0.0
    protect_highlights: bool = True
    luminance: LuminanceWeights = "mean"

    def __post_init__(self) -> None:
        if not 1.0 <= self.stretch <= 1000.0:
            raise ValueError(f"stretch must be in [1, 1000], got {self.stretch}")
        if not 0.0 <= self.black_point < 1.0:
            raise ValueError(f"black_point must be in [0, 1), got {self.black_point}")
        if self.luminance not in LUMINANCE_WEIGHTS:
            raise ValueError(
                f"luminance must be one of {sorted(LUMINANCE_WEIGHTS)}, got {self.luminance!r}"
            )


@dataclass(frozen=True)
class GhsConfig:
    """The generalised hyperbolic stretch, with the names and ranges of the GHS script and
    module for PixInsight and of Siril's GHS tool (see `ghs_transfer` for the curve).

    - D: the stretch factor as the tools show it, ln(D' + 1) where D' enters the formulas;
      0..10 (0 is the identity; 10 means D' = e^10 - 1 ~ 22025).
    - b: local intensity, -5..15: how tightly the added contrast concentrates around SP
      (b = -1 logarithmic, b = 0 exponential, b = 1 harmonic, b > 0 hyperbolic, b < 0
      "integral" forms spreading it wider).
    - SP: symmetry point in [0, 1], the level that receives the most contrast (put it on the
      sky or just below a faint target).
    - LP: shadow protection, 0 <= LP <= SP: below LP the curve continues as a straight line.
    - HP: highlight protection, SP <= HP <= 1: above HP the curve continues as a straight line,
      keeping stars from bloating.
    """

    D: float
    b: float = 0.0
    SP: float = 0.0
    LP: float = 0.0
    HP: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.D <= 10.0:
            raise ValueError(f"D (stretch factor ln(D + 1)) must be in [0, 10], got {self.D}")
        if not -5.0 <= self.b <= 15.0:
            raise ValueError(f"b (local intensity) must be in [-5, 15], got {self.b}")
        if not 0.0 <= self.LP <= self.SP <= self.HP <= 1.0:
            raise ValueError(
                f"LP, SP, HP need 0 <= LP <= SP <= HP <= 1, got LP={self.LP}, SP={self.SP}, "
                f"HP={self.HP}"
            )


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
    Statistics come from every pixel up to 4 M per channel, from a regular subsample beyond.
    Raises ValueError for other dtypes or shapes, and for ``config.linked = False`` on a
    multi-channel image (use `auto_stf_channels`).
    """
    medians, mads = _channel_statistics(_to_unit_range(image))
    if not config.linked and len(medians) > 1:
        raise ValueError("linked is False: one STF per channel comes from auto_stf_channels")
    return _stf_from_statistics(float(np.mean(medians)), float(np.mean(mads)), config)


def auto_stf_channels(
    image: npt.NDArray[np.generic], config: StfConfig = StfConfig()
) -> tuple[StfParameters, ...]:
    """One STF per channel, for `histogram_transform`: the linked one repeated, or, with
    ``config.linked = False``, each channel's own (shadows = its median + `shadows_clip_mad` x
    its normalised MAD, midtones putting its median on `target_background`).

    A 2-D image counts as one channel. Raises ValueError for other dtypes or shapes.
    """
    medians, mads = _channel_statistics(_to_unit_range(image))
    if config.linked:
        linked = _stf_from_statistics(float(np.mean(medians)), float(np.mean(mads)), config)
        return (linked,) * len(medians)
    return tuple(
        _stf_from_statistics(float(median), float(mad), config)
        for median, mad in zip(medians, mads, strict=True)
    )


def apply_stf(
    image: npt.NDArray[np.generic], params: StfParameters | Sequence[StfParameters]
) -> npt.NDArray[np.float32]:
    """`image` (uint16 or float in [0, 1]) clipped to the shadows/highlights and bent by the MTF.

    Returns float32 in [0, 1] with the input's shape; one transfer for every channel, or one per
    channel (see `histogram_transform`).
    """
    return histogram_transform(image, params)


def histogram_transform(
    image: npt.NDArray[np.generic], params: HistogramTransform | Sequence[HistogramTransform]
) -> npt.NDArray[np.float32]:
    """PixInsight's HistogramTransformation: x -> MTF((x - s) / (h - s), m), clipped to [0, 1].

    `params` is one transform for all channels, or a sequence of one per channel (a 2-D image
    has one channel). Returns float32 of the input's shape. Raises ValueError when the sequence
    length differs from the channel count, or for other dtypes or shapes.
    """
    unit = _to_unit_range(image)
    channels = _channel_count(unit)
    if isinstance(params, StfParameters):
        single = params
        return map_blocks(lambda block: _histogram_block(block, single), unit)
    transforms = tuple(params)
    if len(transforms) != channels:
        raise ValueError(
            f"params: need one transform per channel ({channels}), got {len(transforms)}"
        )
    if len(set(transforms)) == 1:
        return map_blocks(lambda block: _histogram_block(block, transforms[0]), unit)

    def per_channel(block: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = np.empty(block.shape, dtype=np.float32)
        for channel, transform in enumerate(transforms):
            out[..., channel] = _histogram_block(block[..., channel], transform)
        return out

    return map_blocks(per_channel, unit)


def luminance(
    image: npt.NDArray[np.generic], weights: LuminanceWeights = "mean"
) -> npt.NDArray[np.float32]:
    """The ``(y, x)`` float32 luminance of an image (uint16 or float in [0, 1]) on its own scale.

    A 2-D or one-channel image is its own luminance; ``mean`` averages any number of channels,
    ``rec709`` weights three. Raises ValueError for other weights, shapes or dtypes.
    """
    unit = _to_unit_range(image)
    if weights not in LUMINANCE_WEIGHTS:
        raise ValueError(f"weights must be one of {sorted(LUMINANCE_WEIGHTS)}, got {weights!r}")
    channels = _channel_count(unit)
    if unit.ndim == 2:
        return unit.copy()
    if channels == 1:
        return unit[..., 0].copy()
    if weights == "rec709" and channels != 3:
        raise ValueError(f"rec709 luminance weighs 3 channels, got shape {unit.shape}")
    w = _weights(weights, channels)
    # Channel by channel: numpy reduces a short last axis (c = 3) several times slower.
    lum = unit[..., 0] * w[0]
    for channel in range(1, channels):
        lum += unit[..., channel] * w[channel]
    return lum


def arcsinh_stretch(
    image: npt.NDArray[np.generic], config: ArcsinhConfig
) -> npt.NDArray[np.float32]:
    """The colour-preserving arcsinh stretch; returns float32 in [0, 1] of the input's shape.

    With beta = `stretch`, bp = `black_point` and channel values x_c clipped to [0, 1]:

        x'_c = max(x_c - bp, 0) / (1 - bp)
        L    = sum_c w_c x'_c                      (w from `luminance`; L = x' when mono)
        k    = asinh(beta L) / (L asinh(beta))     (k = beta / asinh(beta) where L = 0)
        y_c  = k x'_c

    Every channel of a pixel is scaled by the same k, so the ratios R/G, B/G after the black
    point survive. With `protect_highlights` a pixel whose largest y_c passes 1 is divided by
    it; otherwise each y_c is clipped at 1. A mono image gets asinh(beta x') / asinh(beta).
    Raises ValueError for other dtypes or shapes, or for ``rec709`` weights on c != 3.
    """
    unit = _to_unit_range(image)
    channels = _channel_count(unit)
    if config.luminance == "rec709" and channels not in (1, 3):
        raise ValueError(f"luminance 'rec709' weighs 3 channels, image has {channels}")
    weights = _weights(config.luminance, channels)
    beta = np.float32(config.stretch)
    asinh_beta = np.float32(math.asinh(config.stretch))
    black = np.float32(config.black_point)
    scale = np.float32(1.0 - config.black_point)
    zero, one = np.float32(0.0), np.float32(1.0)

    def stretch(block: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        # One channel plane at a time: cheaper than numpy's reductions over a short last axis.
        planes = [
            np.maximum(np.minimum(block[..., c], one) - black, zero) / scale
            for c in range(channels)
        ]
        lum = planes[0] * weights[0]
        for c in range(1, channels):
            lum += planes[c] * weights[c]
        # k's limit at L = 0, beta / asinh(beta), comes out of the formula itself at a tiny L
        # (asinh(t) = t in float32 there); np.where would be slow where the black point cuts
        # through the sky noise and L = 0 alternates with L > 0 at random.
        safe = np.maximum(lum, _TINY_LUMINANCE)
        k = np.arcsinh(beta * safe) / (safe * asinh_beta)
        stretched = [plane * k for plane in planes]
        out = np.empty(block.shape, dtype=np.float32)
        if config.protect_highlights:
            # Only pixels whose brightest channel passes 1 are divided (by that channel).
            brightest = stretched[0]
            for plane in stretched[1:]:
                brightest = np.maximum(brightest, plane)
            divisor = np.maximum(brightest, one)
            for c, plane in enumerate(stretched):
                np.divide(plane, divisor, out=out[..., c])
        else:
            for c, plane in enumerate(stretched):
                np.minimum(plane, one, out=out[..., c])
        return out

    return _per_pixel(stretch, unit)


def ghs_transfer(x: npt.NDArray[_F], config: GhsConfig) -> npt.NDArray[_F]:
    """The GHS curve on [0, 1] (x clipped first), in the float precision of `x`.

    With D' = exp(D) - 1 and the base curve T for u >= 0 (the published forms):

        b = -1:         T(u) = ln(1 + D' u)
        b < 0, b != -1: T(u) = (1 - (1 - b D' u)^((b + 1) / b)) / (D' (b + 1))
        b = 0:          T(u) = 1 - exp(-D' u)
        b > 0:          T(u) = 1 - (1 + b D' u)^(-1 / b)

    the curve before normalisation is

        x < LP:         g(x) = -T(SP - LP) - T'(SP - LP) (LP - x)     (a straight line)
        LP <= x < SP:   g(x) = -T(SP - x)                             (mirrored about SP)
        SP <= x <= HP:  g(x) =  T(x - SP)
        x > HP:         g(x) =  T(HP - SP) + T'(HP - SP) (x - HP)     (a straight line)

    and G(x) = (g(x) - g(0)) / (g(1) - g(0)), so G(0) = 0, G(1) = 1 and G rises strictly (T' > 0
    everywhere), with its steepest slope at SP. The code evaluates each T divided by a constant
    (1/D' for b = -1, b = 0 and b > 0) so that T'(0) = 1 for every b; constant factors cancel
    in the normalisation. D = 0 is the identity.
    """
    clipped: npt.NDArray[_F] = np.clip(x, 0.0, 1.0)
    if config.D == 0.0:
        return clipped
    curve = _GhsCurve(config)
    ends = curve.unnormalised(np.array([0.0, 1.0], dtype=clipped.dtype))
    normalised = (curve.unnormalised(clipped) - ends[0]) / (ends[1] - ends[0])
    # Rounding (a few ulps of the float32 log1p/expm1) must not leave [0, 1].
    result: npt.NDArray[_F] = np.clip(normalised, 0.0, 1.0)
    return result


def ghs_stretch(image: npt.NDArray[np.generic], config: GhsConfig) -> npt.NDArray[np.float32]:
    """Every channel through the same GHS curve (`ghs_transfer`); float32 in [0, 1] of the
    input's shape. Evaluated in float32: the float64 curve to ~1e-7, except where the curve is
    steep, where the rounding of x itself is amplified by the slope (~1e-5 at D = 10, b = 15).

    Raises ValueError for other dtypes or shapes.
    """
    unit = _to_unit_range(image)
    _channel_count(unit)
    if config.D == 0.0:
        return np.clip(unit, 0.0, 1.0)
    return map_blocks(lambda block: ghs_transfer(block, config), unit)


def map_blocks(
    func: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
    image: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """Apply a pixel-wise `func` (same shape in, same shape out) to bands of rows of a
    float32 ``(y, x)`` or ``(y, x, c)`` image; returns a new float32 array.

    Working in bands of ~256 k pixels keeps the temporaries of a long formula small (a 24 MP
    RGB image would otherwise need ~300 MB per temporary). `func` must be pixel-wise: a band
    sees only its own rows.
    """
    out = np.empty(image.shape, dtype=np.float32)
    row_pixels = max(1, int(np.prod(image.shape[1:])))
    rows = max(1, _BLOCK_PIXELS // row_pixels)
    for y0 in range(0, image.shape[0], rows):
        out[y0 : y0 + rows] = func(image[y0 : y0 + rows])
    return out


class _GhsCurve:
    """T, T' and the unnormalised piecewise curve g for one configuration (see ghs_transfer).

    T is evaluated through log1p and expm1, which stay accurate where b D' u is small and
    where b is close to 0 or -1 (no cancellation of 1 - (1 + small)^power).
    """

    def __init__(self, config: GhsConfig) -> None:
        self.d = math.expm1(config.D)
        self.b = config.b
        self.sp, self.lp, self.hp = config.SP, config.LP, config.HP
        self.low_span = self.sp - self.lp
        self.high_span = self.hp - self.sp
        self.low_slope = self.slope(self.low_span)
        self.high_slope = self.slope(self.high_span)

    def base(self, u: npt.NDArray[_F]) -> npt.NDArray[_F]:
        """T(u) / T'(0) for u >= 0, in the precision of `u` (in place on one new array)."""
        kind, b, d = u.dtype.type, self.b, self.d
        if b == -1.0:
            t = u * kind(d)
            np.log1p(t, out=t)
            t *= kind(1.0 / d)
        elif b == 0.0:
            t = u * kind(-d)
            np.expm1(t, out=t)
            t *= kind(-1.0 / d)
        elif b > 0.0:
            t = u * kind(b * d)
            np.log1p(t, out=t)
            t *= kind(-1.0 / b)
            np.expm1(t, out=t)
            t *= kind(-1.0 / d)
        else:
            t = u * kind(-b * d)
            np.log1p(t, out=t)
            t *= kind((b + 1.0) / b)
            np.expm1(t, out=t)
            t *= kind(-1.0 / (d * (b + 1.0)))
        result: npt.NDArray[_F] = t
        return result

    def slope(self, u: float) -> float:
        """T'(u) / T'(0) at one point."""
        d, b = self.d, self.b
        if b == 0.0:
            return math.exp(-d * u)
        if b > 0.0:
            return math.exp(-(1.0 + b) / b * math.log1p(b * d * u))
        return math.exp(math.log1p(-b * d * u) / b)

    def unnormalised(self, x: npt.NDArray[_F]) -> npt.NDArray[_F]:
        kind = x.dtype.type
        offset = x - kind(self.sp)
        distance = np.abs(offset)
        if self.lp > 0.0 or self.hp < 1.0:
            # high + below x (low - high) picks per side: np.where between two scalars is
            # ~15x slower where the sides alternate at random (the sky around SP). The low
            # side's values are off by an ulp at most, which moves nothing visible.
            below = (offset < 0.0).astype(x.dtype)
            span = below * kind(self.low_span - self.high_span) + kind(self.high_span)
            slope = below * kind(self.low_slope - self.high_slope) + kind(self.high_slope)
            core = np.minimum(distance, span)
            value = self.base(core)
            distance -= core  # now the distance beyond LP or HP, where g continues straight
            distance *= slope
            value += distance
        else:
            value = self.base(distance)
        np.copysign(value, offset, out=value)
        return value


def _histogram_block(
    unit: npt.NDArray[np.float32], params: StfParameters
) -> npt.NDArray[np.float32]:
    """`midtones_transfer` of the rescaled values in float32, with fewer passes over memory."""
    shadows, highlights = np.float32(params.shadows), np.float32(params.highlights)
    # Both differences in float32, so a pixel at the highlights maps to exactly 1.
    rescaled: npt.NDArray[np.float32] = np.clip((unit - shadows) / (highlights - shadows), 0, 1)
    m = params.midtones
    if m == 0.5:
        return rescaled
    if m in (0.0, 1.0):
        return midtones_transfer(rescaled, m).astype(np.float32, copy=False)
    # 0 < m < 1: the denominator is below -min(m, 1 - m) < 0 on [0, 1] and the curve is 0 at 0
    # exactly; at 1 it may miss 1 by an ulp, so white is set explicitly.
    curve = np.float32(m - 1.0) * rescaled / (np.float32(2.0 * m - 1.0) * rescaled - np.float32(m))
    result: npt.NDArray[np.float32] = np.where(rescaled >= 1.0, np.float32(1.0), curve)
    return result


def _stf_from_statistics(median: float, mad: float, config: StfConfig) -> StfParameters:
    shadows = min(max(median + config.shadows_clip_mad * mad, 0.0), _MAX_SHADOWS)
    background = np.array([(median - shadows) / (1.0 - shadows)])
    midtones = float(midtones_transfer(background, config.target_background)[0])
    return StfParameters(shadows=shadows, midtones=midtones)


def _channel_statistics(
    unit: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Median and normalised MAD (x 1.4826, a Gaussian sigma) of each channel, from every
    pixel or a regular subsample of at most `_MAX_STATISTICS_PIXELS`."""
    channels = _as_channels(unit)
    step = -(-channels.shape[0] // _MAX_STATISTICS_PIXELS)
    medians = np.empty(channels.shape[1], dtype=np.float64)
    mads = np.empty(channels.shape[1], dtype=np.float64)
    for c in range(channels.shape[1]):
        # One contiguous channel at a time: np.median along axis 0 of (n, c) is much slower.
        samples = np.ascontiguousarray(channels[::step, c])
        medians[c] = np.median(samples)
        mads[c] = np.median(np.abs(samples - np.float32(medians[c]))) * MAD_TO_SIGMA
    return medians, mads


def _weights(weights: LuminanceWeights, channels: int) -> list[np.float32]:
    """The luminance weights of `channels` channels: equal for ``mean`` (any count)."""
    if weights == "mean" or channels == 1:
        return [np.float32(1.0 / channels)] * channels
    return [np.float32(w) for w in LUMINANCE_WEIGHTS[weights]]


def _per_pixel(
    func: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
    unit: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """Run a function of (rows, x, c) blocks on a 2-D or 3-D image, keeping its shape."""
    if unit.ndim == 2:
        return map_blocks(func, unit[..., None])[..., 0]
    return map_blocks(func, unit)


def _channel_count(unit: npt.NDArray[np.float32]) -> int:
    if unit.ndim == 2:
        return 1
    if unit.ndim == 3 and unit.shape[2] >= 1:
        return int(unit.shape[2])
    raise ValueError(f"images have axes (y, x) or (y, x, c), got shape {unit.shape}")


def _to_unit_range(image: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    """The image as float32 on the [0, 1] scale: float32 input itself (callers only read it),
    anything else converted. Raises ValueError for dtypes of unknown full scale."""
    scale = full_scale(image.dtype)
    converted = np.asarray(image, dtype=np.float32)
    if scale != 1.0:
        # Division, not multiplication by the reciprocal, so full scale lands exactly on 1.0.
        converted = converted / np.float32(scale)
    return converted


def _as_channels(unit: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The pixels as rows of an ``(n, c)`` array; a 2-D image is one channel."""
    if unit.ndim == 2:
        return unit.reshape(-1, 1)
    if unit.ndim == 3:
        return unit.reshape(-1, unit.shape[2])
    raise ValueError(f"images have axes (y, x) or (y, x, c), got shape {unit.shape}")
