"""Pixel rejection: one entry per algorithm in `REJECTIONS`, each with its own parameters.

Every algorithm works on the pixel stack sorted along the frame axis, and only ever rejects
from the two ends of the sorted stack: an outlier is an extreme sample. The kept samples of a
pixel are then one contiguous index range ``[lo, hi)`` of its sorted stack, so medians are
index look-ups, and sums and sums of squares over the kept range are differences of
cumulative sums. That makes each iteration cost O(pixels) after one sort, with no per-pixel
Python loop. NaN marks a missing sample (outside a registered frame's coverage); NaN sorts
last, so a pixel with n valid samples has them at indices ``[0, n)``.

An algorithm runs in one of two ways, which its entry chooses from its parameters:

- a `Kernel`: a compiled per-pixel kernel of `processing.clip_kernels`, which rejects and
  combines each pixel in one pass (none, sigma, winsorized);
- a `RangeClip`: a vectorised function that narrows each pixel's kept range of a
  `SortedStack` in place; `processing.integrate` then combines the kept samples.

Adding an algorithm takes this module only: its name in `Rejection` (the CLI's
``--rejection``, the API's ``options.rejection`` and the processing job JSON list its
members), a frozen dataclass of its parameters subclassing `RejectionConfig`, the function
that runs it, and one entry in `REJECTIONS`. Importing this module fails while a name has no
entry.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from processing import clip_kernels

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U16 = npt.NDArray[np.uint16]

# Rejection never leaves a pixel with fewer samples than this, and a pixel needs at least
# this + 1 samples before anything is rejected: two samples cannot tell which one is wrong.
MIN_KEPT = 2
# The interquartile range of a Gaussian is 1.349 sigma.
_IQR_TO_SIGMA = 1.349
# Winsorizing a Gaussian sample at +-1.5 sigma shrinks its standard deviation by 1 / 1.134.
_WINSOR_CUT_SIGMA = 1.5
_WINSOR_CORRECTION = 1.134
# The kernel solves for the winsorized sigma exactly (`clip_kernels._winsorized_sigma`);
# where that does not settle, it iterates until the sigma moves by less than this fraction:
# thresholds then sit within 0.03 sigma of their limit, far inside the sigma's own sampling
# error (~18 % for 15 frames).
_WINSOR_TOLERANCE = 1e-2
_WINSOR_MAX_ITERATIONS = 20
# Linear-fit clipping keeps normal scores and residuals of every sample besides the sorted
# stack (~26 B per sample, 28 with margin; measured with tracemalloc).
_LINEAR_FIT_BYTES_PER_SAMPLE = 28


class Rejection(enum.StrEnum):
    """Pixel rejection algorithms, with the stack sizes they suit.

    - none: keep everything (a plain average or median).
    - sigma: iterative kappa-sigma about the median with the sample standard deviation. Needs
      ~12+ frames: an outlier among N samples has a z-score of at most (N-1)/sqrt(N).
    - winsorized (default): sigma from a winsorized sample (outliers pulled in to +-1.5 sigma:
      the sigma that reproduces itself), started from the interquartile range, so a single
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


@dataclass(frozen=True)
class RejectionConfig:
    """The parameters of one rejection algorithm: its class (a subclass with an entry in
    `REJECTIONS`) says which algorithm runs. `rejection_config(name)` gives the defaults."""


@dataclass(frozen=True)
class NoRejection(RejectionConfig):
    """Keep every sample."""


@dataclass(frozen=True)
class _Clipping(RejectionConfig):
    """Thresholds low / high below and above the centre, in the algorithm's unit of spread,
    and the most rejection rounds (4 / 3 / 10 by default)."""

    low: float = 4.0
    high: float = 3.0
    max_iterations: int = 10

    def __post_init__(self) -> None:
        """Raise ValueError on thresholds that would reject everything or loop forever."""
        _check_thresholds(self.low, self.high, self.max_iterations)


@dataclass(frozen=True)
class SigmaClip(_Clipping):
    """Iterative kappa-sigma clipping about the median.

    - low / high: in units of the sample standard deviation. 4 low / 3 high as PixInsight:
      dark outliers are rare, bright ones (cosmic rays, satellites, planes, hot pixels left
      over) are what stacking must remove.
    - max_iterations: rejection rounds.
    """


