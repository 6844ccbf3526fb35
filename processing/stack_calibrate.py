"""The calibrate stage of a stacking job: each light calibrated, debayered and measured.

`calibrate_light` runs in a worker process (it is importable, so a spawned process can
unpickle it): it reads one light, applies (L - D) / F_norm and the cosmetic correction of
the master dark's defects (`processing.calibrate`), debayers a colour sensor's frame
(`processing.debayer`), detects stars on the luminance and measures the frame's figures
(`processing.subframes`), and keeps the calibrated planes as a ``.npy`` file. The masters
reach the workers as ``.npy`` files too (`MasterFiles`), which they map instead of
receiving copies.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from processing.calibrate import (
    CalibrationConfig,
    CalibrationMasters,
    DefectMap,
    calibrate,
    correct_defects,
)
from processing.debayer import Demosaic, debayer
from processing.frame_cache import (
    CachedCalibration,
    calibrated_key,
    load_calibrated,
    masters_identity,
    store_calibrated,
)
from processing.grouping import FrameInfo
from processing.register import star_positions
from processing.stack_masters import GroupMasters
from processing.stacking import file_sha256, read_planes
from processing.stars import StarConfig, detect_stars
from processing.subframes import FrameMetrics, measure_metrics

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CalibrateStage:
    """How lights are calibrated and measured.

    - calibration: `processing.calibrate.calibrate`'s options (dark scaling set per group).
    - demosaic: method for colour (BAYERPAT) frames.
    - stars: detection for registration and metrics.
    - saturation_adu: calibrated level from which a star counts as saturated.
    """

    calibration: CalibrationConfig
    demosaic: Demosaic
    stars: StarConfig
    saturation_adu: float


@dataclass(frozen=True, eq=False)
class CalibratedLight:
    """A calibrated light on disk: planes ``(c, y, x)`` float32 (c = 1 or 3) at `path`;
    `sha256` of the light's file, `pixels_sha256` of its decoded pixels and shape (a copy
    under another header has other bytes and the same pixels); its stars ``(y, x)`` and
    figures. Compared by identity."""

    index: int
    frame: FrameInfo
    path: Path
    sha256: str
    pixels_sha256: str
    stars_yx: F64
    metrics: FrameMetrics


@dataclass(frozen=True)
class MasterFiles:
    """The masters and defect masks of a group as ``.npy`` files (None: absent), and their
    `identity` (`processing.frame_cache.masters_identity`)."""

    bias: Path | None
    dark: Path | None
    dark_exposure_s: float | None
    flat: Path | None
    hot: Path | None
    cold: Path | None
    identity: str = ""

    @classmethod
    def save(cls, masters: GroupMasters, folder: Path, prefix: str) -> MasterFiles:
        """Write `masters` as ``<folder>/<prefix>_<name>.npy``; raises OSError."""

        def save(name: str, data: npt.NDArray[np.generic] | None) -> Path | None:
            if data is None:
                return None
            path = folder / f"{prefix}_{name}.npy"
            np.save(path, data)
            return path

        calibration, defects = masters.calibration, masters.defects
        arrays = {
            "bias": calibration.bias,
            "dark": calibration.dark,
            "flat": calibration.flat,
            "hot": None if defects is None else defects.hot,
            "cold": None if defects is None else defects.cold,
        }
        return cls(
            bias=save("bias", calibration.bias),
            dark=save("dark", calibration.dark),
            dark_exposure_s=calibration.dark_exposure_s,
            flat=save("flat", calibration.flat),
            hot=save("hot", None if defects is None else defects.hot),
            cold=save("cold", None if defects is None else defects.cold),
            identity=masters_identity(arrays, f"dark {calibration.dark_exposure_s}"),
        )

    def load(self) -> tuple[CalibrationMasters, DefectMap | None]:
        """The masters (memory-mapped, read-only) and the defect map. A worker calibrates
        many lights with the same masters: with an `identity`, it reads them once."""
        return _loaded_masters(self) if self.identity else _read_masters(self)


def _read_masters(files: MasterFiles) -> tuple[CalibrationMasters, DefectMap | None]:
    def get(path: Path | None) -> F32 | None:
        return None if path is None else np.load(path, mmap_mode="r")

    masters = CalibrationMasters(
        bias=get(files.bias),
        dark=get(files.dark),
        dark_exposure_s=files.dark_exposure_s,
        flat=get(files.flat),
    )
    defects = None
    if files.hot is not None and files.cold is not None:
        defects = DefectMap(hot=np.load(files.hot), cold=np.load(files.cold))
    return masters, defects


# Keyed by the files and their content's identity: a master rewritten at the same path (the
# live stack's, when the library changes) has another identity, so it is read again.
_loaded_masters = functools.lru_cache(maxsize=2)(_read_masters)


@dataclass(frozen=True)
class CalibrateTask:
    """One light to calibrate with `masters`, its planes to be kept at `target`."""

    index: int
    frame: FrameInfo
    masters: MasterFiles
    stage: CalibrateStage
    target: Path
    cache: Path | None = None
    """A `processing.frame_cache` folder to reuse and keep calibrated lights in."""


@dataclass(frozen=True, eq=False)
class Calibrated:
    """The calibrate stage's result: the lights calibrated (in the group's order), those
    left out with the reason, and the HISTORY line of the step."""

    lights: tuple[CalibratedLight, ...]
    failed: tuple[tuple[Path, str], ...]
    history: tuple[str, ...]


def calibration_tasks(
    lights: Sequence[FrameInfo],
    masters: MasterFiles,
    stage: CalibrateStage,
    folder: Path,
    cache: Path | None = None,
) -> list[CalibrateTask]:
    """One task per light, its calibrated planes to be kept in `folder`."""
    return [
        CalibrateTask(index, frame, masters, stage, folder / f"calibrated_{index:05d}.npy", cache)
        for index, frame in enumerate(lights)
    ]


def calibrate_light(task: CalibrateTask) -> CalibratedLight | tuple[Path, str]:
    """Calibrate one light, measure its stars, keep it as ``.npy``; or say why not (the
    light's path and the reason). Raises OSError when the ``.npy`` cannot be written.
    With `task.cache`, a light calibrated before with the same masters and settings is
    taken from there, and a new one kept there."""
    frame, stage = task.frame, task.stage
    key = None
    if task.cache is not None:
        try:
            sha = file_sha256(frame)
        except OSError as e:
            return frame.path, f"cannot calibrate: {e}"
        pattern = None if frame.bayer_pattern is None else frame.bayer_pattern.value
        key = calibrated_key(sha, pattern, task.masters.identity, repr(stage))
        hit = load_calibrated(task.cache, key, task.target)
        if hit is not None:
            return CalibratedLight(
                task.index,
                frame,
                task.target,
                hit.sha256,
                hit.pixels_sha256,
                hit.stars_yx,
                hit.metrics,
            )
    try:
        planes, sha = read_planes(frame.path)
        if planes.shape[1:] != frame.shape:
            raise ValueError(f"image is {planes.shape[1:]}, its header says {frame.shape}")
        pixels = hashlib.sha256(str(planes.shape).encode())
        pixels.update(np.ascontiguousarray(planes).data)
        masters, defects = task.masters.load()
        image = calibrate(planes[0], masters, exposure_s=frame.exposure_s, config=stage.calibration)
        del planes  # the raw frame is hashed and calibrated: its memory back for detection
        if defects is not None:
            image = correct_defects(image, defects)
        if frame.bayer_pattern is not None:
            rgb = debayer(image, frame.bayer_pattern, stage.demosaic)
            cube = np.ascontiguousarray(np.moveaxis(rgb, -1, 0))
            luminance = cube.mean(axis=0, dtype=np.float32)
        else:
            cube = image[None]
            luminance = image
        stars = detect_stars(luminance, stage.stars)
        metrics = measure_metrics(luminance, stars, saturation_adu=stage.saturation_adu)
    except (OSError, ValueError) as e:
        return frame.path, f"cannot calibrate: {e}"
    np.save(task.target, cube)
    light = CalibratedLight(
        task.index, frame, task.target, sha, pixels.hexdigest(), star_positions(stars), metrics
    )
    if task.cache is not None and key is not None:
        entry = CachedCalibration(light.sha256, light.pixels_sha256, light.stars_yx, metrics)
        store_calibrated(task.cache, key, task.target, entry)
    return light


def gather_calibrated(
    results: Sequence[CalibratedLight | tuple[Path, str]], calibration: CalibrationConfig
) -> Calibrated:
    """The results of `calibrate_light` (in task order) as the stage's result."""
    lights: list[CalibratedLight] = []
    failed: list[tuple[Path, str]] = []
    for result in results:
        if isinstance(result, CalibratedLight):
            lights.append(result)
        else:
            log.warning("processing: %s left out: %s", *result)
            failed.append(result)
    line = f"calibration: (L - D) / F_norm, dark scaling {calibration.dark_scaling}"
    return Calibrated(tuple(lights), tuple(failed), (line,))
