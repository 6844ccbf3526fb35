"""Normalisation: match every frame's level (and optionally scale) to a reference frame.

Statistics are of the background, measured on the same pixels in every frame: a regular
subsample restricted to where all frames are finite, clipped at 3 sigma. Levels are matched
by the median of each frame's pixel-by-pixel difference to the reference, in which stars,
nebula and gradient cancel. Estimating (`estimate_normalization`) is separate from applying
(`processing.integrate`, one gain and offset per frame).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# MAD x 1.4826 estimates the standard deviation of Gaussian noise.
MAD_TO_SIGMA = 1.4826
# Robust location/scale use at most this many pixels of a frame (a regular subsample), which
# pins a level difference to ~0.007 sigma and the MAD to ~0.4 %, and reads only every k-th
# row of a file. The background is what is left after clipping at 3 sigma, at most 5 times
# (it converges in 2-3), keeping at least a thousand samples.
_STATISTICS_SAMPLES = 1 << 16
_CLIP_SIGMAS = 3.0
_CLIP_ITERATIONS = 5
_MIN_CLIPPED_SAMPLES = 1000


class FrameSource(Protocol):
    """A 2-D frame that can be sliced: a numpy array, an np.memmap, or an astropy FITS
    `hdu.section` (which reads the requested rows from the file, so the frames' pages do
    not stay resident as a memory map's do)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any, /) -> Any: ...


class Normalization(enum.StrEnum):
    """How each frame is matched to the reference before rejection and combination.

    With location m (median) and scale s (1.4826 MAD) of frame i and the reference r:
    - none: x (bias and darks: their level is the signal)
    - additive (default): x - m_i + m_r (lights: the sky level changes through the night)
    - multiplicative: x m_r / m_i (flats: the panel or sky brightness changes, not an offset)
    - additive_scaling: (x - m_i) s_r / s_i + m_r (PixInsight's and Siril's default). The MAD
      of a sky-limited light measures its noise, not its signal: it grows with a brighter,
      hazier sky while the stars fade, and a satellite trail or resampling (which smooths
      each frame's noise differently) moves it by 2-7 % (measured on synthetic sessions),
      scaling every star and nebula by as much. Use it when the frames' dispersion is
      signal-dominated; let weights handle transparency otherwise.
    """

    NONE = "none"
    ADDITIVE = "additive"
    MULTIPLICATIVE = "multiplicative"
    ADDITIVE_SCALING = "additive_scaling"


@dataclass(frozen=True, eq=False)
class FrameNormalization:
    """Per-frame robust statistics and the affine map x -> gain x + offset that matches them.

    location: median; scale: 1.4826 x MAD (ADU), both of the background: the pixels every
    frame covers, clipped at 3 sigma. Only what the method needs is measured: the scale is
    NaN unless it scales, and without normalisation every location is the reference's.
    """

    method: Normalization
    reference_index: int
    location: F64
    scale: F64
    gain: F64
    offset: F64

    def __len__(self) -> int:
        return len(self.location)


def estimate_normalization(
    frames: Sequence[FrameSource],
    method: Normalization,
    reference_index: int = 0,
    *,
    subtract: FrameSource | None = None,
    threads: int = 1,
) -> FrameNormalization:
    """Robust location and scale of every frame and the map onto `reference_index`'s.

    The statistics of all frames come from the same pixels: a regular subsample restricted
    to where every frame is finite. Registered frames cover different areas (their NaN
    margins), and over a sky gradient or a nebula the median and MAD of different areas
    differ by far more than the frames do. A frame's location is the reference's plus the
    clipped median of their pixel-by-pixel difference, so the scene cancels; for frames not
    registered to each other (calibration frames) this is still an unbiased level
    difference. With `subtract` (a master bias for flats), the statistics are of
    frame - subtract. Without normalisation nothing is read (statistics are NaN). The
    samples are read one frame after another (a FITS source is not safe to read from two
    threads); their statistics, mostly medians that let go of the GIL, on `threads` threads.

    Raises ValueError for an empty list, a reference out of range, no pixel finite in every
    frame, or (for the scaling methods) a frame whose location or scale is not positive.
    """
    if not frames:
        raise ValueError("no frames to normalise")
    if not 0 <= reference_index < len(frames):
        raise ValueError(f"reference_index {reference_index} outside 0..{len(frames) - 1}")
    count = len(frames)
    if method is Normalization.NONE:
        unknown = np.full(count, np.nan)
        return FrameNormalization(
            method, reference_index, unknown, unknown.copy(), np.ones(count), np.zeros(count)
        )
    offset_sample = None if subtract is None else _subsample(subtract)
    common: npt.NDArray[np.bool_] | None = None
    for frame in frames:
        finite = np.isfinite(_subsample(frame))
        common = finite if common is None else common & finite
    assert common is not None
    if offset_sample is not None:
        common &= np.isfinite(offset_sample)
    if not common.any():
        raise ValueError("no pixel is finite in every frame")

    def background(frame: FrameSource) -> F32:
        sample = _subsample(frame)
        if offset_sample is not None:
            sample -= offset_sample
        return sample[common]

    samples = [background(frame) for frame in frames]
    reference = samples[reference_index]
    reference_location, _ = clipped_location_scale(reference)

    def statistics(sample: F32) -> tuple[float, float]:
        """(location, scale) of one frame; the scale only when the method uses it."""
        scale = math.nan
        if method is Normalization.ADDITIVE_SCALING:
            _, scale = clipped_location_scale(sample)
        # The level difference to the reference is measured pixel by pixel, where stars,
        # nebula and gradient cancel and only noise and the two frames' defects are left.
        difference, _ = clipped_location_scale(sample - reference)
        return reference_location + difference, scale

    if threads > 1 and count > 1:
        with ThreadPoolExecutor(min(threads, count), thread_name_prefix="normalise") as pool:
            measured = list(pool.map(statistics, samples))
    else:
        measured = [statistics(sample) for sample in samples]
    location = np.array([m[0] for m in measured], dtype=np.float64)
    scale = np.array([m[1] for m in measured], dtype=np.float64)
    m_ref, s_ref = location[reference_index], scale[reference_index]
    if method is Normalization.ADDITIVE:
        gain, offset = np.ones(count), m_ref - location
    elif method is Normalization.MULTIPLICATIVE:
        if np.any(location <= 0):
            raise ValueError("multiplicative normalisation needs positive frame medians")
        gain, offset = m_ref / location, np.zeros(count)
    else:
        if np.any(scale <= 0):
            raise ValueError("scaling normalisation needs a positive MAD in every frame")
        gain = s_ref / scale
        offset = m_ref - gain * location
    return FrameNormalization(
        method=method,
        reference_index=reference_index,
        location=location,
        scale=scale,
        gain=gain,
        offset=offset,
    )


def clipped_location_scale(sample: F32) -> tuple[float, float]:
    """Median and 1.4826 MAD of the background: iteratively drop samples beyond 3 sigma.

    The plain median of a light moves with what covers a few % of it: a satellite trail
    raised one synthetic frame's median by 0.08 sigma, which additive normalisation then
    took off the whole frame. Clipping (in the spirit of Siril's iterative k-sigma
    estimator) leaves the sky. Gaussian noise loses 0.3 % of its samples to the clip, which
    changes its median by nothing and its MAD by < 0.2 %.
    """
    if sample.size == 0:
        raise ValueError("the frame holds no finite pixel")
    for _ in range(_CLIP_ITERATIONS):
        median = float(np.median(sample))
        sigma = MAD_TO_SIGMA * float(np.median(np.abs(sample - np.float32(median))))
        inside = np.abs(sample - np.float32(median)) <= _CLIP_SIGMAS * sigma
        if inside.all() or inside.sum() < _MIN_CLIPPED_SAMPLES:
            break
        sample = sample[inside]
    median = float(np.median(sample))
    return median, MAD_TO_SIGMA * float(np.median(np.abs(sample - np.float32(median))))


def _subsample(frame: FrameSource) -> F32:
    """A regular grid of at most ~_STATISTICS_SAMPLES pixels, as a float32 copy (never a
    view: callers may subtract in place)."""
    step = max(1, math.ceil(math.sqrt(math.prod(frame.shape) / _STATISTICS_SAMPLES)))
    # Rows are sliced by the source, columns here: an astropy section reads a column-strided
    # slice element by element (seconds per frame), every k-th whole row at disk speed.
    rows = np.asarray(frame[::step], dtype=np.float32)
    return np.array(rows[:, ::step], dtype=np.float32, copy=True).ravel()