@dataclass(frozen=True)
class Winsorized(_Clipping):
    """Winsorized sigma clipping: as `SigmaClip`, with sigma from the winsorized sample.

    - low / high: in units of the winsorized sigma (4 / 3 as PixInsight).
    - max_iterations: rejection rounds.
    """


@dataclass(frozen=True)
class LinearFit(_Clipping):
    """Linear-fit clipping against normal scores.

    - low / high: in units of the line's slope, which estimates sigma; 4 / 3 reject none of
      15-200 clean Gaussian samples in 10,000 and 93-98 % of 8-sigma outliers (measured).
    - max_iterations: rejection rounds.
    """


@dataclass(frozen=True)
class Percentile(RejectionConfig):
    """Percentile clipping: low / high are fractions of the median (PixInsight's 0.2 / 0.1)."""

    low: float = 0.2
    high: float = 0.1

    def __post_init__(self) -> None:
        """Raise ValueError for a threshold that is not positive."""
        if min(self.low, self.high) <= 0:
            raise ValueError("percentile thresholds must be positive")


@dataclass(frozen=True)
class Esd(RejectionConfig):
    """Generalized ESD test.

    - outliers_fraction: the largest fraction of a pixel's samples the test may reject (0.3,
      as PixInsight).
    - significance: alpha of the test.
    """

    outliers_fraction: float = 0.3
    significance: float = 0.05

    def __post_init__(self) -> None:
        """Raise ValueError outside (0, 1)."""
        if not 0 < self.significance < 1 or not 0 < self.outliers_fraction < 1:
            raise ValueError("ESD significance and outliers_fraction must be within (0, 1)")


def _check_thresholds(low: float, high: float, max_iterations: int) -> None:
    if min(low, high) <= 0:
        raise ValueError(f"rejection thresholds must be positive, got {low} / {high}")
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be at least 1, got {max_iterations}")


