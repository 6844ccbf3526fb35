"""The judge stage of a stacking job: which calibrated lights are integrated, with what
weight, on whose pixel grid.

Copies of a light (the same file bytes, or the same pixels under another header) are
integrated once; weights (`processing.subframes.frame_weights`, PSF signal and noise by default) and
outlier rejection against the group's median and spread (`SubframeRules`) give each light
its verdict and reason; the reference is the best-weighted accepted light, or the one
asked for, which may be a file outside the group (then only its stars and shape are used).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from processing.register import star_positions
from processing.stack_calibrate import Calibrated, CalibratedLight
from processing.stacking import PipelineError, read_planes
from processing.stars import StarConfig, detect_stars
from processing.subframes import (
    SubframeRules,
    Weighting,
    choose_reference,
    frame_weights,
    judge_frames,
)

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FrameOutcome:
    """What became of one light: integrated, or rejected and why; its figures.
    `duplicate_of` names the earlier light it is a copy of (same bytes or same pixels)."""

    path: Path
    accepted: bool
    reason: str | None
    weight: float | None = None
    stars: int | None = None
    fwhm_px: float | None = None
    noise_adu: float | None = None
    sha256: str | None = None
    eccentricity: float | None = None
    background_adu: float | None = None
    duplicate_of: Path | None = None


@dataclass(frozen=True)
class JudgeStage:
    """How lights are weighed and chosen.

    - weighting / subframes: weights and outlier rules (`processing.subframes`).
    - reference: a light whose pixel grid the results are in (None: best weight).
    - stars: detection on a reference from outside the group.
    """

    weighting: Weighting
    subframes: SubframeRules
    reference: Path | None
    stars: StarConfig


@dataclass(frozen=True, eq=False)
class Grid:
    """The reference: whose pixel grid ``(y, x)`` the results are in, and its stars. `light`
    is the group's own light when the reference is one of them."""

    path: Path
    shape: tuple[int, int]
    stars_yx: F64
    light: CalibratedLight | None


@dataclass(frozen=True, eq=False)
class Judged:
    """The judge stage's result: the lights kept with their weights (in the group's order),
    the reference grid, every light's outcome by path, the copies left out (whose
    calibrated files are no longer needed) and the HISTORY line of the step."""

    kept: tuple[tuple[CalibratedLight, float], ...]
    grid: Grid
    outcomes: dict[Path, FrameOutcome]
    copies: tuple[CalibratedLight, ...]
    history: tuple[str, ...]


def judge_lights(calibrated: Calibrated, stage: JudgeStage) -> Judged:
    """Judge the calibrated lights (at least one). Raises PipelineError when the reference
    asked for is outside the group and cannot be read."""
    outcomes = {path: FrameOutcome(path, False, reason) for path, reason in calibrated.failed}
    lights, copies = without_duplicates(calibrated.lights)
    for copy, original in copies:
        log.warning("processing: %s is a copy of %s", copy.frame.path, original.frame.path)
        outcomes[copy.frame.path] = replace(
            outcome(copy, False, f"duplicate of {original.frame.path.name}", None),
            duplicate_of=original.frame.path,
        )
    metrics = [light.metrics for light in lights]
    weights = frame_weights(metrics, stage.weighting)
    verdicts = judge_frames(metrics, weights, stage.subframes)
    accepted = [v.accepted for v in verdicts]
    grid: Grid
    if stage.reference is not None:
        wanted = stage.reference.resolve()
        own = next((p for p in lights if p.frame.path.resolve() == wanted), None)
        if own is not None:
            accepted[lights.index(own)] = True
            grid = Grid(own.frame.path, own.frame.shape, own.stars_yx, own)
        else:
            grid = external_grid(stage.reference, stage.stars)
    else:
        if any(accepted):
            best = lights[choose_reference(weights, accepted)]
        else:
            best = lights[int(np.argmax(weights))]
            accepted[lights.index(best)] = True
        grid = Grid(best.frame.path, best.frame.shape, best.stars_yx, best)
    for p, verdict, weight, ok in zip(lights, verdicts, weights, accepted, strict=True):
        outcomes[p.frame.path] = outcome(p, ok, None if ok else verdict.reason, float(weight))
    kept = tuple((p, float(w)) for p, w, ok in zip(lights, weights, accepted, strict=True) if ok)
    line = f"weights: {stage.weighting.value}; reference {grid.path.name}"
    return Judged(kept, grid, outcomes, tuple(copy for copy, _ in copies), (line,))


def without_duplicates(
    lights: Sequence[CalibratedLight],
) -> tuple[list[CalibratedLight], list[tuple[CalibratedLight, CalibratedLight]]]:
    """The lights with each file or pixel content once (the first, in the group's order),
    and the later copies paired with the light they copy. Integrating a copy would count
    the same noise twice and claim an exposure that was never taken."""
    first: dict[str, CalibratedLight] = {}
    unique: list[CalibratedLight] = []
    copies: list[tuple[CalibratedLight, CalibratedLight]] = []
    for p in lights:
        original = first.get(p.sha256) or first.get(p.pixels_sha256)
        if original is not None:
            copies.append((p, original))
            continue
        first[p.sha256] = first[p.pixels_sha256] = p
        unique.append(p)
    return unique, copies


def external_grid(path: Path, stars: StarConfig) -> Grid:
    """A reference from outside the group (another filter's light, an earlier result): its
    stars and shape are the grid; its pixels are not integrated. Raises PipelineError when
    it cannot be read."""
    try:
        planes, _ = read_planes(path)
    except (OSError, ValueError) as e:
        raise PipelineError(f"--reference {path}: {e}") from e
    found = detect_stars(planes[0], stars)
    return Grid(path, (planes.shape[1], planes.shape[2]), star_positions(found), None)


def outcome(
    light: CalibratedLight, accepted: bool, reason: str | None, weight: float | None
) -> FrameOutcome:
    """A light's outcome with its figures."""
    q = light.metrics.quality
    return FrameOutcome(
        light.frame.path,
        accepted,
        reason,
        weight,
        q.star_count,
        q.fwhm_px,
        light.metrics.noise_adu,
        light.sha256,
        q.eccentricity,
        q.background_adu,
    )
