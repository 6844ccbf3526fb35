"""Integration (stacking): normalise frames, reject outliers pixel by pixel, combine.

Rejection (`processing.rejection`) leaves each pixel one contiguous range of its sorted
stack; the kept samples are combined here, by a (weighted) mean or the median.

Frames may be memory-mapped: `integrate` reads them in blocks of rows sized from a memory
budget, so 200 frames of 24 MP integrate within the budget plus the output images.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from processing.normalize import (
    FrameNormalization,
    FrameSource,
    Normalization,
    estimate_normalization,
)
from processing.rejection import (
    Kernel,
    RangeClip,
    Rejection,
    RejectionConfig,
    SortedStack,
    Winsorized,
    describe,
    kept_ranges,
    rejection_method,
    rejection_plan,
)

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U16 = npt.NDArray[np.uint16]


# Working memory of a block, measured with tracemalloc (tests/processing/test_integrate.py
# checks the budget holds): per sample (frame x pixel) the float32 stack, its sorted copy and
# the transposed copy that sorts it, two float64 cumulative sums, boolean masks (~25 B, 28
# with margin); per pixel the ranges, centres, sigmas and masks of the iterations (~290 B).
# An algorithm needing more per sample says so in its entry (`RejectionMethod`).
_BYTES_PER_SAMPLE = 28
_BYTES_PER_PIXEL = 320
# A block row costs 4 bytes per sample (the float32 stack) and a few per output pixel.
_BYTES_PER_OUTPUT_PIXEL = 16
# Rejection works through a block in chunks of at most this many pixels: 64 Ki pixels of 30
# frames keep the float64 cumulative sums (~16 MB) near the caches; larger chunks measured
# ~25 % slower, smaller ones lose to per-call overhead.
_CHUNK_PIXELS = 1 << 16
# Each thread gets at least this many blocks when the budget allows, to even out the load.
_BLOCKS_PER_THREAD = 4


class Combine(enum.StrEnum):
    """How the kept samples become one value: (weighted) mean, or median (unweighted)."""

    AVERAGE = "average"
    MEDIAN = "median"


@dataclass(frozen=True)
class IntegrationConfig:
    """How a set of frames becomes one image.

    - rejection: one algorithm's parameters, a `processing.rejection` config (`SigmaClip`,
      `Esd`, ...); `rejection_config(name)` gives an algorithm's defaults by its name.
    - memory_budget_bytes: working memory for the pixel stacks, shared by the threads (the
      output images come on top: 8 bytes per pixel). With 512 MiB and two threads, each
      thread reads blocks of ~27 rows of 200 frames of a 6000 px wide sensor and rejects
      them in chunks of ~22,000 pixels.
    - threads: row blocks integrated concurrently; numpy releases the GIL in its sorts and
      array loops, so two threads use two cores.
    - reference_index: the frame whose location and scale the others are matched to.
    """

    rejection: RejectionConfig = field(default_factory=Winsorized)
    combine: Combine = Combine.AVERAGE
    normalization: Normalization = Normalization.ADDITIVE
    memory_budget_bytes: int = 512 * 1024 * 1024
    threads: int = 2
    reference_index: int = 0

    def __post_init__(self) -> None:
        """Raise ValueError for a budget or thread count below 1, a negative reference, or a
        rejection config of no algorithm in `processing.rejection.REJECTIONS`."""
        rejection_method(self.rejection)
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
    plan = rejection_plan(config.rejection)
    result = _combine_block(flat, plan, config.combine, _weights(weights, n_frames))
    shape = stack.shape[1:]
    return StackResult(
        image=result.image.reshape(shape),
        low_count=result.low_count.reshape(shape),
        high_count=result.high_count.reshape(shape),
        frame_low=result.frame_low,
        frame_high=result.frame_high,
    )


def block_plan(
    n_frames: int, shape: tuple[int, int], config: IntegrationConfig, workers: int | None = None
) -> tuple[int, int]:
    """(rows read per block, pixels rejected per chunk) for one thread within the budget.

    A thread holds a block of rows of every frame (4 bytes per sample) and works through it
    in chunks of pixels small enough for the CPU caches (up to _CHUNK_PIXELS), whose sorted
    copies and cumulative sums take at most half of its share of the budget. Blocks are also
    kept small enough that each thread gets several, so no thread idles at the end.

    With `workers` (the processes of a cluster, each running one block at a time), the
    budget is each worker's and the blocks are balanced over the workers instead of the
    config's threads.
    """
    height, width = shape
    per_sample = _BYTES_PER_SAMPLE + rejection_method(config.rejection).bytes_per_sample
    per_thread = config.memory_budget_bytes // config.threads
    parallel = config.threads
    if workers is not None:
        per_thread, parallel = config.memory_budget_bytes, max(1, workers)
    per_pixel = n_frames * per_sample + _BYTES_PER_PIXEL
    chunk = max(1, min(_CHUNK_PIXELS, per_thread // 2 // per_pixel))
    per_row = width * (n_frames * 4 + _BYTES_PER_OUTPUT_PIXEL)
    rows = max(1, (per_thread - chunk * per_pixel) // per_row)
    balanced = max(1, math.ceil(height / (parallel * _BLOCKS_PER_THREAD)))
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
            frames,
            config.normalization,
            config.reference_index,
            subtract=subtract,
            threads=config.threads,
        )
    elif len(normalization) != n_frames:
        raise ValueError(f"normalization is for {len(normalization)} frames, not {n_frames}")
    kept_weights = _weights(weights, n_frames)
    height = shape[0]
    block_rows, chunk = block_plan(n_frames, shape, config)
    image = np.empty(shape, dtype=np.float32)
    low_count = np.empty(shape, dtype=np.uint16)
    high_count = np.empty(shape, dtype=np.uint16)
    read_lock = threading.Lock()
    plan = rejection_plan(config.rejection)

    def run(start: int) -> tuple[I64, I64]:
        stop = min(start + block_rows, height)
        # One thread reads while the other computes: file-backed sources (astropy sections
        # seek and read one shared file handle) are not safe to read from two threads.
        with read_lock:
            stack = read_rows(frames, start, stop, subtract)
        block = combine_rows(stack, normalization, kept_weights, config, chunk, plan)
        image[start:stop] = block.image
        low_count[start:stop] = block.low_count
        high_count[start:stop] = block.high_count
        return block.frame_low, block.frame_high

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
        weights=kept_weights,
        history=_history(config, normalization, kept_weights),
    )


def read_rows(
    frames: Sequence[FrameSource], start: int, stop: int, subtract: FrameSource | None = None
) -> F32:
    """Rows ``start:stop`` of every frame as a float32 stack ``(N, rows, x)``, `subtract`'s
    rows subtracted from each."""
    first = frames[0]
    stack = np.empty((len(frames), stop - start, first.shape[1]), dtype=np.float32)
    for i, frame in enumerate(frames):
        stack[i] = frame[start:stop]
    if subtract is not None:
        stack -= np.asarray(subtract[start:stop], dtype=np.float32)
    return stack


def combine_rows(
    stack: F32,
    normalization: FrameNormalization,
    weights: F64,
    config: IntegrationConfig,
    chunk: int,
    plan: Kernel | RangeClip | None = None,
) -> StackResult:
    """Normalise (in place), reject and combine a block of rows ``(N, rows, x)`` read by
    `read_rows`, in chunks of `chunk` pixels (`block_plan`); `weights` as normalised by
    `integrate`. Every pixel's result depends on its own samples only, so any split of the
    rows into blocks gives the same numbers."""
    n_frames, rows, width = stack.shape
    stack *= normalization.gain.astype(np.float32)[:, None, None]
    stack += normalization.offset.astype(np.float32)[:, None, None]
    samples = stack.reshape(n_frames, -1)
    if plan is None:
        plan = rejection_plan(config.rejection)
    image = np.empty(rows * width, dtype=np.float32)
    low_count = np.empty(rows * width, dtype=np.uint16)
    high_count = np.empty(rows * width, dtype=np.uint16)
    frame_low = np.zeros(n_frames, dtype=np.int64)
    frame_high = np.zeros(n_frames, dtype=np.int64)
    for first in range(0, samples.shape[1], chunk):
        block = _combine_block(samples[:, first : first + chunk], plan, config.combine, weights)
        where = slice(first, first + len(block.image))
        image[where] = block.image
        low_count[where] = block.low_count
        high_count[where] = block.high_count
        frame_low += block.frame_low
        frame_high += block.frame_high
    return StackResult(
        image=image.reshape(rows, width),
        low_count=low_count.reshape(rows, width),
        high_count=high_count.reshape(rows, width),
        frame_low=frame_low,
        frame_high=frame_high,
    )


def from_blocks(
    shape: tuple[int, int],
    blocks: Sequence[tuple[int, StackResult]],
    config: IntegrationConfig,
    normalization: FrameNormalization,
    weights: F64,
) -> IntegrationResult:
    """The integration of `shape` from its row blocks (first row, `combine_rows`' result),
    combined elsewhere, as `integrate` would return it. Raises ValueError when the blocks do
    not cover every row once."""
    image = np.empty(shape, dtype=np.float32)
    low_count = np.empty(shape, dtype=np.uint16)
    high_count = np.empty(shape, dtype=np.uint16)
    covered = np.zeros(shape[0], dtype=np.int64)
    for start, block in blocks:
        stop = start + block.image.shape[0]
        image[start:stop] = block.image
        low_count[start:stop] = block.low_count
        high_count[start:stop] = block.high_count
        covered[start:stop] += 1
    if not np.all(covered == 1):
        raise ValueError("the row blocks do not cover every row exactly once")
    return IntegrationResult(
        image=image,
        low_count=low_count,
        high_count=high_count,
        frame_low=np.sum([b.frame_low for _, b in blocks], axis=0, dtype=np.int64),
        frame_high=np.sum([b.frame_high for _, b in blocks], axis=0, dtype=np.int64),
        normalization=normalization,
        weights=weights,
        history=_history(config, normalization, weights),
    )


def frame_weights(weights: npt.ArrayLike | None, n_frames: int) -> F64:
    """`weights` (N,) normalised to sum 1 (None: equal); ValueError for a wrong length,
    a negative or non-finite weight, or all zero."""
    return _weights(weights, n_frames)


def _history(
    config: IntegrationConfig, normalization: FrameNormalization, weights: F64
) -> tuple[str, ...]:
    return (
        f"Nightowl integrate: {len(weights)} frames, combine {config.combine.value}",
        f"normalization {normalization.method.value} to frame {normalization.reference_index}",
        describe(config.rejection),
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


def _combine_block(
    stack: F32, plan: Kernel | RangeClip, combine: Combine, weights: F64
) -> StackResult:
    """Reject and combine a float32 ``(N, P)`` block; NaN samples are missing."""
    if isinstance(plan, Kernel):
        return StackResult(*plan.clip_and_combine(stack, weights, combine is Combine.MEDIAN))
    ss = SortedStack.build(stack)
    lo, hi = kept_ranges(ss, plan)
    return _combine_kept(stack, ss, lo, hi, combine, weights)


def _combine_kept(
    stack: F32, ss: SortedStack, lo: I64, hi: I64, combine: Combine, weights: F64
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


__all__ = [
    "Combine",
    "IntegrationConfig",
    "IntegrationResult",
    "Rejection",
    "StackResult",
    "block_plan",
    "combine_rows",
    "combine_stack",
    "frame_weights",
    "from_blocks",
    "integrate",
    "read_rows",
]
