"""Integration (stacking): normalise frames, reject outliers pixel by pixel, combine.

Every rejection algorithm here works on the pixel stack sorted along the frame axis, and only
ever rejects from the two ends of the sorted stack: an outlier is an extreme sample. The kept
samples of a pixel are then one contiguous index range ``[lo, hi)`` of its sorted stack, so
medians and quantiles are index look-ups, and sums and sums of squares over the kept range are
differences of cumulative sums. That makes each iteration cost O(pixels) after one sort, with
no per-pixel Python loop. NaN marks a missing sample (outside a registered frame's coverage);
NaN sorts last, so a pixel with n valid samples has them at indices ``[0, n)``.

Frames may be memory-mapped: `integrate` reads them in blocks of rows sized from a memory
budget, so 200 frames of 24 MP integrate within the budget plus the output images.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import stats

from processing import clip_kernels
from processing.normalize import (
    FrameNormalization,
    FrameSource,
    Normalization,
    estimate_normalization,
)

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U16 = npt.NDArray[np.uint16]


# The interquartile range of a Gaussian is 1.349 sigma.
_IQR_TO_SIGMA = 1.349
# Winsorizing a Gaussian sample at +-1.5 sigma shrinks its standard deviation by 1 / 1.134.
_WINSOR_CUT_SIGMA = 1.5
_WINSOR_CORRECTION = 1.134
# The winsorized sigma has converged when it moves by less than this fraction: thresholds
# then sit within 0.003 sigma of their limit.
_WINSOR_TOLERANCE = 1e-3
_WINSOR_MAX_ITERATIONS = 20
# Rejection never leaves a pixel with fewer samples than this, and a pixel needs at least
# this + 1 samples before anything is rejected: two samples cannot tell which one is wrong.
_MIN_KEPT = 2
# Working memory of a block, measured with tracemalloc (tests/processing/test_integrate.py
# checks the budget holds): per sample (frame x pixel) the float32 stack, its sorted copy and
# the transposed copy that sorts it, two float64 cumulative sums, boolean masks (~25 B, 28
# with margin); per pixel the ranges, centres, sigmas and masks of the iterations (~290 B).
# Linear-fit clipping keeps normal scores and residuals besides (~26 B per sample more).
_BYTES_PER_SAMPLE = 28
_BYTES_PER_PIXEL = 320
_LINEAR_FIT_EXTRA_BYTES = 28
# A block row costs 4 bytes per sample (the float32 stack) and a few per output pixel.
_BYTES_PER_OUTPUT_PIXEL = 16
# Rejection works through a block in chunks of at most this many pixels: 64 Ki pixels of 30
# frames keep the float64 cumulative sums (~16 MB) near the caches; larger chunks measured
# ~25 % slower, smaller ones lose to per-call overhead.
_CHUNK_PIXELS = 1 << 16
# Each thread gets at least this many blocks when the budget allows, to even out the load.
_BLOCKS_PER_THREAD = 4


class Rejection(enum.StrEnum):
    """Pixel rejection algorithms, with the stack sizes they suit.

    - none: keep everything (a plain average or median).
    - sigma: iterative kappa-sigma about the median with the sample standard deviation. Needs
      ~12+ frames: an outlier among N samples has a z-score of at most (N-1)/sqrt(N).
    - winsorized (default): sigma from a winsorized sample (outliers pulled in to +-1.5 sigma,
      sigma re-estimated until stable), started from the interquartile range, so a single
      outlier is rejected from 5 frames on.
    - linear_fit: fit a line through the sorted stack against normal scores (a probability
      plot) and reject the ends far from it; for large stacks (~15+) with varying sky.
    - percentile: reject samples further than a fraction of the median from it; for 3-6 frames.
    - esd: Rosner's generalized extreme Studentized deviate test at significance alpha.
    """

    NONE = "none"
    SIGMA = "sigma"
    WINSORIZED = "winsorized"
    LINEAR_FIT = "linear_fit"
    PERCENTILE = "percentile"
    ESD = "esd"


class Combine(enum.StrEnum):
    """How the kept samples become one value: (weighted) mean, or median (unweighted)."""

    AVERAGE = "average"
    MEDIAN = "median"


@dataclass(frozen=True)
class RejectionConfig:
    """Rejection algorithm and its thresholds.

    - sigma_low / sigma_high (sigma and winsorized): in units of the estimated sigma. 4 low /
      3 high as PixInsight: dark outliers are rare, bright ones (cosmic rays, satellites,
      planes, hot pixels left over) are what stacking must remove.
    - linear_fit_low / linear_fit_high: in units of the line's slope, which estimates sigma;
      4 / 3 reject none of 15-200 clean Gaussian samples in 10,000 and 93-98 % of 8-sigma
      outliers (measured).
    - percentile_low / percentile_high: fractions of the median (PixInsight's 0.2 / 0.1).
    - esd_alpha: significance of the ESD test; esd_max_outliers: the largest fraction of a
      pixel's samples the test may reject (0.3, as PixInsight).
    - max_iterations: rejection rounds for the iterative algorithms.
    """

    algorithm: Rejection = Rejection.WINSORIZED
    sigma_low: float = 4.0
    sigma_high: float = 3.0
    linear_fit_low: float = 4.0
    linear_fit_high: float = 3.0
    percentile_low: float = 0.2
    percentile_high: float = 0.1
    esd_alpha: float = 0.05
    esd_max_outliers: float = 0.3
    max_iterations: int = 10

    def __post_init__(self) -> None:
        """Raise ValueError on thresholds that would reject everything or loop forever."""
        thresholds = (self.sigma_low, self.sigma_high, self.linear_fit_low, self.linear_fit_high)
        if min(thresholds) <= 0:
            raise ValueError("sigma and linear-fit thresholds must be positive")
        if min(self.percentile_low, self.percentile_high) <= 0:
            raise ValueError("percentile thresholds must be positive")
        if not 0 < self.esd_alpha < 1 or not 0 < self.esd_max_outliers < 1:
            raise ValueError("esd_alpha and esd_max_outliers must be within (0, 1)")
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, got {self.max_iterations}")


@dataclass(frozen=True)
class IntegrationConfig:
    """How a set of frames becomes one image.

    - memory_budget_bytes: working memory for the pixel stacks, shared by the threads (the
      output images come on top: 8 bytes per pixel). With 512 MiB and two threads, each
      thread reads blocks of ~27 rows of 200 frames of a 6000 px wide sensor and rejects
      them in chunks of ~22,000 pixels.
    - threads: row blocks integrated concurrently; numpy releases the GIL in its sorts and
      array loops, so two threads use two cores.
    - reference_index: the frame whose location and scale the others are matched to.
    """

    rejection: RejectionConfig = field(default_factory=RejectionConfig)
    combine: Combine = Combine.AVERAGE
    normalization: Normalization = Normalization.ADDITIVE
    memory_budget_bytes: int = 512 * 1024 * 1024
    threads: int = 2
    reference_index: int = 0

    def __post_init__(self) -> None:
        """Raise ValueError for a budget or thread count below 1 or a negative reference."""
        if self.memory_budget_bytes < 1 or self.threads < 1 or self.reference_index < 0:
            raise ValueError("memory_budget_bytes and threads must be >= 1, reference_index >= 0")


@dataclass(frozen=True, eq=False)
class StackResult:
    """One combined block: the result and where samples were rejected.

    - image: combined value per pixel (NaN where no sample was valid).
    - low_count / high_count: samples rejected below / above per pixel.
    - frame_low / frame_high: samples rejected per frame, (N,).
    """

    image: F32
    low_count: U16
    high_count: U16
    frame_low: I64
    frame_high: I64


@dataclass(frozen=True, eq=False)
class IntegrationResult:
    """The integrated image, its rejection maps and what was done, for provenance.

    Rejection maps count rejected samples per pixel (low: too dark, high: too bright); divide
    by the number of frames for PixInsight's rejection-fraction images. `history` holds one
    line per step with its parameters, for FITS HISTORY cards.
    """

    image: F32
    low_count: U16
    high_count: U16
    frame_low: I64
    frame_high: I64
    normalization: FrameNormalization
    weights: F64
    history: tuple[str, ...]


def combine_stack(
    stack: npt.NDArray[np.floating],
    config: IntegrationConfig = IntegrationConfig(),
    weights: npt.ArrayLike | None = None,
) -> StackResult:
    """Reject and combine an in-memory stack ``(N, ...)`` along its first axis.

    `stack` is used as given (no normalisation); NaN marks a missing sample. `weights` (N,)
    weight the average; None weighs all frames equally. The input is not modified. Raises
    ValueError for an empty stack or weights of the wrong length or sign.
    """
    if stack.ndim < 1 or stack.shape[0] == 0:
        raise ValueError("the stack holds no frame")
    n_frames = stack.shape[0]
    flat = np.asarray(stack, dtype=np.float32).reshape(n_frames, -1)
    result = _combine_block(flat, config, _weights(weights, n_frames))
    shape = stack.shape[1:]
    return StackResult(
        image=result.image.reshape(shape),
        low_count=result.low_count.reshape(shape),
        high_count=result.high_count.reshape(shape),
        frame_low=result.frame_low,
        frame_high=result.frame_high,
    )


def block_plan(n_frames: int, shape: tuple[int, int], config: IntegrationConfig) -> tuple[int, int]:
    """(rows read per block, pixels rejected per chunk) for one thread within the budget.

    A thread holds a block of rows of every frame (4 bytes per sample) and works through it
    in chunks of pixels small enough for the CPU caches (up to _CHUNK_PIXELS), whose sorted
    copies and cumulative sums take at most half of its share of the budget. Blocks are also
    kept small enough that each thread gets several, so no thread idles at the end.
    """
    height, width = shape
    per_sample = _BYTES_PER_SAMPLE
    if config.rejection.algorithm is Rejection.LINEAR_FIT:
        per_sample += _LINEAR_FIT_EXTRA_BYTES
    per_thread = config.memory_budget_bytes // config.threads
    per_pixel = n_frames * per_sample + _BYTES_PER_PIXEL
    chunk = max(1, min(_CHUNK_PIXELS, per_thread // 2 // per_pixel))
    per_row = width * (n_frames * 4 + _BYTES_PER_OUTPUT_PIXEL)
    rows = max(1, (per_thread - chunk * per_pixel) // per_row)
    balanced = max(1, math.ceil(height / (config.threads * _BLOCKS_PER_THREAD)))
    return min(rows, balanced), chunk


def integrate(
    frames: Sequence[FrameSource],
    config: IntegrationConfig = IntegrationConfig(),
    *,
    subtract: FrameSource | None = None,
    normalization: FrameNormalization | None = None,
    weights: npt.ArrayLike | None = None,
) -> IntegrationResult:
    """Normalise, reject and combine equally shaped ``(y, x)`` frames in row blocks.

    `frames` may be numpy arrays of any real dtype, memory maps (np.memmap, astropy FITS
    data with memmap=True) or astropy FITS sections (`FrameSource`); they are only read, a
    block of rows at a time. `subtract` (a
    master bias or dark-flat, for flats) is subtracted from every frame first.
    `normalization` defaults to `estimate_normalization` with the config's method and
    reference; `weights` (N,) to equal weights. Raises ValueError for no frames, differing
    shapes, or weights of the wrong length or sign.
    """
    if not frames:
        raise ValueError("no frames to integrate")
    shape = frames[0].shape
    if len(shape) != 2 or any(frame.shape != shape for frame in frames):
        raise ValueError(f"frames must share one (y, x) shape, got {[f.shape for f in frames]}")
    if subtract is not None and subtract.shape != shape:
        raise ValueError(f"subtract is {subtract.shape}, the frames {shape}")
    n_frames = len(frames)
    if normalization is None:
        normalization = estimate_normalization(
            frames, config.normalization, config.reference_index, subtract=subtract
        )
    elif len(normalization) != n_frames:
        raise ValueError(f"normalization is for {len(normalization)} frames, not {n_frames}")
    frame_weights = _weights(weights, n_frames)
    height, width = shape
    block_rows, chunk = block_plan(n_frames, shape, config)
    image = np.empty(shape, dtype=np.float32)
    low_count = np.empty(shape, dtype=np.uint16)
    high_count = np.empty(shape, dtype=np.uint16)
    image_flat, low_flat, high_flat = (
        image.reshape(-1),
        low_count.reshape(-1),
        high_count.reshape(-1),
    )
    read_lock = threading.Lock()
    gain = normalization.gain.astype(np.float32)
    offset = normalization.offset.astype(np.float32)

    def run(start: int) -> tuple[I64, I64]:
        stop = min(start + block_rows, height)
        stack = np.empty((n_frames, stop - start, width), dtype=np.float32)
        # One thread reads while the other computes: file-backed sources (astropy sections
        # seek and read one shared file handle) are not safe to read from two threads.
        with read_lock:
            for i, frame in enumerate(frames):
                stack[i] = frame[start:stop]
            if subtract is not None:
                stack -= np.asarray(subtract[start:stop], dtype=np.float32)
        stack *= gain[:, None, None]
        stack += offset[:, None, None]
        samples = stack.reshape(n_frames, -1)
        frame_low = np.zeros(n_frames, dtype=np.int64)
        frame_high = np.zeros(n_frames, dtype=np.int64)
        for first in range(0, samples.shape[1], chunk):
            block = _combine_block(samples[:, first : first + chunk], config, frame_weights)
            # Flat views of the (C-contiguous) outputs: pixel p of this block is output
            # pixel start * width + p.
            where = slice(start * width + first, start * width + first + len(block.image))
            image_flat[where] = block.image
            low_flat[where] = block.low_count
            high_flat[where] = block.high_count
            frame_low += block.frame_low
            frame_high += block.frame_high
        return frame_low, frame_high

    starts = range(0, height, block_rows)
    log.debug("integrating %d frames in blocks of %d rows", n_frames, block_rows)
    if config.threads == 1:
        counts = [run(start) for start in starts]
    else:
        with ThreadPoolExecutor(max_workers=config.threads) as pool:
            counts = list(pool.map(run, starts))
    frame_low: I64 = np.sum([low for low, _ in counts], axis=0, dtype=np.int64)
    frame_high: I64 = np.sum([high for _, high in counts], axis=0, dtype=np.int64)
    return IntegrationResult(
        image=image,
        low_count=low_count,
        high_count=high_count,
        frame_low=frame_low,
        frame_high=frame_high,
        normalization=normalization,
        weights=frame_weights,
        history=_history(config, normalization, frame_weights),
    )


def _history(
    config: IntegrationConfig, normalization: FrameNormalization, weights: F64
) -> tuple[str, ...]:
    rejection = config.rejection
    return (
        f"Nightowl integrate: {len(weights)} frames, combine {config.combine.value}",
        f"normalization {normalization.method.value} to frame {normalization.reference_index}",
        f"rejection {rejection.algorithm.value} sigma {rejection.sigma_low:g}/"
        f"{rejection.sigma_high:g} linear_fit {rejection.linear_fit_low:g}/"
        f"{rejection.linear_fit_high:g} percentile {rejection.percentile_low:g}/"
        f"{rejection.percentile_high:g} esd {rejection.esd_alpha:g}/"
        f"{rejection.esd_max_outliers:g}",
        "weights " + " ".join(f"{w:.4g}" for w in weights),
    )


def _weights(weights: npt.ArrayLike | None, n_frames: int) -> F64:
    if weights is None:
        return np.full(n_frames, 1.0 / n_frames)
    values = np.asarray(weights, dtype=np.float64)
    if values.shape != (n_frames,):
        raise ValueError(f"need {n_frames} weights, got shape {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    normalised: F64 = values / values.sum()
    return normalised


class _SortedStack:
    """Pixel stacks sorted along the frame axis, with cumulative sums for range statistics.

    Each column of `s` is one pixel's stack. Sums are of d = s - ref, ref a per-pixel
    central value, in float64, so the variance of a range does not cancel catastrophically
    against a far outlier elsewhere in the stack. Iterative algorithms move to `subset`s of
    the pixels still changing: `s` is copied contiguous for the counting passes, while the
    cumulative sums stay shared and are read through `cols`, the pixels' block columns.
    """

    def __init__(self, s: F32, s1: F64, s2: F64, ref: F32, n: I64, cols: I64) -> None:
        self.s, self.s1, self.s2, self.ref, self.n, self.cols = s, s1, s2, ref, n, cols
        self.n_frames, self.n_pixels = s.shape
        self.block_pixels = s1.shape[1]
        self.columns: I64 = np.arange(self.n_pixels, dtype=np.int64)

    @classmethod
    def build(cls, stack: F32) -> _SortedStack:
        n_frames, n_pixels = stack.shape
        # Sorting along the last axis of the transposed copy is ~4x faster than along axis 0.
        transposed = np.ascontiguousarray(stack.T)
        transposed.sort(axis=1)
        s: F32 = np.ascontiguousarray(transposed.T)
        del transposed
        # NaN sorts last: a pixel has a missing sample only if its last sorted one is NaN.
        if np.isnan(s[-1]).any():
            n: I64 = n_frames - np.isnan(s).sum(axis=0)
        else:
            n = np.full(n_pixels, n_frames, dtype=np.int64)
        columns = np.arange(n_pixels, dtype=np.int64)
        middle = np.clip((n - 1) // 2, 0, n_frames - 1)
        ref = s.reshape(-1)[middle * n_pixels + columns]
        ref = np.where(np.isnan(ref), np.float32(0.0), ref)
        s1 = np.empty((n_frames + 1, n_pixels), dtype=np.float64)
        s2 = np.empty((n_frames + 1, n_pixels), dtype=np.float64)
        s1[0] = 0.0
        s2[0] = 0.0
        d = np.empty(n_pixels, dtype=np.float64)
        for k in range(n_frames):
            np.subtract(s[k], ref, out=d, dtype=np.float64)
            np.add(s1[k], d, out=s1[k + 1])
            np.multiply(d, d, out=d)
            np.add(s2[k], d, out=s2[k + 1])
        return cls(s, s1, s2, ref, n, columns)

    def subset(self, keep: I64) -> _SortedStack:
        """The stacks of the pixels `keep` (indices into this one)."""
        if len(keep) == self.n_pixels:
            return self
        # np.take keeps rows C-contiguous, so the flat index arithmetic stays copy-free.
        return _SortedStack(
            np.take(self.s, keep, axis=1),
            self.s1,
            self.s2,
            self.ref[keep],
            self.n[keep],
            self.cols[keep],
        )

    def at(self, index: I64) -> F32:
        """s[index[p], p] per pixel p; `index` is clipped into the stack."""
        clipped = np.clip(index, 0, self.n_frames - 1)
        values: F32 = self.s.reshape(-1)[clipped * self.n_pixels + self.columns]
        return values

    def sums(self, lo: I64, hi: I64) -> tuple[F64, F64]:
        """Sum of d and of d^2 over [lo, hi) per pixel."""
        flat1, flat2 = self.s1.reshape(-1), self.s2.reshape(-1)
        i_lo = lo * self.block_pixels + self.cols
        i_hi = hi * self.block_pixels + self.cols
        return flat1[i_hi] - flat1[i_lo], flat2[i_hi] - flat2[i_lo]

    def median(self, lo: I64, hi: I64) -> F64:
        k = hi - lo
        lower = self.at(lo + np.maximum(k - 1, 0) // 2).astype(np.float64)
        middle: F64 = (lower + self.at(lo + k // 2)) * 0.5
        return middle

    def quantile(self, lo: I64, hi: I64, q: float) -> F64:
        position = lo + q * np.maximum(hi - lo - 1, 0)
        below = np.floor(position).astype(np.int64)
        a = self.at(below).astype(np.float64)
        b = self.at(np.minimum(below + 1, np.maximum(hi - 1, 0)))
        value: F64 = a + (position - below) * (b - a)
        return value

    def mean_std(self, lo: I64, hi: I64) -> tuple[F64, F64]:
        """Mean and sample standard deviation (ddof 1) over [lo, hi); 0 std below 2 samples."""
        k = (hi - lo).astype(np.float64)
        sum1, sum2 = self.sums(lo, hi)
        safe_k = np.maximum(k, 1.0)
        mean = self.ref + sum1 / safe_k
        variance = (sum2 - sum1 * sum1 / safe_k) / np.maximum(k - 1.0, 1.0)
        return mean, np.sqrt(np.maximum(variance, 0.0))

    def count_below(self, value: F64) -> I64:
        """Samples < value per pixel: a prefix of the sorted stack (NaN never counts)."""
        counts: I64 = (self.s < value.astype(np.float32)).sum(axis=0)
        return counts

    def count_at_most(self, value: F64) -> I64:
        """Samples <= value per pixel (NaN never counts)."""
        counts: I64 = (self.s <= value.astype(np.float32)).sum(axis=0)
        return counts

    def clip_range(
        self, lo: I64, hi: I64, low_threshold: F64, high_threshold: F64
    ) -> tuple[I64, I64]:
        """[lo, hi) shrunk to the samples within the thresholds.

        A pixel keeps its range when the thresholds would leave it fewer than _MIN_KEPT.
        """
        new_lo = np.maximum(lo, self.count_below(low_threshold))
        new_hi = np.minimum(hi, self.count_at_most(high_threshold))
        allowed = new_hi - new_lo >= _MIN_KEPT
        return np.where(allowed, new_lo, lo), np.where(allowed, new_hi, hi)


class _Active:
    """The pixels an iterative algorithm still works on, and when to compact them.

    Finished pixels keep their values; while many pixels remain, passes run over the whole
    stack and updates are masked; once fewer than half remain, the stack is compacted to
    them. A pixel's result therefore never depends on its block's other pixels.
    """

    def __init__(self, stack: _SortedStack, origin: I64) -> None:
        self.stack = stack
        self.origin = origin
        self.mask = np.ones(stack.n_pixels, dtype=bool)

    def retire(self, done: npt.NDArray[np.bool_]) -> I64 | None:
        """Mark `done` pixels finished; returns the kept indices when the stack compacts."""
        self.mask &= ~done
        remaining = int(self.mask.sum())
        if remaining >= self.stack.n_pixels / 2 or remaining == 0:
            return None
        keep = np.flatnonzero(self.mask)
        self.stack = self.stack.subset(keep)
        self.origin = self.origin[keep]
        self.mask = np.ones(len(keep), dtype=bool)
        return keep

    @property
    def empty(self) -> bool:
        return not self.mask.any()


def _combine_block(stack: F32, config: IntegrationConfig, weights: F64) -> StackResult:
    """Reject and combine a float32 ``(N, P)`` block; NaN samples are missing."""
    if config.rejection.algorithm in _COMPILED:
        return _compiled_block(stack, config, weights)
    ss = _SortedStack.build(stack)
    lo = np.zeros(ss.n_pixels, dtype=np.int64)
    hi = ss.n.copy()
    algorithm = config.rejection.algorithm
    # Pixels with too few samples to tell an outlier from the rest are never clipped.
    judged = np.flatnonzero(ss.n > _MIN_KEPT)
    work = _Active(ss.subset(judged), judged)
    if algorithm is Rejection.LINEAR_FIT:
        _linear_fit_clip(work, lo, hi, config.rejection)
    elif algorithm is Rejection.PERCENTILE:
        _percentile_clip(work, lo, hi, config.rejection)
    else:
        _esd_clip(work, lo, hi, config.rejection)
    return _combine_kept(stack, ss, lo, hi, config.combine, weights)


_COMPILED = {
    Rejection.NONE: clip_kernels.NONE,
    Rejection.SIGMA: clip_kernels.SIGMA,
    Rejection.WINSORIZED: clip_kernels.WINSORIZED,
}


@functools.cache
def _network(n_frames: int) -> I64:
    return clip_kernels.sorting_network(n_frames)


def _compiled_block(stack: F32, config: IntegrationConfig, weights: F64) -> StackResult:
    """`_combine_block` for the algorithms with a compiled per-pixel kernel."""
    n_frames, n_pixels = stack.shape
    image = np.empty(n_pixels, dtype=np.float32)
    low_count = np.empty(n_pixels, dtype=np.uint16)
    high_count = np.empty(n_pixels, dtype=np.uint16)
    frame_low = np.zeros(n_frames, dtype=np.int64)
    frame_high = np.zeros(n_frames, dtype=np.int64)
    rejection = config.rejection
    clip_kernels.clip_and_combine(
        stack,
        weights,
        _COMPILED[rejection.algorithm],
        clip_kernels.MEDIAN if config.combine is Combine.MEDIAN else clip_kernels.AVERAGE,
        rejection.sigma_low,
        rejection.sigma_high,
        rejection.max_iterations,
        _MIN_KEPT,
        _IQR_TO_SIGMA,
        _WINSOR_CUT_SIGMA,
        _WINSOR_CORRECTION,
        _WINSOR_TOLERANCE,
        _WINSOR_MAX_ITERATIONS,
        _network(n_frames),
        image,
        low_count,
        high_count,
        frame_low,
        frame_high,
    )
    return StackResult(image, low_count, high_count, frame_low, frame_high)


def _combine_kept(
    stack: F32, ss: _SortedStack, lo: I64, hi: I64, combine: Combine, weights: F64
) -> StackResult:
    empty = hi <= lo
    nan = np.float32(np.nan)
    low_value = np.where(empty, nan, ss.at(lo))
    high_value = np.where(empty, nan, ss.at(hi - 1))
    # Every rejection threshold falls strictly between two distinct values, so the kept
    # range [lo, hi) is exactly the samples within [low_value, high_value].
    frame_low: I64 = (stack < low_value).sum(axis=1)
    frame_high: I64 = (stack > high_value).sum(axis=1)
    image: npt.NDArray[np.floating]
    if combine is Combine.MEDIAN:
        image = ss.median(lo, hi)
    elif np.all(weights == weights[0]):
        image, _ = ss.mean_std(lo, hi)
    else:
        total = np.zeros(ss.n_pixels, dtype=np.float64)
        weight_sum = np.zeros(ss.n_pixels, dtype=np.float64)
        for row, weight in zip(stack, weights, strict=True):
            kept = (row >= low_value) & (row <= high_value)
            total += np.where(kept, row - ss.ref, np.float32(0.0)) * weight
            weight_sum += kept * weight
        image = ss.ref + total / np.where(weight_sum > 0, weight_sum, 1.0)
    return StackResult(
        image=np.where(empty, nan, image.astype(np.float32)),
        low_count=lo.astype(np.uint16),
        high_count=(ss.n - hi).astype(np.uint16),
        frame_low=frame_low,
        frame_high=frame_high,
    )


def _percentile_clip(work: _Active, lo: I64, hi: I64, config: RejectionConfig) -> None:
    """One pass: reject beyond fractions of the median below and above it (in place)."""
    ss, origin = work.stack, work.origin
    begin, end = lo[origin], hi[origin]
    center = ss.median(begin, end)
    spread = np.abs(center)
    lo[origin], hi[origin] = ss.clip_range(
        begin,
        end,
        center - config.percentile_low * spread,
        center + config.percentile_high * spread,
    )


def _linear_fit_clip(work: _Active, lo: I64, hi: I64, config: RejectionConfig) -> None:
    """Fit a line through the kept sorted samples against their normal scores; trim the ends.

    Sorted Gaussian samples lie on s_j = mean + sigma z_j, z_j the expected normal order
    statistic of rank j among n (Blom's approximation): a normal probability plot. The fitted
    slope is the sigma estimate, so thresholds mean the same at 15 frames as at 200 (against
    the rank j itself, as Siril fits, the tails of a large stack bend away from any line and
    clean samples get rejected). A censored range keeps its samples' scores among all n. Only
    runs of outliers at either end are rejected. Updates `lo` and `hi` in place.
    """
    scores = _normal_scores(work.stack.n_frames)
    rows = np.arange(work.stack.n_frames, dtype=np.int64)[:, None]
    begin, end = lo[work.origin], hi[work.origin]
    z = scores[work.stack.n].T
    for _ in range(config.max_iterations):
        if work.empty:
            break
        ss, active = work.stack, work.mask
        # The line is fitted through the central half of the kept ranks, so an outlier at an
        # end (with the largest leverage of all) cannot tilt it.
        quarter = (end - begin) // 4
        inside = (rows >= begin + quarter) & (rows < end - quarter)
        d = np.where(inside, ss.s - ss.ref, np.float32(0.0))
        zi = np.where(inside, z, np.float32(0.0))
        k = (end - begin - 2 * quarter).astype(np.float64)
        sum_z = zi.sum(axis=0, dtype=np.float64)
        sum_zz = (zi * zi).sum(axis=0, dtype=np.float64)
        sum_d = d.sum(axis=0, dtype=np.float64)
        sum_zd = (zi * d).sum(axis=0, dtype=np.float64)
        denominator = k * sum_zz - sum_z * sum_z
        safe = np.where(denominator > 0, denominator, 1.0)
        slope = np.where(denominator > 0, (k * sum_zd - sum_z * sum_d) / safe, 0.0)
        intercept = (sum_d - slope * sum_z) / np.maximum(k, 1.0)
        residual = ss.s - ss.ref - (intercept + slope * z).astype(np.float32)
        low_out = (residual < -config.linear_fit_low * slope) | (rows < begin)
        high_out = (residual > config.linear_fit_high * slope) | (rows >= end)
        new_begin = np.argmin(low_out, axis=0).astype(np.int64)
        new_end = ss.n_frames - np.argmin(high_out[::-1], axis=0).astype(np.int64)
        allowed = (
            active
            & ~low_out.all(axis=0)
            & ~high_out.all(axis=0)
            & (new_end - new_begin >= _MIN_KEPT)
        )
        new_begin, new_end = np.where(allowed, new_begin, begin), np.where(allowed, new_end, end)
        changed = (new_begin != begin) | (new_end != end)
        begin, end = new_begin, new_end
        lo[work.origin], hi[work.origin] = begin, end
        keep = work.retire(~changed)
        if keep is not None:
            begin, end, z = begin[keep], end[keep], np.take(z, keep, axis=1)


def _normal_scores(n_frames: int) -> F32:
    """scores[n, j]: Blom's expected normal order statistic of rank j among n (0 beyond n)."""
    scores = np.zeros((n_frames + 1, n_frames), dtype=np.float32)
    for n in range(1, n_frames + 1):
        ranks = np.arange(n, dtype=np.float64)
        scores[n, :n] = stats.norm.ppf((ranks + 1.0 - 0.375) / (n + 0.25))
    return scores


def _esd_max_outliers(n: int, config: RejectionConfig) -> int:
    """Outliers the test may remove from n samples, leaving at least _MIN_KEPT + 1."""
    return max(0, min(int(config.esd_max_outliers * n), n - _MIN_KEPT - 1))


def _esd_critical_values(n_frames: int, config: RejectionConfig) -> F64:
    """lambda[n, i] of Rosner's test for the i-th outlier of n samples (inf: not tested)."""
    table = np.full((n_frames + 1, n_frames + 1), np.inf)
    for n in range(_MIN_KEPT + 1, n_frames + 1):
        for i in range(1, _esd_max_outliers(n, config) + 1):
            remaining = n - i + 1
            p = 1.0 - config.esd_alpha / (2.0 * remaining)
            t = float(stats.t.ppf(p, remaining - 2))
            table[n, i] = (remaining - 1) * t / math.sqrt((remaining - 2 + t * t) * remaining)
    return table


def _esd_clip(work: _Active, lo: I64, hi: I64, config: RejectionConfig) -> None:
    """Generalized ESD (Rosner 1983), from the ends of the sorted stack.

    Step i removes the sample furthest from the mean of those left and computes
    R_i = that distance / their sample standard deviation; the pixel rejects as many samples
    as the largest i with R_i above its critical value lambda_i. Updates `lo` and `hi`.
    """
    table = _esd_critical_values(work.stack.n_frames, config)
    ss, origin = work.stack, work.origin
    n = ss.n
    begin, end = lo[origin], hi[origin]
    best_lo, best_hi = begin.copy(), end.copy()
    for i in range(1, _esd_max_outliers(ss.n_frames, config) + 1):
        mean, sigma = ss.mean_std(begin, end)
        below = mean - ss.at(begin)
        above = ss.at(end - 1) - mean
        take_high = above >= below
        deviation = np.where(take_high, above, below)
        statistic = np.where(sigma > 0, deviation / np.where(sigma > 0, sigma, 1.0), 0.0)
        begin = np.where(take_high, begin, begin + 1)
        end = np.where(take_high, end - 1, end)
        significant = statistic > table[n, i]
        best_lo = np.where(significant, begin, best_lo)
        best_hi = np.where(significant, end, best_hi)
    lo[origin], hi[origin] = best_lo, best_hi
