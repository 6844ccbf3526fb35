"""The register stage of a stacking job: each kept light matched to the reference's stars
and resampled onto its pixel grid.

`register_light` runs in a worker process (importable, so a spawned process can unpickle
it): the star patterns are matched (`processing.register.register`), every plane is
resampled (`warp`, Lanczos by default) into a ``.npy`` file and the calibrated file is
removed. `gather_registered` then adds up, from the transforms alone, the area every
registered light covers, for the auto-crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from processing.register import (
    Interpolation,
    RegistrationConfig,
    RegistrationError,
    Transform,
    register,
    valid_area,
    warp,
)
from processing.stack_calibrate import CalibratedLight
from processing.stack_judge import Grid
from processing.stacking import PipelineError

F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class RegisterStage:
    """How lights are registered (`processing.register`) and resampled; `keep_calibrated`
    keeps each calibrated file after resampling (drizzle reads it again)."""

    registration: RegistrationConfig
    interpolation: Interpolation
    keep_calibrated: bool = False


@dataclass(frozen=True)
class RegisterTask:
    """One calibrated light at `source`, resampled to `target` on a grid of `shape`."""

    source: Path
    target: Path
    stars_yx: F64 | None
    """None: the light is the reference itself."""
    reference_yx: F64
    shape: tuple[int, int]
    stage: RegisterStage


@dataclass(frozen=True, eq=False)
class RegisteredLight:
    """A light resampled onto the grid: planes ``(c, y, x)`` float32 at `path`; `transform`
    maps the grid's pixels into the light's."""

    light: CalibratedLight
    weight: float
    path: Path
    transform: Transform


@dataclass(frozen=True, eq=False)
class Registered:
    """The register stage's result: the lights on the grid (in the group's order), the area
    ``(y, x)`` every one of them covers, those that could not be registered with the
    reason, and the HISTORY line of the step."""

    lights: tuple[RegisteredLight, ...]
    common: Mask
    failed: tuple[tuple[CalibratedLight, str], ...]
    history: tuple[str, ...]


def registration_tasks(
    kept: Sequence[tuple[CalibratedLight, float]], grid: Grid, stage: RegisterStage, folder: Path
) -> list[RegisterTask]:
    """One task per kept light, its resampled planes to be kept in `folder`."""
    return [
        RegisterTask(
            light.path,
            folder / f"registered_{light.index:05d}.npy",
            None if light is grid.light else light.stars_yx,
            grid.stars_yx,
            grid.shape,
            stage,
        )
        for light, _ in kept
    ]


def register_light(task: RegisterTask) -> Transform | str:
    """Register one calibrated light and resample it onto the grid (as ``.npy``, the
    calibrated file removed unless the stage keeps it); its transform, or why it could not
    be registered. Raises OSError when a file cannot be read or written."""
    try:
        transform = (
            Transform.identity()
            if task.stars_yx is None
            else register(task.stars_yx, task.reference_yx, task.stage.registration).transform
        )
    except RegistrationError as e:
        return f"not registered: {e}"
    cube = np.load(task.source, mmap_mode="r")
    out = np.empty((cube.shape[0], *task.shape), dtype=np.float32)
    for c in range(cube.shape[0]):
        out[c] = warp(cube[c], transform, task.shape, task.stage.interpolation).image
    np.save(task.target, out)
    del cube
    if not task.stage.keep_calibrated:
        task.source.unlink()
    return transform


def gather_registered(
    kept: Sequence[tuple[CalibratedLight, float]],
    tasks: Sequence[RegisterTask],
    results: Sequence[Transform | str],
    grid: Grid,
    stage: RegisterStage,
) -> Registered:
    """The results of `register_light` (in task order) as the stage's result. Raises
    PipelineError when no light could be registered."""
    common = np.ones(grid.shape, dtype=bool)
    lights: list[RegisteredLight] = []
    failed: list[tuple[CalibratedLight, str]] = []
    for (light, weight), task, result in zip(kept, tasks, results, strict=True):
        if isinstance(result, str):
            failed.append((light, result))
            continue
        source_shape = (light.frame.shape[0], light.frame.shape[1])
        np.logical_and(
            common, valid_area(source_shape, result, grid.shape, stage.interpolation), out=common
        )
        lights.append(RegisteredLight(light, weight, task.target, result))
    if not lights:
        raise PipelineError("no light could be registered to the reference")
    line = (
        f"registration: {stage.registration.motion.value}, {stage.interpolation.value} resampling"
    )
    return Registered(tuple(lights), common, tuple(failed), (line,))
