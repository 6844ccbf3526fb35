"""Noise reduction: multiscale (starlet) thresholding for linear data, total variation after
the stretch.

Linear phase, like PixInsight's MultiscaleLinearTransform: the isotropic undecimated wavelet
("starlet", à trous with the B3-spline kernel [1, 4, 6, 4, 1] / 16 dilated 2^j) splits each
channel into detail layers of scale 1, 2, 4, ... px and a smooth residual whose sum is the
image again. Noise lives mostly in the small-scale layers; a coefficient smaller than k_j
times the noise of its layer is taken for noise and shrunk to zero (soft thresholding), larger
ones lose the same amount, and the residual is kept as it is, so the background level
survives; what the thresholds took, smoothed to the residual's scale, is added back, so the
flux of extended objects survives too (`StarletConfig.restore_flux`).

Non-linear phase: Chambolle's total-variation denoising, blended through a mask so that a
luminance mask, inverted, spares the bright target and smooths the background, as the
TGVDenoise step of the usual PixInsight flow does. The solver is our own compiled (numba)
version of scikit-image's `denoise_tv_chambolle`, pixel for pixel the same result: one
memory-bound sweep per iteration over all cores instead of about a dozen numpy passes on
one, ~10x faster on a 24 MP frame.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import cv2
import numba
import numpy as np
import numpy.typing as npt

from processing.normalize import MAD_TO_SIGMA

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

NoiseModel = Literal["layer", "white"]

_B3_SPLINE = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / np.float32(16.0)
# Standard deviation of starlet layer j (1-based) of unit white Gaussian noise: the L2 norm of
# the layer's impulse response, computed from the B3-spline filters (the table of Starck &
# Murtagh, to four digits); each further layer halves it.
WHITE_NOISE_LAYER_SIGMA = (0.8908, 0.2007, 0.0855, 0.0412, 0.0204, 0.0102, 0.0051, 0.0025)
MAX_LAYERS = len(WHITE_NOISE_LAYER_SIGMA)
# The noise of a layer is the MAD of about this many coefficients, taken at a regular stride:
# its relative standard error is ~0.1 %, and a full median of a 24 MP layer costs ~0.3 s.
_NOISE_SAMPLES = 1 << 20
# OpenCV's separable filter is ~5x faster than scipy's, but its cost grows with the dilated
# kernel's length (4 x step + 1 taps): at step 8 it takes 0.2 s on a 24 MP plane, shifted
# slices of a padded copy 0.5 s whatever the step. Beyond step 8 the slices win.
_CV2_MAX_STEP = 8
# Channels denoised at once by `starlet_denoise`, each holding ~4 planes of the frame's size
# (~0.4 GB at 24 MP): one per core, at most one per colour channel. On 2 cores a third gains
# nothing.
_STARLET_WORKERS = max(1, min(3, os.cpu_count() or 1))


@dataclass(frozen=True)
class StarletConfig:
    """Multiscale linear noise reduction of a linear image.

    - layers: detail layers of scale 1, 2, 4, ... 2^(layers-1) px (1 to 8); 4 covers noise up
      to ~16 px, which is all a stack shows.
    - k: threshold of each layer in units of that layer's noise standard deviation (one value
      per layer, >= 0; 0 leaves a layer untouched). The defaults remove nearly all noise at
      1-2 px and less at larger scales, where faint extended signal lives.
    - amount: share of the denoised image in the result (0..1); the rest is the original.
    - noise: how each layer's noise is estimated. "layer": 1.4826 x MAD of the layer's own
      coefficients, which follows noise that registration's interpolation has correlated
      between neighbouring pixels (a stack's noise is never white). "white": the first
      layer's MAD scaled by `WHITE_NOISE_LAYER_SIGMA`, exact for uncorrelated noise and not
      raised by a nebula filling the large-scale layers. "layer" is the default because
      stacks are registered; its estimate can only err high (signal adds to the MAD), which
      smooths more, not less.
    - restore_flux: add back what the thresholds removed, smoothed to the residual's scale
      (2^layers px). Noise has almost no power there (4 layers keep 3 % of white noise's
      sigma), but the faint wings of extended objects do: a smooth galaxy's layers hold a
      compact positive core and a wide, weak negative ring; thresholding removes more of the
      ring than of the core and brightens the galaxy (+1.5 % for a Gaussian galaxy of sigma
      12 px peaking at 50 x the noise; +0.1 % with the restoration). Costs ~30 % more time.
    """

    layers: int = 4
    k: tuple[float, ...] = (3.0, 2.0, 1.0, 0.5)
    amount: float = 1.0
    noise: NoiseModel = "layer"
    restore_flux: bool = True

    def __post_init__(self) -> None:
        """Raise ValueError naming the field and its allowed range."""
        if not isinstance(self.layers, int) or not 1 <= self.layers <= MAX_LAYERS:
            raise ValueError(f"layers must be an integer in [1, {MAX_LAYERS}], got {self.layers}")
        if len(self.k) != self.layers:
            raise ValueError(
                f"k must give one threshold per layer ({self.layers}), got {len(self.k)}"
            )
        if not all(math.isfinite(value) and value >= 0.0 for value in self.k):
            raise ValueError(f"k must hold finite thresholds >= 0, got {self.k}")
        if not 0.0 <= self.amount <= 1.0:
            raise ValueError(f"amount must be in [0, 1], got {self.amount}")
        if self.noise not in ("layer", "white"):
            raise ValueError(f"noise must be 'layer' or 'white', got {self.noise!r}")


@dataclass(frozen=True)
class TvConfig:
    """Total-variation noise reduction of a stretched image (values ~[0, 1]).

    - weight: strength (> 0), in the image's units: scikit-image's `weight`; ~0.02-0.1 on a
      stretched frame whose background noise is ~0.01-0.05. Larger flattens more detail.
    - amount: share of the denoised image where the mask is 1 (0..1).
    - max_iterations: cap on Chambolle iterations (>= 1). Each costs ~0.05 s per channel on
      a 24 MP frame on 2 cores (it is bound by memory bandwidth); the solver usually stops
      on `eps` well before the cap (10-40 iterations per channel, ~3.5 s for a stretched
      24 MP RGB frame at weight 0.05). Lower it to bound the time; the result is then less
      smooth, not wrong.
    - eps: relative change of the cost below which the solver stops (> 0; scikit-image's
      default).
    """

    weight: float
    amount: float = 1.0
    max_iterations: int = 200
    eps: float = 2e-4

    def __post_init__(self) -> None:
        """Raise ValueError naming the field and its allowed range."""
        if not (math.isfinite(self.weight) and self.weight > 0.0):
            raise ValueError(f"weight must be a finite number > 0, got {self.weight}")
        if not 0.0 <= self.amount <= 1.0:
            raise ValueError(f"amount must be in [0, 1], got {self.amount}")
        if not isinstance(self.max_iterations, int) or self.max_iterations < 1:
            raise ValueError(f"max_iterations must be an integer >= 1, got {self.max_iterations}")
        if not (math.isfinite(self.eps) and self.eps > 0.0):
            raise ValueError(f"eps must be a finite number > 0, got {self.eps}")


def starlet_transform(plane: npt.NDArray[np.floating], layers: int) -> list[F32]:
    """The starlet decomposition of a 2-D plane: `layers` detail layers, finest first, then
    the smooth residual (float32, each shaped like `plane`).

    Layer j is c_(j-1) - c_j, where c_0 is the plane and c_j is c_(j-1) smoothed by the
    B3-spline kernel with 2^(j-1) - 1 holes between its taps; borders are mirrored without
    repeating the edge pixel. The layers sum to the plane (`inverse_starlet`). Raises
    ValueError unless the plane is 2-D and 1 <= layers <= 8.
    """
    if plane.ndim != 2 or plane.size == 0:
        raise ValueError(f"plane must be 2-D (y, x) and not empty, got shape {plane.shape}")
    if not isinstance(layers, int) or not 1 <= layers <= MAX_LAYERS:
        raise ValueError(f"layers must be in [1, {MAX_LAYERS}], got {layers}")
    current = np.ascontiguousarray(plane, dtype=np.float32)
    coefficients = []
    for j in range(layers):
        smooth = _b3_smooth(current, 1 << j)
        coefficients.append(current - smooth)
        current = smooth
    coefficients.append(current)
    return coefficients


def inverse_starlet(coefficients: Sequence[npt.NDArray[np.floating]]) -> F32:
    """The plane whose starlet decomposition is `coefficients` (detail layers, then the
    residual): their sum, accumulated in float64 from the residual to the finest layer so
    that each partial sum is a smoothed plane and rounding stays at float32's last bit.
    Raises ValueError for an empty sequence."""
    if not coefficients:
        raise ValueError("coefficients must hold at least the residual")
    total = np.zeros(coefficients[-1].shape, dtype=np.float64)
    for layer in reversed(coefficients):
        total += layer
    return total.astype(np.float32)


def starlet_denoise(
    image: npt.NDArray[np.floating],
    config: StarletConfig = StarletConfig(),
    mask: npt.NDArray[np.floating] | None = None,
) -> F32:
    """`image` (y, x, c), linear, with each channel's starlet layers soft-thresholded at
    k_j x noise_j and the residual kept, then blended with the original through `mask`:
    out = m x denoised + (1 - m) x image with m = amount x mask.

    The noise is estimated per channel and per layer (see `StarletConfig.noise`) on the
    whole frame, whatever the mask, so a channel with more noise is smoothed as much,
    relative to its noise, as the others. Soft thresholding shrinks the cores of faint stars
    more than their wings: with the default k, unprotected stars of sigma 1.5 px widen in
    FWHM by 5-12 % when their peak is 20-50 x the noise, ~4 % at 100 x, < 2 % from 200 x
    (measured). A mask (1 = act fully; an inverted, stretched luminance mask as PixInsight
    users apply it) keeps them within 5 % (worst of 20 noise draws: 4.4 %, a star at 20 x
    the noise) and still lowers the sky's noise more than 10x.
    Time: ~2.5-3 s for a 24 MP RGB frame on 2 cores, the channels denoised side by side.
    Memory: ~4 float32 planes per channel being denoised (up to three at once), not the
    whole decomposition. Raises ValueError unless the image is (y, x, c) with finite pixels,
    or for a bad mask.
    """
    _check_image(image)
    weight = _blend_weight(image.shape[:2], config.amount, mask)
    if weight is None:
        return image.astype(np.float32)
    original = np.asarray(image, dtype=np.float32)
    out = np.empty(original.shape, dtype=np.float32)

    def denoise_channel(channel: int) -> None:
        plane = np.ascontiguousarray(original[:, :, channel])
        out[:, :, channel] = _blend(_denoise_plane(plane, config), plane, weight)

    # The channels run side by side: OpenCV's filters and numpy's element-wise passes and
    # medians release the GIL, and numpy's passes use one core each.
    with ThreadPoolExecutor(max_workers=min(_STARLET_WORKERS, original.shape[2])) as pool:
        for done in [pool.submit(denoise_channel, c) for c in range(original.shape[2])]:
            done.result()
    return out


def tv_denoise(
    image: npt.NDArray[np.floating],
    config: TvConfig,
    mask: npt.NDArray[np.floating] | None = None,
) -> F32:
    """`image` (y, x, c), stretched, smoothed by Chambolle's total-variation denoising and
    blended through `mask`: out = m x denoised + (1 - m) x image with m = amount x mask.

    `mask` is (y, x) in [0, 1], 1 where the noise reduction acts fully (pass an inverted
    luminance mask to spare the target); None acts everywhere. Pixels where m is 0 come back
    exactly as they were. Colour channels are denoised each on its own, as scikit-image's
    `denoise_tv_chambolle` with channel_axis does; the result is the same to float32
    rounding (see `_chambolle`). The first call in a fresh environment compiles the solver
    (~5 s, cached on disk by numba afterwards). Memory: 4 planes of the frame's size besides
    the result. Raises ValueError for a bad image or a mask of the wrong shape, outside
    [0, 1] or not finite.
    """
    _check_image(image)
    weight = _blend_weight(image.shape[:2], config.amount, mask)
    if weight is None:
        return image.astype(np.float32)
    original = np.asarray(image, dtype=np.float32)
    height, width, channels = original.shape
    out = np.empty(original.shape, dtype=np.float32)
    # One channel at a time through the same work planes: 4 planes of the frame's size.
    plane = np.empty((height, width), dtype=np.float32)
    denoised, p_y, p_x = np.empty_like(plane), np.empty_like(plane), np.empty_like(plane)
    bands = max(1, min(numba.get_num_threads(), height // 16))
    edges = np.arange(bands + 1, dtype=np.int64) * height // bands
    rows = np.empty((bands, _TV_BAND_ROWS, width), dtype=np.float32)
    for channel in range(channels):
        plane[...] = original[:, :, channel]
        p_y.fill(0.0)
        p_x.fill(0.0)
        iterations = _chambolle(
            plane,
            denoised,
            p_y,
            p_x,
            edges,
            rows,
            config.weight,
            config.eps,
            config.max_iterations,
        )
        log.debug("total variation, channel %d: %d iterations", channel, iterations)
        if isinstance(weight, np.ndarray):
            _blend_into(out, channel, denoised, plane, weight)
        else:
            out[:, :, channel] = _blend(denoised, plane, weight)
    return out


def _blend_weight(
    shape: tuple[int, ...], amount: float, mask: npt.NDArray[np.floating] | None
) -> F32 | float | None:
    """The share of the denoised image per pixel: amount x mask, a plain number without a
    mask, None where it is 0 everywhere (nothing to compute)."""
    if mask is None:
        return amount if amount > 0.0 else None
    if mask.shape != shape:
        raise ValueError(f"mask must be shaped {shape}, got {mask.shape}")
    if not np.all(np.isfinite(mask)) or mask.min() < 0.0 or mask.max() > 1.0:
        raise ValueError("mask values must be finite and within [0, 1]")
    weight: F32 = np.float32(amount) * mask.astype(np.float32)
    return weight if np.any(weight > 0.0) else None


def _blend(denoised: F32, original: F32, weight: F32 | float) -> F32:
    """weight x denoised + (1 - weight) x original, in float32.

    0 x denoised + 1 x original is the original to the bit, and 1 x denoised + 0 x original
    the denoised value, so fully protected pixels are left exactly as they were.
    """
    if not isinstance(weight, np.ndarray):
        if weight == 1.0:
            return denoised
        share = np.float32(weight)
        mixed: F32 = share * denoised + (np.float32(1.0) - share) * original
        return mixed
    blended: F32 = weight * denoised + (np.float32(1.0) - weight) * original
    return blended


def _denoise_plane(plane: F32, config: StarletConfig) -> F32:
    """One channel, layer by layer. The soft-thresholded layers plus the residual are the
    plane minus what the thresholds took from each layer, so only that sum is kept, and a
    layer exists only as the sample its noise is measured on."""
    current = plane
    removed = np.zeros(plane.shape, dtype=np.float32)
    sigma_white = 0.0
    for j in range(config.layers):
        smooth = _b3_smooth(current, 1 << j)
        if config.noise == "layer":
            noise = _noise_sigma(_layer_sample(current, smooth))
        else:
            if j == 0:
                sample = _layer_sample(current, smooth)
                sigma_white = _noise_sigma(sample) / WHITE_NOISE_LAYER_SIGMA[0]
            noise = sigma_white * WHITE_NOISE_LAYER_SIGMA[j]
        threshold = np.float32(config.k[j] * noise)
        log.debug("starlet layer %d: noise %.3g, threshold %.3g", j + 1, noise, threshold)
        _add_clipped_layer(current, smooth, threshold, removed)
        current = smooth
    if config.restore_flux:
        smoothed = removed
        for j in range(config.layers):
            smoothed = _b3_smooth(smoothed, 1 << j)
        return _minus_difference(plane, removed, smoothed)
    denoised: F32 = plane - removed
    return denoised


def _layer_sample(current: F32, smooth: F32) -> F32:
    """The layer current - smooth at a regular stride, at most ~2^20 coefficients."""
    stride = max(1, current.size // _NOISE_SAMPLES)
    sample: F32 = current.reshape(-1)[::stride] - smooth.reshape(-1)[::stride]
    return sample


def _noise_sigma(sample: F32) -> float:
    """1.4826 x MAD of a layer's sample."""
    median = np.median(sample)
    return float(MAD_TO_SIGMA * np.median(np.abs(sample - median)))


@numba.njit(nogil=True, fastmath=False, cache=True)
def _add_clipped_layer(current: F32, smooth: F32, threshold: np.float32, removed: F32) -> None:
    """removed += clip(current - smooth, -threshold, threshold), in place: what soft
    thresholding takes from the layer current - smooth (it keeps w - clip(w, -t, t): 0
    inside [-t, t], w -/+ t outside). One pass where numpy needs three and a layer plane;
    the comparisons are numpy's clip's, so the sums are the same to the bit."""
    low = -threshold
    for y in range(current.shape[0]):
        for x in range(current.shape[1]):
            w = current[y, x] - smooth[y, x]
            w = w if w > low else low
            w = w if w < threshold else threshold
            removed[y, x] += w


@numba.njit(nogil=True, fastmath=False, cache=True)
def _minus_difference(plane: F32, removed: F32, smoothed: F32) -> F32:
    """plane - (removed - smoothed) in one pass."""
    out = np.empty_like(plane)
    for y in range(plane.shape[0]):
        for x in range(plane.shape[1]):
            out[y, x] = plane[y, x] - (removed[y, x] - smoothed[y, x])
    return out


def _b3_smooth(plane: F32, step: int) -> F32:
    """`plane` convolved along y and x with the B3-spline kernel, taps `step` px apart,
    mirrored borders (d c b | a b c d | c b a)."""
    if step <= _CV2_MAX_STEP and 2 * step < min(plane.shape):
        kernel = np.zeros(4 * step + 1, dtype=np.float32)
        kernel[::step] = _B3_SPLINE
        smoothed = cv2.sepFilter2D(
            plane, cv2.CV_32F, kernel, kernel, borderType=cv2.BORDER_REFLECT_101
        )
        return np.asarray(smoothed, dtype=np.float32)
    return _b3_pass(_b3_pass(plane, step, 0), step, 1)


def _b3_pass(plane: F32, step: int, axis: int) -> F32:
    """One axis of `_b3_smooth` as a sum of shifted slices of the mirrored plane."""
    pad = [(0, 0), (0, 0)]
    pad[axis] = (2 * step, 2 * step)
    padded = np.pad(plane, pad, mode="reflect")
    length = plane.shape[axis]

    def shifted(offset: int) -> F32:
        index = [slice(None), slice(None)]
        index[axis] = slice(2 * step + offset, 2 * step + offset + length)
        part: F32 = padded[tuple(index)]
        return part

    outer, inner, centre = _B3_SPLINE[0], _B3_SPLINE[1], _B3_SPLINE[2]
    result: F32 = outer * (shifted(-2 * step) + shifted(2 * step))
    result += inner * (shifted(-step) + shifted(step))
    result += centre * shifted(0)
    return result


def _check_image(image: npt.NDArray[np.floating]) -> None:
    if image.ndim != 3 or image.size == 0:
        raise ValueError(f"image must be shaped (y, x, c) and not empty, got {image.shape}")
    if not np.all(np.isfinite(image)):
        raise ValueError("image holds NaN or infinite pixels")


@numba.njit(parallel=True, fastmath=False, cache=True)
def _chambolle(
    image: F32,
    out: F32,
    p_y: F32,
    p_x: F32,
    edges: npt.NDArray[np.int64],
    rows: F32,
    weight: float,
    eps: float,
    max_iterations: int,
) -> int:
    """Chambolle's projection algorithm for total-variation denoising of one plane into
    `out`, step by step as scikit-image's `denoise_tv_chambolle` takes it (float32, forward
    differences, a zero gradient across the last row and column, step 1/4), so that each
    pixel gets the same float32 operations in the same order; returns the number of
    iterations run. `p_y`, `p_x`: the dual field, zero on entry; `edges`: the first row of
    each band and the height; `rows`: (bands, `_TV_BAND_ROWS`, width) work rows.

    Each iteration is one sweep: each band of rows is swept by one thread from top to
    bottom; the denoised row y + 1 (the image plus the divergence of p) is computed before p
    of row y is updated from the gradient between rows y and y + 1, so p is read and
    written in place and each pixel's data cross the memory bus once per iteration (the
    loop is bound by memory bandwidth). A band needs the old p of the row above it and of
    the row below it, which its neighbours update: those rows are copied before the sweep.
    The cost, (sum of d^2 + weight x sum of |gradient|) / pixels with d the divergence, is
    summed pairwise per row and in float64 over rows (scikit-image: float32 over the
    plane); the solver stops when it changed by less than eps x its first value, or after
    max_iterations, leaving in `out` the plane that cost was measured on.
    """
    height = image.shape[0]
    bands = edges.shape[0] - 1
    costs = np.empty(bands, dtype=np.float64)
    tau = np.float32(0.25)
    scale = np.float32(0.25 / weight)
    cost_first = 0.0
    cost_previous = 0.0
    iteration = 0
    while iteration < max_iterations:
        _copy_band_edges(p_y, p_x, edges, rows)
        for b in numba.prange(bands):
            costs[b] = _chambolle_band(
                image, out, p_y, p_x, edges[b], edges[b + 1], rows[b], weight, tau, scale
            )
        cost = 0.0
        for b in range(bands):
            cost += costs[b]
        cost /= height * image.shape[1]
        if iteration == 0:
            cost_first = cost
            cost_previous = cost
        elif abs(cost_previous - cost) < eps * cost_first:
            break
        else:
            cost_previous = cost
        iteration += 1
    return iteration


# Work rows per band of `_chambolle`: old p_y of the row above, old p_y and p_x of the row
# below, the denoised row below, the cost's terms of a row.
_TV_BAND_ROWS = 5


@numba.njit(fastmath=False, cache=True)
def _copy_band_edges(p_y: F32, p_x: F32, edges: npt.NDArray[np.int64], rows: F32) -> None:
    """Before a sweep: the p of the rows next to each band, which its neighbours update."""
    height, width = p_y.shape
    for b in range(edges.shape[0] - 1):
        above, below = edges[b] - 1, edges[b + 1]
        for x in range(width):
            rows[b, 0, x] = p_y[above, x] if above >= 0 else np.float32(0.0)
            rows[b, 1, x] = p_y[below, x] if below < height else np.float32(0.0)
            rows[b, 2, x] = p_x[below, x] if below < height else np.float32(0.0)


@numba.njit(parallel=True, fastmath=False, cache=True)
def _blend_into(out: F32, channel: int, denoised: F32, original: F32, weight: F32) -> None:
    """out[:, :, channel] = weight x denoised + (1 - weight) x original, as `_blend` computes
    it, in one pass instead of numpy's four with temporaries."""
    one = np.float32(1.0)
    for y in numba.prange(out.shape[0]):
        for x in range(out.shape[1]):
            w = weight[y, x]
            out[y, x, channel] = w * denoised[y, x] + (one - w) * original[y, x]


@numba.njit(fastmath=False, cache=True)
def _divergence_row(
    image: F32, p_y: F32, p_x: F32, p_y_above: F32, has_above: bool, out: F32, squares: F32
) -> None:
    """One row of image + div p into `out` and (div p)^2 into `squares`. The loops are kept
    free of branches and running sums so that they compile to vector instructions."""
    width = image.shape[0]
    if has_above:
        d = -(p_y[0] + p_x[0]) + p_y_above[0]
        out[0] = image[0] + d
        squares[0] = d * d
        for x in range(1, width):
            d = (-(p_y[x] + p_x[x]) + p_y_above[x]) + p_x[x - 1]
            out[x] = image[x] + d
            squares[x] = d * d
    else:
        d = -(p_y[0] + p_x[0])
        out[0] = image[0] + d
        squares[0] = d * d
        for x in range(1, width):
            d = -(p_y[x] + p_x[x]) + p_x[x - 1]
            out[x] = image[x] + d
            squares[x] = d * d


@numba.njit(fastmath=False, error_model="numpy", cache=True)
def _update_row(
    row: F32,
    row_below: F32,
    p_y: F32,
    p_x: F32,
    tau: np.float32,
    scale: np.float32,
    norms: F32,
) -> None:
    """p of one row from the gradient of the denoised rows (in place), |gradient| into
    `norms`. The last row passes itself as `row_below`: a zero gradient along y."""
    width = row.shape[0]
    one = np.float32(1.0)
    for x in range(width - 1):
        g_y = row_below[x] - row[x]
        g_x = row[x + 1] - row[x]
        norm = np.sqrt(g_y * g_y + g_x * g_x)
        norms[x] = norm
        norm = norm * scale + one
        p_y[x] = (p_y[x] - tau * g_y) / norm
        p_x[x] = (p_x[x] - tau * g_x) / norm
    last = width - 1
    g_y = row_below[last] - row[last]
    norm = np.sqrt(g_y * g_y)
    norms[last] = norm
    norm = norm * scale + one
    p_y[last] = (p_y[last] - tau * g_y) / norm
    p_x[last] = p_x[last] / norm


@numba.njit(fastmath=False, cache=True)
def _row_sum(values: F32) -> float:
    """The sum of a row, pairwise: the second half is added onto the first until 16 values
    are left, which are summed in float64. Each halving is an element-wise loop, so it
    vectorises where a running sum (whose order cannot change) does not; `values` is
    overwritten."""
    count = values.shape[0]
    while count > 16:
        kept = (count + 1) // 2
        for x in range(count - kept):
            values[x] = values[x] + values[x + kept]
        count = kept
    total = 0.0
    for x in range(count):
        total += values[x]
    return total


@numba.njit(fastmath=False, cache=True)
def _chambolle_band(
    image: F32,
    out: F32,
    p_y: F32,
    p_x: F32,
    first: int,
    stop: int,
    rows: F32,
    weight: float,
    tau: np.float32,
    scale: np.float32,
) -> float:
    """One iteration over rows first..stop-1 (see `_chambolle`; `rows` are the band's work
    rows); returns their share of the cost times the number of pixels."""
    height = image.shape[0]
    above, below_y, below_x, below_out, terms = rows[0], rows[1], rows[2], rows[3], rows[4]
    _divergence_row(image[first], p_y[first], p_x[first], above, first > 0, out[first], terms)
    squares = _row_sum(terms)
    variation = 0.0
    for y in range(first, stop):
        if y + 1 < stop:
            row_below = out[y + 1]
            _divergence_row(image[y + 1], p_y[y + 1], p_x[y + 1], p_y[y], True, row_below, terms)
            squares += _row_sum(terms)
        elif y + 1 < height:
            # The next band's first row, from the p it had before this sweep; its squares
            # are that band's.
            row_below = below_out
            _divergence_row(image[y + 1], below_y, below_x, p_y[y], True, row_below, terms)
        else:
            row_below = out[y]
        _update_row(out[y], row_below, p_y[y], p_x[y], tau, scale, terms)
        variation += _row_sum(terms)
    return squares + weight * variation