class SortedStack:
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
    def build(cls, stack: F32) -> SortedStack:
        """Sort a float32 ``(N, P)`` block (NaN: missing) and sum it; `stack` is not modified."""
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

    def subset(self, keep: I64) -> SortedStack:
        """The stacks of the pixels `keep` (indices into this one)."""
        if len(keep) == self.n_pixels:
            return self
        # np.take keeps rows C-contiguous, so the flat index arithmetic stays copy-free.
        return SortedStack(
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

        A pixel keeps its range when the thresholds would leave it fewer than MIN_KEPT.
        """
        new_lo = np.maximum(lo, self.count_below(low_threshold))
        new_hi = np.minimum(hi, self.count_at_most(high_threshold))
        allowed = new_hi - new_lo >= MIN_KEPT
        return np.where(allowed, new_lo, lo), np.where(allowed, new_hi, hi)


class ActivePixels:
    """The pixels an iterative algorithm still works on, and when to compact them.

    Finished pixels keep their values; while many pixels remain, passes run over the whole
    stack and updates are masked; once fewer than half remain, the stack is compacted to
    them. A pixel's result therefore never depends on its block's other pixels.
    """

    def __init__(self, stack: SortedStack, origin: I64) -> None:
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


RangeClip = Callable[[ActivePixels, I64, I64], None]
"""Narrows the kept ranges ``lo[origin], hi[origin]`` of the active pixels, in place."""


@dataclass(frozen=True)
class Kernel:
    """A compiled kernel of `processing.clip_kernels` and its thresholds (in units of the
    kernel's sigma; unused by `clip_kernels.NONE`). Thresholds are floats: an int would make
    numba compile (seconds) another variant of the kernel."""

    kind: int
    low: float = 0.0
    high: float = 0.0
    max_iterations: int = 0

    def clip_and_combine(
        self, stack: F32, weights: F64, median: bool
    ) -> tuple[F32, U16, U16, I64, I64]:
        """Reject and combine a float32 ``(N, P)`` block (NaN: missing) with `weights` (N,):
        the image (P,), samples rejected low and high per pixel (P,) and per frame (N,)."""
        n_frames, n_pixels = stack.shape
        image = np.empty(n_pixels, dtype=np.float32)
        low_count = np.empty(n_pixels, dtype=np.uint16)
        high_count = np.empty(n_pixels, dtype=np.uint16)
        frame_low = np.zeros(n_frames, dtype=np.int64)
        frame_high = np.zeros(n_frames, dtype=np.int64)
        clip_kernels.clip_and_combine(
            stack,
            weights,
            self.kind,
            clip_kernels.MEDIAN if median else clip_kernels.AVERAGE,
            self.low,
            self.high,
            self.max_iterations,
            MIN_KEPT,
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
        return image, low_count, high_count, frame_low, frame_high


def load_kernels() -> None:
    """Run the clipping kernel once on a tiny block, so that numba loads it from its cache
    (its type registry and machine code, ~0.3 s) now rather than in a job's first master.
    A process that forks processing jobs calls it once, before forking."""
    # `processing.integrate` passes a chunk of columns of a (N, P) block (numba's 'A'
    # layout), or the whole block when one chunk holds it ('C'): numba has one variant each.
    kernel = _winsorized_kernel(Winsorized())
    columns = np.zeros((3, 8), dtype=np.float32)[:, ::2]
    for block in (columns, np.ascontiguousarray(columns)):
        kernel.clip_and_combine(block, np.full(3, 1 / 3), median=False)


@functools.cache
def _network(n_frames: int) -> I64:
    return clip_kernels.sorting_network(n_frames)


def kept_ranges(stack: SortedStack, clip: RangeClip) -> tuple[I64, I64]:
    """[lo, hi) of the samples each pixel of `stack` keeps after `clip`.

    Pixels with too few samples to tell an outlier from the rest are never clipped.
    """
    lo = np.zeros(stack.n_pixels, dtype=np.int64)
    hi = stack.n.copy()
    judged = np.flatnonzero(stack.n > MIN_KEPT)
    clip(ActivePixels(stack.subset(judged), judged), lo, hi)
    return lo, hi


def _percentile_clip(config: Percentile, work: ActivePixels, lo: I64, hi: I64) -> None:
    """One pass: reject beyond fractions of the median below and above it (in place)."""
    ss, origin = work.stack, work.origin
    begin, end = lo[origin], hi[origin]
    center = ss.median(begin, end)
    spread = np.abs(center)
    lo[origin], hi[origin] = ss.clip_range(
        begin,
        end,
        center - config.low * spread,
        center + config.high * spread,
    )


def _linear_fit_clip(config: LinearFit, work: ActivePixels, lo: I64, hi: I64) -> None:
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
        low_out = (residual < -config.low * slope) | (rows < begin)
        high_out = (residual > config.high * slope) | (rows >= end)
        new_begin = np.argmin(low_out, axis=0).astype(np.int64)
        new_end = ss.n_frames - np.argmin(high_out[::-1], axis=0).astype(np.int64)
        allowed = (
            active
            & ~low_out.all(axis=0)
            & ~high_out.all(axis=0)
            & (new_end - new_begin >= MIN_KEPT)
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
    from scipy import special  # only linear-fit clipping needs it: kept off the import path

    scores = np.zeros((n_frames + 1, n_frames), dtype=np.float32)
    for n in range(1, n_frames + 1):
        ranks = np.arange(n, dtype=np.float64)
        scores[n, :n] = special.ndtri((ranks + 1.0 - 0.375) / (n + 0.25))
    return scores


def _esd_max_outliers(n: int, config: Esd) -> int:
    """Outliers the test may remove from n samples, leaving at least MIN_KEPT + 1."""
    return max(0, min(int(config.outliers_fraction * n), n - MIN_KEPT - 1))


def _esd_critical_values(n_frames: int, config: Esd) -> F64:
    """lambda[n, i] of Rosner's test for the i-th outlier of n samples (inf: not tested)."""
    from scipy import special  # only ESD needs it: kept off the import path

    table = np.full((n_frames + 1, n_frames + 1), np.inf)
    for n in range(MIN_KEPT + 1, n_frames + 1):
        for i in range(1, _esd_max_outliers(n, config) + 1):
            remaining = n - i + 1
            p = 1.0 - config.significance / (2.0 * remaining)
            t = float(special.stdtrit(remaining - 2, p))
            table[n, i] = (remaining - 1) * t / math.sqrt((remaining - 2 + t * t) * remaining)
    return table


def _esd_clip(config: Esd, work: ActivePixels, lo: I64, hi: I64) -> None:
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


P = TypeVar("P", bound=RejectionConfig)


@dataclass(frozen=True)
class RejectionMethod(Generic[P]):
    """One algorithm of the table.

    - config: its parameters' dataclass; ``config()`` holds the defaults.
    - plan: what runs for given parameters: a compiled `Kernel`, or a `RangeClip`.
    - bytes_per_sample: working memory a `RangeClip` needs per sample (frame x pixel) beyond
      the sorted stack and its sums, for `processing.integrate.block_plan`.
    """

    config: type[P]
    plan: Callable[[P], Kernel | RangeClip]
    bytes_per_sample: int = 0


def _sigma_kernel(config: SigmaClip) -> Kernel:
    return Kernel(clip_kernels.SIGMA, float(config.low), float(config.high), config.max_iterations)


def _winsorized_kernel(config: Winsorized) -> Kernel:
    return Kernel(
        clip_kernels.WINSORIZED, float(config.low), float(config.high), config.max_iterations
    )


REJECTIONS: dict[Rejection, RejectionMethod[Any]] = {
    Rejection.NONE: RejectionMethod(NoRejection, lambda _: Kernel(clip_kernels.NONE)),
    Rejection.SIGMA: RejectionMethod(SigmaClip, _sigma_kernel),
    Rejection.WINSORIZED: RejectionMethod(Winsorized, _winsorized_kernel),
    Rejection.LINEAR_FIT: RejectionMethod(
        LinearFit,
        lambda config: functools.partial(_linear_fit_clip, config),
        bytes_per_sample=_LINEAR_FIT_BYTES_PER_SAMPLE,
    ),
    Rejection.PERCENTILE: RejectionMethod(
        Percentile, lambda config: functools.partial(_percentile_clip, config)
    ),
    Rejection.ESD: RejectionMethod(Esd, lambda config: functools.partial(_esd_clip, config)),
}
"""Every algorithm by its name: the only place an algorithm is registered."""

_BY_CONFIG = {method.config: algorithm for algorithm, method in REJECTIONS.items()}
if len(_BY_CONFIG) != len(REJECTIONS) or set(REJECTIONS) != set(Rejection):
    raise RuntimeError("REJECTIONS needs one entry, with a config class of its own, per Rejection")


def rejection_config(algorithm: Rejection | str) -> RejectionConfig:
    """The default parameters of `algorithm` (a `Rejection` or its value, as the CLI and the
    API take it). Raises ValueError for a name that is no algorithm."""
    config: RejectionConfig = REJECTIONS[Rejection(algorithm)].config()
    return config


def rejection_name(config: RejectionConfig) -> Rejection:
    """Which algorithm `config` runs. Raises ValueError for a class without an entry."""
    algorithm = _BY_CONFIG.get(type(config))
    if algorithm is None:
        raise ValueError(f"no rejection algorithm takes {type(config).__name__}")
    return algorithm


def rejection_method(config: RejectionConfig) -> RejectionMethod[Any]:
    """The table entry `config` belongs to. Raises ValueError as `rejection_name`."""
    return REJECTIONS[rejection_name(config)]


def rejection_plan(config: RejectionConfig) -> Kernel | RangeClip:
    """What runs for `config`. Raises ValueError as `rejection_name`."""
    plan: Kernel | RangeClip = rejection_method(config).plan(config)
    return plan


def describe(config: RejectionConfig) -> str:
    """One line for provenance (FITS HISTORY): the algorithm and its parameters."""
    values = (f"{field.name} {getattr(config, field.name):g}" for field in fields(config))
    return " ".join((f"rejection {rejection_name(config).value}", *values))
