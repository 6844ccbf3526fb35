"""Live stacking: each light of the night folded into a running stack as it arrives.

The stack keeps, per pixel and channel, the weighted running mean, the sum of weights and
the sum of squared deviations (M2) of the frames folded so far: West's weighted form of
Welford's algorithm, three float32 arrays whatever the number of frames. A new light is
registered to the reference by its star list (`processing.register.register`), resampled
onto the reference grid (`warp`), matched in level to the reference (additive
normalisation, as the morning's integration does by default) and folded in with its frame
weight relative to the reference (`processing.subframes.frame_weights`, PSF signal and
noise by default). Once `LiveConfig.warmup_frames` frames are in, a pixel further than `k_sigma`
sigma from the running mean is not added (a satellite trail, a cosmic ray, a plane); its
sigma is the pixel's own running deviation, but never less than the typical deviation of
this frame from the mean, so that a variance estimated from three frames does not reject
sky noise.

The reference is the first light; while the stack is warming up, a light weighing at least
`swap_factor` times the reference (the first frames taken in twilight or before focus
settled) becomes the reference and the stack starts again from it. Later, the grid stays:
moving it would resample what is folded already. The morning's job makes its own choice.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from processing.frame_cache import metrics_document, metrics_from_document
from processing.normalize import MAD_TO_SIGMA, clipped_location_scale
from processing.register import Interpolation, RegistrationConfig, register, warp
from processing.subframes import FrameMetrics, Weighting, frame_weights

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

_T = TypeVar("_T", bound=np.generic)

_ARRAYS = ("mean", "weight", "m2")
_STATE = "state.json"
# Level and deviation statistics from at most this many pixels of a frame (a regular grid).
_SAMPLES = 1 << 16


@dataclass(frozen=True)
class LiveConfig:
    """How lights are folded.

    - k_sigma: a pixel this many sigmas from the running mean is rejected (3, as live
      stackers and Siril's sigma clipping default).
    - warmup_frames: frames folded before rejection starts (the mean and sigma of fewer
      are no statistics).
    - swap_factor: during the warm-up, a light weighing this many times the reference
      becomes the reference.
    - weighting, registration, interpolation: as the morning's job (`processing.pipeline`).
    """

    k_sigma: float = 3.0
    warmup_frames: int = 3
    swap_factor: float = 2.0
    weighting: Weighting = Weighting.PSF_NOISE
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    interpolation: Interpolation = Interpolation.LANCZOS4

    def __post_init__(self) -> None:
        """Raise ValueError on settings that would reject everything or never swap."""
        if self.k_sigma <= 0 or self.warmup_frames < 2 or self.swap_factor <= 1:
            raise ValueError("need k_sigma > 0, warmup_frames >= 2 and swap_factor > 1")


@dataclass(frozen=True)
class Folded:
    """What became of one light: its weight relative to the reference, the fraction of its
    pixels rejected, and whether it became the new reference (the stack restarted)."""

    weight: float
    rejected_fraction: float
    new_reference: bool


class LiveStack:
    """A running stack on the reference's grid, planes ``(c, y, x)``. Lights are folded
    with `add`; `image` is the mean so far. The stack owns its arrays (callers' arrays are
    never modified)."""

    def __init__(
        self,
        mean: F32,
        weight: F32,
        m2: F32,
        reference_yx: F64,
        reference_metrics: FrameMetrics,
        location: F64,
        *,
        frames: int = 1,
        rejected_px: int = 0,
        considered_px: int = 0,
    ) -> None:
        self.mean, self.weight, self.m2 = mean, weight, m2
        self.reference_yx = reference_yx
        self.reference_metrics = reference_metrics
        self.location = location
        self.frames = frames
        self.rejected_px = rejected_px
        self.considered_px = considered_px

    @classmethod
    def start(cls, cube: F32, stars_yx: F64, metrics: FrameMetrics) -> LiveStack:
        """A stack of one light ``(c, y, x)``: it is the reference."""
        if cube.ndim != 3:
            raise ValueError(f"expected planes (c, y, x), got shape {cube.shape}")
        mean = np.array(cube, dtype=np.float32, copy=True)
        finite = np.isfinite(mean)
        weight = finite.astype(np.float32)
        mean[~finite] = 0.0
        location = np.array(
            [_location(plane, valid) for plane, valid in zip(mean, finite, strict=True)]
        )
        return cls(
            mean, weight, np.zeros_like(mean), np.array(stars_yx, np.float64), metrics, location
        )

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.mean.shape[1]), int(self.mean.shape[2])

    @property
    def rejected_fraction(self) -> float:
        """Pixels rejected of those tested since the warm-up ended."""
        return self.rejected_px / self.considered_px if self.considered_px else 0.0

    def image(self) -> F32:
        """The weighted mean ``(c, y, x)``; NaN where no light covers the grid."""
        return np.where(self.weight > 0, self.mean, np.float32(np.nan)).astype(np.float32)

    def relative_weight(self, metrics: FrameMetrics, weighting: Weighting) -> float:
        """A light's weight relative to the reference's (the pipeline's weights of the two)."""
        pair = frame_weights([self.reference_metrics, metrics], weighting)
        return float(pair[1] / pair[0]) if pair[0] > 0 else float(pair[1])

    def add(
        self, cube: F32, stars_yx: F64, metrics: FrameMetrics, config: LiveConfig = LiveConfig()
    ) -> tuple[LiveStack, Folded]:
        """Fold one calibrated light ``(c, y, x)`` with its stars ``(y, x)`` in. Returns the
        stack (a new one when the light became the reference) and what happened. Raises
        RegistrationError when the light cannot be registered, ValueError when it has no
        usable weight or another number of channels."""
        if cube.ndim != 3 or cube.shape[0] != self.mean.shape[0]:
            raise ValueError(f"expected {self.mean.shape[0]} planes, got shape {cube.shape}")
        weight = self.relative_weight(metrics, config.weighting)
        if not weight > 0:
            raise ValueError("the light has no usable weight (no stars or no noise figure)")
        if self.frames < config.warmup_frames and weight >= config.swap_factor:
            return LiveStack.start(cube, stars_yx, metrics), Folded(1.0, 0.0, True)
        transform = register(stars_yx, self.reference_yx, config.registration).transform
        testing = self.frames >= config.warmup_frames
        rejected = considered = 0
        w = np.float32(weight)
        for c in range(cube.shape[0]):
            warped = warp(cube[c], transform, self.shape, config.interpolation)
            valid = warped.valid
            x = warped.image - np.float32(_location(warped.image, valid) - self.location[c])
            mean, total, m2 = self.mean[c], self.weight[c], self.m2[c]
            delta = np.where(valid, x - mean, np.float32(0.0))
            use = valid.copy()
            if testing:
                covered = valid & (total > 0)
                floor = _spread(delta, covered) ** 2
                sigma2 = np.maximum(m2 / np.maximum(total, np.float32(1e-30)), floor)
                outlier = covered & (delta * delta > np.float32(config.k_sigma**2) * sigma2)
                use &= ~outlier
                rejected += int(outlier.sum())
                considered += int(covered.sum())
            new_total = total + np.where(use, w, np.float32(0.0))
            step = np.where(use, delta * w / np.maximum(new_total, np.float32(1e-30)), 0.0)
            mean += step.astype(np.float32)
            m2 += np.where(use, w * delta * (delta - step), np.float32(0.0)).astype(np.float32)
            total[...] = new_total
        self.frames += 1
        self.rejected_px += rejected
        self.considered_px += considered
        fraction = rejected / considered if considered else 0.0
        return self, Folded(weight, fraction, False)

    def save(self, folder: Path) -> None:
        """Write the stack into `folder` (replaced whole: a crash leaves the old or the new
        state, never a mix). Raises OSError."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        fresh = folder.with_name(f".{folder.name}.new")
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir()
        for name in _ARRAYS:
            np.save(fresh / f"{name}.npy", getattr(self, name))
        document = {
            "frames": self.frames,
            "rejected_px": self.rejected_px,
            "considered_px": self.considered_px,
            "location": self.location.tolist(),
            "reference_yx": self.reference_yx.tolist(),
            "reference_metrics": metrics_document(self.reference_metrics),
        }
        (fresh / _STATE).write_text(json.dumps(document))
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(fresh, folder)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> LiveStack:
        """The stack saved in `folder`. Raises OSError when it is absent or unreadable,
        ValueError when it is damaged."""
        try:
            document = json.loads((folder / _STATE).read_text())
            mean, weight, m2 = (np.load(folder / f"{name}.npy") for name in _ARRAYS)
            return cls(
                mean,
                weight,
                m2,
                np.array(document["reference_yx"], dtype=np.float64).reshape(-1, 2),
                metrics_from_document(document["reference_metrics"]),
                np.array(document["location"], dtype=np.float64),
                frames=int(document["frames"]),
                rejected_px=int(document["rejected_px"]),
                considered_px=int(document["considered_px"]),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"live stack state in {folder} is damaged: {e}") from e


def _grid(plane: npt.NDArray[_T]) -> npt.NDArray[_T]:
    step = max(1, math.ceil(math.sqrt(plane.size / _SAMPLES)))
    return plane[::step, ::step]


def _location(plane: F32, valid: Mask) -> float:
    """The background level of a plane (clipped median of a regular subsample)."""
    sample = _grid(plane)[_grid(valid)]
    return clipped_location_scale(sample.astype(np.float32))[0]


def _spread(delta: F32, covered: Mask) -> np.float32:
    """1.4826 MAD of a frame's deviations from the mean: the typical sky pixel's."""
    sample = _grid(delta)[_grid(covered)]
    if sample.size == 0:
        return np.float32(np.inf)
    median = np.median(sample)
    return np.float32(MAD_TO_SIGMA * np.median(np.abs(sample - median)))
