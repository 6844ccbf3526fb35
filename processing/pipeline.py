"""A processing job: frames in, calibrated, registered and integrated masters out.

The stages, in order, for each group of lights (`processing.grouping`):

1. masters: bias, dark, dark-flat and flat combined with rejection (or a ready-made master
   reused), written to ``OUT/masters/``;
2. calibrate: (L - D) / F_norm, cosmetic correction of the master dark's hot and cold
   pixels, debayer (BAYERPAT) for colour sensors; stars detected and per-frame metrics;
3. judge: copies of a light (the same file bytes, or the same pixels under another header)
   integrated once; weights (PSF signal by default); outlier frames rejected against the
   group's median and spread (`processing.subframes.SubframeRules`), each with its reason;
   the reference chosen (best weight, or the one asked for);
4. register: star patterns matched to the reference, Lanczos resampling onto its grid;
5. integrate: normalised, weighted, winsorized sigma clipping by default, in row blocks read
   from the registered frames' files, auto-cropped to the area every frame covers;
6. write: ``OUT/<target>_<filter>.fits`` (float32, provenance in HISTORY: every input with
   its SHA-256, every step with its parameters), ``.xisf``, ``.jpg`` (linked auto-STF), and
   the rejection maps ``<name>_rejection_low.fits`` / ``_high.fits`` (rejected samples per
   pixel), each written atomically.

A group that integrates fewer than half of its lights carries a warning in its result and
in the summary: most of the night was lost, and a person should look before trusting it.

The per-frame stages (calibrate, register) are maps over a pool of spawned worker processes,
one per `PipelineConfig.threads` (with 1, they run in this process): sep holds the GIL, so
threads would not fill the cores. Integration is a reduction over row blocks on the
integration's own threads, in this process. Intermediate frames and the masters the workers
read live as ``.npy`` files in a work folder under OUT that is removed afterwards, so memory
stays bounded by the integration budget plus a few frames per worker process.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import numpy.typing as npt

from processing.calibrate import (
    CalibrationConfig,
    CalibrationMasters,
    CosmeticConfig,
    DefectMap,
    calibrate,
    correct_defects,
    find_defects,
)
from processing.debayer import Demosaic, debayer
from processing.export import preview_jpeg
from processing.grouping import FrameInfo, GroupingConfig, LightGroup, frame_info
from processing.integrate import IntegrationConfig, integrate
from processing.io import (
    FitsCard,
    FitsRows,
    NpyRows,
    atomic_path,
    decode_fits,
    encode_fits,
    read_fits_header,
    safe_file_name,
    write_atomic,
    write_xisf,
)
from processing.masters import MasterConfig, master_bias, master_dark, master_dark_flat, master_flat
from processing.register import (
    Interpolation,
    RegistrationConfig,
    RegistrationError,
    Transform,
    crop_box,
    register,
    star_positions,
    valid_area,
    warp,
)
from processing.stars import StarConfig, detect_stars
from processing.subframes import (
    FrameMetrics,
    SubframeRules,
    Weighting,
    choose_reference,
    frame_weights,
    judge_frames,
    measure_metrics,
)

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

FITS_SUFFIXES = (".fits", ".fit", ".fts")
_PARENT_POLL_S = 1.0
# Share of a group's work per stage, for one progress fraction over the whole job.
_STAGE_SHARE = {"masters": 0.15, "calibrate": 0.4, "register": 0.3, "integrate": 0.15}

_Made = tuple[npt.NDArray[np.float32], tuple[str, ...], float]
"""A master built (or reused) in a job: data, HISTORY lines, exposure in seconds."""

_T = TypeVar("_T")
_R = TypeVar("_R")

ProgressCallback = Callable[[str, float], None]
"""Called with the stage's name and the job's overall fraction done, 0..1."""


class PipelineError(ValueError):
    """The job cannot produce anything (no lights, no frame left to integrate): the message
    says what to add or change."""


@dataclass(frozen=True)
class PipelineConfig:
    """Every stage's settings; each field is the config of the module that does the work.

    - cosmetic: None turns cosmetic correction off.
    - demosaic: method for colour (BAYERPAT) frames.
    - stars: detection for registration and metrics; the 500 brightest stars are plenty
      for both and measuring more costs ~0.1 s per frame on a rich field.
    - reference: a light whose pixel grid the results are in (default: best weight).
    - crop: cut the results to the area every frame covers (auto-crop).
    - saturation_adu: calibrated level from which a star counts as saturated.
    - threads: worker processes calibrating and registering frames at once (1: no worker
      process, everything in this one); the integration has its own threads.
    - preview_size_px: longer side of the JPEG previews.
    """

    grouping: GroupingConfig = field(default_factory=GroupingConfig)
    masters: MasterConfig = field(default_factory=MasterConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    cosmetic: CosmeticConfig | None = field(default_factory=CosmeticConfig)
    demosaic: Demosaic = Demosaic.EDGE_AWARE
    stars: StarConfig = field(default_factory=lambda: StarConfig(max_stars=500))
    weighting: Weighting = Weighting.PSF_SIGNAL
    subframes: SubframeRules = field(default_factory=SubframeRules)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    interpolation: Interpolation = Interpolation.LANCZOS4
    integration: IntegrationConfig = field(default_factory=IntegrationConfig)
    reference: Path | None = None
    crop: bool = True
    saturation_adu: float = 60_000.0
    threads: int = 2
    preview_size_px: int = 1600

    def __post_init__(self) -> None:
        if self.threads < 1 or self.preview_size_px < 16:
            raise ValueError("threads must be >= 1 and preview_size_px >= 16")


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
class GroupResult:
    """One integrated group: its outputs (kind -> path) and what went in."""

    name: str
    target: str
    filter_name: str | None
    exposure_s: float
    frames: tuple[FrameOutcome, ...]
    reference: Path
    outputs: dict[str, Path]
    crop_yx: tuple[int, int, int, int] | None
    notes: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def integrated(self) -> int:
        return sum(1 for f in self.frames if f.accepted)

    @property
    def duplicates(self) -> tuple[FrameOutcome, ...]:
        return tuple(f for f in self.frames if f.duplicate_of is not None)


@dataclass(frozen=True)
class PipelineResult:
    groups: tuple[GroupResult, ...]
    masters: dict[str, Path]
    inputs: dict[str, int]
    timings_s: dict[str, float]


def summary(result: PipelineResult) -> dict[str, object]:
    """The result as plain JSON data: inputs per kind, per group its outputs, reference,
    every light's verdict with its reason, the duplicates and warnings, masters written,
    timings per stage; `warnings` at the top gathers every group's."""
    return {
        "inputs": result.inputs,
        "warnings": [warning for group in result.groups for warning in group.warnings],
        "groups": [
            {
                "name": group.name,
                "target": group.target,
                "filter": group.filter_name,
                "exposure_s": group.exposure_s,
                "integrated": group.integrated,
                "reference": str(group.reference),
                "crop_yx": group.crop_yx,
                "outputs": {kind: str(path) for kind, path in group.outputs.items()},
                "rejected": [
                    {"path": str(f.path), "reason": f.reason}
                    for f in group.frames
                    if not f.accepted
                ],
                "duplicates": [
                    {"path": str(f.path), "duplicate_of": str(f.duplicate_of)}
                    for f in group.duplicates
                ],
                "frames": [
                    {
                        "path": str(f.path),
                        "accepted": f.accepted,
                        "reason": f.reason,
                        "duplicate_of": None if f.duplicate_of is None else str(f.duplicate_of),
                        "weight": f.weight,
                        "stars": f.stars,
                        "fwhm_px": f.fwhm_px,
                        "eccentricity": f.eccentricity,
                        "background_adu": f.background_adu,
                        "noise_adu": f.noise_adu,
                        "sha256": f.sha256,
                    }
                    for f in group.frames
                ],
                "notes": list(group.notes),
                "warnings": list(group.warnings),
            }
            for group in result.groups
        ],
        "masters": {name: str(path) for name, path in result.masters.items()},
        "timings_s": {stage: round(seconds, 3) for stage, seconds in result.timings_s.items()},
    }


def scan_folder(folder: Path) -> tuple[list[FrameInfo], list[tuple[Path, str]]]:
    """FITS files under `folder` (subfolders too) as `FrameInfo`s from their headers, and
    the files skipped with the reason (unreadable, not an image, unknown IMAGETYP).
    Raises PipelineError when `folder` is not a directory."""
    if not folder.is_dir():
        raise PipelineError(f"{folder} is not a folder of FITS files")
    frames: list[FrameInfo] = []
    skipped: list[tuple[Path, str]] = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in FITS_SUFFIXES or not path.is_file():
            continue
        try:
            shape, header = read_fits_header(path)
            frames.append(frame_info(path, shape, header))
        except (OSError, ValueError) as e:
            skipped.append((path, str(e)))
    return frames, skipped


def run_pipeline(
    groups: Sequence[LightGroup],
    out_dir: Path,
    config: PipelineConfig = PipelineConfig(),
    progress: ProgressCallback | None = None,
) -> PipelineResult:
    """Process every group into `out_dir` (created). Frames that cannot be used are left
    out with the reason; raises PipelineError when there are no lights or a group has no
    frame left to integrate, OSError when `out_dir` cannot be written."""
    if not any(group.lights for group in groups):
        raise PipelineError("no light frames: nothing to integrate")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / ".work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    pool = (
        ProcessPoolExecutor(
            config.threads,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
        )
        if config.threads > 1
        else None
    )
    run = _Run(out_dir, work, config, progress or (lambda stage, fraction: None), len(groups), pool)
    try:
        results = tuple(run.group(index, group) for index, group in enumerate(groups))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        shutil.rmtree(work, ignore_errors=True)
    inputs: dict[str, int] = {}
    for group in groups:
        for kind, frames in (
            ("LIGHT", group.lights),
            ("BIAS", group.bias),
            ("DARK", group.darks),
            ("FLAT", group.flats),
            ("DARKFLAT", group.dark_flats),
        ):
            inputs[kind] = inputs.get(kind, 0) + len({f.path for f in frames})
    run.report("done", 1.0)
    return PipelineResult(
        groups=results,
        masters=dict(run.master_paths),
        inputs=inputs,
        timings_s=dict(run.timings),
    )


@dataclass(frozen=True, eq=False)
class _Prepared:
    """A calibrated light on disk: planes ``(c, y, x)`` float32 (c = 1 or 3); `sha256`
    of the file, `pixels_sha256` of its decoded pixels and shape (a copy under another
    header has other bytes and the same pixels)."""

    index: int
    frame: FrameInfo
    path: Path
    sha256: str
    pixels_sha256: str
    stars_yx: F64
    metrics: FrameMetrics


@dataclass(frozen=True)
class _MasterFiles:
    """The masters and defect masks of a group as ``.npy`` files in the work folder, which
    worker processes map instead of receiving copies."""

    bias: Path | None
    dark: Path | None
    dark_exposure_s: float | None
    flat: Path | None
    hot: Path | None
    cold: Path | None

    def load(self) -> tuple[CalibrationMasters, DefectMap | None]:
        def get(path: Path | None) -> F32 | None:
            return None if path is None else np.load(path, mmap_mode="r")

        masters = CalibrationMasters(
            bias=get(self.bias),
            dark=get(self.dark),
            dark_exposure_s=self.dark_exposure_s,
            flat=get(self.flat),
        )
        defects = None
        if self.hot is not None and self.cold is not None:
            defects = DefectMap(hot=np.load(self.hot), cold=np.load(self.cold))
        return masters, defects


@dataclass(frozen=True)
class _CalibrateTask:
    index: int
    frame: FrameInfo
    masters: _MasterFiles
    calibration: CalibrationConfig
    config: PipelineConfig
    work: Path


def _calibrate_one(task: _CalibrateTask) -> _Prepared | tuple[Path, str]:
    """Calibrate one light, measure its stars, keep it as ``.npy``; or say why not."""
    frame, config = task.frame, task.config
    try:
        planes, sha = _read(frame.path)
        if planes.shape[1:] != frame.shape:
            raise ValueError(f"image is {planes.shape[1:]}, its header says {frame.shape}")
        pixels = hashlib.sha256(str(planes.shape).encode())
        pixels.update(np.ascontiguousarray(planes).data)
        masters, defects = task.masters.load()
        image = calibrate(planes[0], masters, exposure_s=frame.exposure_s, config=task.calibration)
        if defects is not None:
            image = correct_defects(image, defects)
        if frame.bayer_pattern is not None:
            rgb = debayer(image, frame.bayer_pattern, config.demosaic)
            cube = np.ascontiguousarray(np.moveaxis(rgb, -1, 0))
            luminance = cube.mean(axis=0, dtype=np.float32)
        else:
            cube = image[None]
            luminance = image
        stars = detect_stars(luminance, config.stars)
        metrics = measure_metrics(luminance, stars, saturation_adu=config.saturation_adu)
    except (OSError, ValueError) as e:
        return frame.path, f"cannot calibrate: {e}"
    path = task.work / f"calibrated_{task.index:05d}.npy"
    np.save(path, cube)
    return _Prepared(
        task.index, frame, path, sha, pixels.hexdigest(), star_positions(stars), metrics
    )


@dataclass(frozen=True)
class _RegisterTask:
    source: Path
    target: Path
    stars_yx: F64 | None
    """None: the frame is the reference itself."""
    reference_yx: F64
    shape: tuple[int, int]
    config: PipelineConfig


def _register_one(task: _RegisterTask) -> Transform | str:
    """Register one calibrated light and resample it onto the grid (as ``.npy``); its
    transform, or why it could not be registered."""
    try:
        transform = (
            Transform.identity()
            if task.stars_yx is None
            else register(task.stars_yx, task.reference_yx, task.config.registration).transform
        )
    except RegistrationError as e:
        return f"not registered: {e}"
    cube = np.load(task.source, mmap_mode="r")
    out = np.empty((cube.shape[0], *task.shape), dtype=np.float32)
    for c in range(cube.shape[0]):
        out[c] = warp(cube[c], transform, task.shape, task.config.interpolation).image
    np.save(task.target, out)
    del cube
    task.source.unlink()
    return transform


def _start_worker() -> None:
    """A worker process: one OpenCV thread, as the processes already fill the cores; and an
    end when its parent is gone (killed with the daemon), instead of an orphan waiting for
    work forever."""
    cv2.setNumThreads(1)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent watch", daemon=True).start()


@dataclass(frozen=True, eq=False)
class _Grid:
    """The reference: whose pixel grid the results are in, and its stars. `light` is the
    group's own light when the reference is one of them."""

    path: Path
    shape: tuple[int, int]
    stars_yx: F64
    light: _Prepared | None


@dataclass(frozen=True, eq=False)
class _Masters:
    calibration: CalibrationMasters
    defects: DefectMap | None
    history: tuple[str, ...]
    files: _MasterFiles


class _Run:
    """One job's state: timings, progress, masters shared between groups."""

    def __init__(
        self,
        out_dir: Path,
        work: Path,
        config: PipelineConfig,
        progress: ProgressCallback,
        group_count: int,
        pool: ProcessPoolExecutor | None,
    ) -> None:
        self.out_dir = out_dir
        self.work = work
        self.config = config
        self.progress = progress
        self.group_count = group_count
        self.timings: dict[str, float] = {}
        self.master_paths: dict[str, Path] = {}
        self._masters: dict[tuple[object, ...], _Made] = {}
        self._group = 0
        self._group_files = 0
        self.pool = pool

    def report(self, stage: str, fraction: float) -> None:
        self.progress(stage, fraction)

    def _stage_progress(self, stage: str, done: float) -> None:
        before = 0.0
        for name, share in _STAGE_SHARE.items():
            if name == stage:
                break
            before += share
        within = before + _STAGE_SHARE[stage] * done
        self.report(stage, min(1.0, (self._group + within) / self.group_count))

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        self._stage_progress(stage, 0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.timings[stage] = self.timings.get(stage, 0.0) + elapsed
            log.info("processing: %s took %.2f s", stage, elapsed)

    def group(self, index: int, group: LightGroup) -> GroupResult:
        self._group = index
        log.info("processing %s: %d lights; %s", group.name, len(group.lights), group.notes)
        with self._timed("masters"):
            masters = self._build_masters(group)
        with self._timed("calibrate"):
            prepared, failed = self._calibrate_all(group, masters)
        outcomes = {p: FrameOutcome(p, False, reason) for p, reason in failed}
        if not prepared:
            raise PipelineError(f"{group.name}: no light could be calibrated: {failed}")
        prepared, copies = _without_duplicates(prepared)
        for copy, original in copies:
            copy.path.unlink()
            log.warning("processing: %s is a copy of %s", copy.frame.path, original.frame.path)
            outcomes[copy.frame.path] = replace(
                _outcome(copy, False, f"duplicate of {original.frame.path.name}", None),
                duplicate_of=original.frame.path,
            )
        metrics = [p.metrics for p in prepared]
        weights = frame_weights(metrics, self.config.weighting)
        verdicts = judge_frames(metrics, weights, self.config.subframes)
        accepted = [v.accepted for v in verdicts]
        reference_path = self.config.reference
        grid: _Grid
        if reference_path is not None:
            own = next(
                (p for p in prepared if p.frame.path.resolve() == reference_path.resolve()), None
            )
            if own is not None:
                accepted[prepared.index(own)] = True
                grid = _Grid(own.frame.path, own.frame.shape, own.stars_yx, own)
            else:
                grid = self._external_grid(reference_path)
        else:
            if any(accepted):
                best = prepared[choose_reference(weights, accepted)]
            else:
                best = prepared[int(np.argmax(weights))]
                accepted[prepared.index(best)] = True
            grid = _Grid(best.frame.path, best.frame.shape, best.stars_yx, best)
        for p, verdict, weight, ok in zip(prepared, verdicts, weights, accepted, strict=True):
            outcomes[p.frame.path] = _outcome(p, ok, None if ok else verdict.reason, float(weight))
        kept = [(p, float(w)) for p, w, ok in zip(prepared, weights, accepted, strict=True) if ok]
        with self._timed("register"):
            registered, common, failed_reg = self._register_all(kept, grid)
        for p, reason in failed_reg:
            old = outcomes[p.frame.path]
            outcomes[p.frame.path] = replace(old, accepted=False, reason=reason)
        with self._timed("integrate"):
            outputs, crop = self._integrate(group, registered, grid, common, masters)
        frames = tuple(outcomes[f.path] for f in group.lights)
        warnings = _warnings(group.name, frames)
        for warning in warnings:
            log.warning("processing: %s", warning)
        return GroupResult(
            name=group.name,
            target=group.target,
            filter_name=group.filter_name,
            exposure_s=group.exposure_s,
            frames=frames,
            reference=grid.path,
            outputs=outputs,
            crop_yx=crop,
            notes=group.notes,
            warnings=warnings,
        )

    # --- masters ------------------------------------------------------------------------

    def _build_masters(self, group: LightGroup) -> _Masters:
        bias = self._master("BIAS", group.bias)
        dark_flat = self._master("DARKFLAT", group.dark_flats)
        flat = self._master("FLAT", group.flats, bias=bias, dark_flat=dark_flat)
        dark = self._master("DARK", group.darks)
        self._stage_progress("masters", 0.9)
        calibration = CalibrationMasters(
            bias=None if bias is None else bias[0],
            dark=None if dark is None else dark[0],
            dark_exposure_s=None if dark is None else dark[2],
            flat=None if flat is None else flat[0],
        )
        defects = None
        if dark is not None and self.config.cosmetic is not None:
            cosmetic = self.config.cosmetic
            if group.lights[0].bayer_pattern is not None:
                cosmetic = replace(cosmetic, cfa=True)
            defects = find_defects(dark[0], cosmetic)
        history: list[str] = []
        for made in (bias, dark, dark_flat, flat):
            if made is not None:
                history.extend(made[1])
        if defects is not None:
            history.append(
                f"cosmetic correction: {int(defects.hot.sum())} hot, "
                f"{int(defects.cold.sum())} cold pixels from the master dark"
            )
        return _Masters(
            calibration, defects, tuple(history), self._master_files(calibration, defects)
        )

    def _master_files(
        self, calibration: CalibrationMasters, defects: DefectMap | None
    ) -> _MasterFiles:
        self._group_files += 1

        def save(name: str, data: npt.NDArray[np.generic] | None) -> Path | None:
            if data is None:
                return None
            path = self.work / f"group{self._group_files}_{name}.npy"
            np.save(path, data)
            return path

        return _MasterFiles(
            bias=save("bias", calibration.bias),
            dark=save("dark", calibration.dark),
            dark_exposure_s=calibration.dark_exposure_s,
            flat=save("flat", calibration.flat),
            hot=save("hot", None if defects is None else defects.hot),
            cold=save("cold", None if defects is None else defects.cold),
        )

    def _master(
        self,
        kind: str,
        frames: Sequence[FrameInfo],
        *,
        bias: _Made | None = None,
        dark_flat: _Made | None = None,
    ) -> _Made | None:
        """(data, history, exposure_s) of a master, built once per job for its inputs."""
        if not frames:
            return None
        key = (kind, tuple(f.path for f in frames))
        if key in self._masters:
            return self._masters[key]
        exposure = frames[0].exposure_s
        if len(frames) == 1 and frames[0].is_master:
            data = _read(frames[0].path)[0][0]
            if kind == "FLAT":
                # Other tools keep master flats in ADU: normalise to mean 1 here.
                mean = float(np.nanmean(data, dtype=np.float64))
                if not mean > 0:
                    raise PipelineError(f"master flat {frames[0].path} has a mean of {mean}")
                data = (data / np.float32(mean)).astype(np.float32)
            made: _Made = (
                data,
                (f"master {kind.lower()} reused: {frames[0].path.name} ({_sha256(frames[0])})",),
                exposure,
            )
        else:
            sources = [FitsRows(f.path) for f in frames]
            master_config = self.config.masters
            try:
                if kind == "FLAT":
                    master = master_flat(
                        sources,
                        bias=None if bias is None else bias[0],
                        dark_flat=None if dark_flat is None else dark_flat[0],
                        config=master_config,
                    )
                else:
                    build = {
                        "BIAS": master_bias,
                        "DARK": master_dark,
                        "DARKFLAT": master_dark_flat,
                    }
                    master = build[kind](sources, master_config)
            finally:
                for source in sources:
                    source.close()
            inputs = tuple(line for f in frames for line in _input_lines(f.path, _sha256(f)))
            made = (master.data, (*master.history, *inputs), exposure)
            name = _master_name(kind, frames[0])
            cards: list[FitsCard] = [
                ("IMAGETYP", f"MASTER {kind}", "master calibration frame"),
                ("NOWLMSTR", True, "Nightowl master"),
                ("NCOMBINE", len(frames), "frames combined"),
                ("EXPTIME", exposure, "[s] exposure of the combined frames"),
                ("FILTER", frames[0].filter_name, "filter"),
                ("XBINNING", frames[0].binning, "binning"),
                ("YBINNING", frames[0].binning, "binning"),
                ("GAIN", frames[0].gain, "camera gain"),
                ("CCD-TEMP", frames[0].temperature_c, "[C] sensor temperature"),
            ]
            path = self.out_dir / "masters" / f"{name}.fits"
            path.parent.mkdir(exist_ok=True)
            write_atomic(path, encode_fits(master.data, cards, made[1]))
            self.master_paths[name] = path
        self._masters[key] = made
        return made

    # --- calibration ----------------------------------------------------------------------

    def _calibrate_all(
        self, group: LightGroup, masters: _Masters
    ) -> tuple[list[_Prepared], list[tuple[Path, str]]]:
        calibration = replace(self.config.calibration, dark_scaling=group.dark_scaling)
        tasks = [
            _CalibrateTask(index, frame, masters.files, calibration, self.config, self.work)
            for index, frame in enumerate(group.lights)
        ]
        prepared: list[_Prepared] = []
        failed: list[tuple[Path, str]] = []
        for done, result in enumerate(self._map(_calibrate_one, tasks), start=1):
            if isinstance(result, _Prepared):
                prepared.append(result)
            else:
                log.warning("processing: %s left out: %s", *result)
                failed.append(result)
            self._stage_progress("calibrate", done / len(tasks))
        return prepared, failed

    def _map(self, function: Callable[[_T], _R], tasks: Sequence[_T]) -> Iterator[_R]:
        """`function` over `tasks` on the worker processes (in order), or here with one."""
        if self.pool is None:
            return map(function, tasks)
        return self.pool.map(function, tasks)

    # --- registration ---------------------------------------------------------------------

    def _external_grid(self, path: Path) -> _Grid:
        """A reference from outside the group (another filter's light, an earlier result):
        its stars and shape are the grid; its pixels are not integrated."""
        try:
            planes, _ = _read(path)
        except (OSError, ValueError) as e:
            raise PipelineError(f"--reference {path}: {e}") from e
        stars = detect_stars(planes[0], self.config.stars)
        shape = (planes.shape[1], planes.shape[2])
        return _Grid(path, shape, star_positions(stars), None)

    def _register_all(
        self, kept: list[tuple[_Prepared, float]], grid: _Grid
    ) -> tuple[
        list[tuple[_Prepared, float, Path]], npt.NDArray[np.bool_], list[tuple[_Prepared, str]]
    ]:
        common = np.ones(grid.shape, dtype=bool)
        tasks = [
            _RegisterTask(
                prepared.path,
                self.work / f"registered_{prepared.index:05d}.npy",
                None if prepared is grid.light else prepared.stars_yx,
                grid.stars_yx,
                grid.shape,
                self.config,
            )
            for prepared, _ in kept
        ]
        registered: list[tuple[_Prepared, float, Path]] = []
        failed: list[tuple[_Prepared, str]] = []
        results = self._map(_register_one, tasks)
        for done, ((prepared, weight), task, result) in enumerate(
            zip(kept, tasks, results, strict=True), start=1
        ):
            if isinstance(result, str):
                failed.append((prepared, result))
            else:
                source_shape = (prepared.frame.shape[0], prepared.frame.shape[1])
                valid = valid_area(source_shape, result, grid.shape, self.config.interpolation)
                np.logical_and(common, valid, out=common)
                registered.append((prepared, weight, task.target))
            self._stage_progress("register", done / len(kept))
        if not registered:
            raise PipelineError("no light could be registered to the reference")
        return registered, common, failed

    # --- integration and output -------------------------------------------------------------

    def _integrate(
        self,
        group: LightGroup,
        registered: list[tuple[_Prepared, float, Path]],
        grid: _Grid,
        common: npt.NDArray[np.bool_],
        masters: _Masters,
    ) -> tuple[dict[str, Path], tuple[int, int, int, int] | None]:
        planes = int(np.load(registered[0][2], mmap_mode="r").shape[0])
        weights = np.array([w for _, w, _ in registered], dtype=np.float64)
        # Normalised to the reference light, or to the best-weighted one on a foreign grid.
        reference_index = next(
            (i for i, (p, _, _) in enumerate(registered) if p is grid.light),
            int(np.argmax(weights)),
        )
        integration = replace(self.config.integration, reference_index=reference_index)
        channels = []
        for c in range(planes):
            sources = [NpyRows(path, c) for _, _, path in registered]
            try:
                channels.append(integrate(sources, integration, weights=weights))
            finally:
                for source in sources:
                    source.close()
            self._stage_progress("integrate", (c + 1) / planes * 0.8)
        rows, cols = (slice(None), slice(None))
        crop: tuple[int, int, int, int] | None = None
        if self.config.crop:
            rows, cols = crop_box(common)
            crop = (rows.start, rows.stop, cols.start, cols.stop)
        image = np.stack([r.image[rows, cols] for r in channels])
        low = np.stack([r.low_count[rows, cols] for r in channels])
        high = np.stack([r.high_count[rows, cols] for r in channels])
        history = [
            "Nightowl processing",
            *masters.history,
            f"calibration: (L - D) / F_norm, dark scaling {group.dark_scaling}",
            f"weights: {self.config.weighting.value}; reference {grid.path.name}",
            f"registration: {self.config.registration.motion.value}, "
            f"{self.config.interpolation.value} resampling",
            *channels[0].history,
            f"crop: rows {rows.start}:{rows.stop}, columns {cols.start}:{cols.stop}"
            if crop
            else "no crop",
            *(
                line
                for p, w, _ in registered
                for line in _input_lines(p.frame.path, p.sha256, f"weight {w:.4f}")
            ),
        ]
        cards: list[FitsCard] = [
            ("IMAGETYP", "MASTER LIGHT", "integrated lights"),
            ("OBJECT", group.target, "target"),
            ("FILTER", group.filter_name, "filter"),
            ("EXPTIME", group.exposure_s, "[s] exposure of one light"),
            ("TOTEXP", group.exposure_s * len(registered), "[s] total exposure integrated"),
            ("NCOMBINE", len(registered), "lights integrated"),
            ("XBINNING", group.binning, "binning"),
            ("YBINNING", group.binning, "binning"),
            ("GAIN", group.gain, "camera gain"),
            ("SWCREATE", "Nightowl", "software that made the file"),
            *_optics_cards(grid.path),
        ]
        name = safe_file_name(group.name)
        outputs = {
            "fits": self.out_dir / f"{name}.fits",
            "xisf": self.out_dir / f"{name}.xisf",
            "jpeg": self.out_dir / f"{name}.jpg",
            "rejection_low": self.out_dir / f"{name}_rejection_low.fits",
            "rejection_high": self.out_dir / f"{name}_rejection_high.fits",
        }
        planar = image[0] if len(image) == 1 else image
        write_atomic(outputs["fits"], encode_fits(planar, cards, history))
        write_atomic(outputs["rejection_low"], encode_fits(_planar(low), cards, ["low rejection"]))
        write_atomic(
            outputs["rejection_high"], encode_fits(_planar(high), cards, ["high rejection"])
        )
        with atomic_path(outputs["xisf"]) as temp:
            write_xisf(temp, planar, cards, history)
        preview = np.nan_to_num(np.moveaxis(image, 0, -1) if len(image) == 3 else image[0])
        preview = preview - np.float32(min(0.0, float(preview.min())))
        scale = np.float32(max(float(preview.max()), 1e-6))
        write_atomic(outputs["jpeg"], preview_jpeg(preview / scale, self.config.preview_size_px))
        for _, _, path in registered:
            path.unlink()
        return outputs, crop


def _without_duplicates(
    prepared: Sequence[_Prepared],
) -> tuple[list[_Prepared], list[tuple[_Prepared, _Prepared]]]:
    """The lights with each file or pixel content once (the first, in the group's order),
    and the later copies paired with the light they copy. Integrating a copy would count
    the same noise twice and claim an exposure that was never taken."""
    first: dict[str, _Prepared] = {}
    unique: list[_Prepared] = []
    copies: list[tuple[_Prepared, _Prepared]] = []
    for p in prepared:
        original = first.get(p.sha256) or first.get(p.pixels_sha256)
        if original is not None:
            copies.append((p, original))
            continue
        first[p.sha256] = first[p.pixels_sha256] = p
        unique.append(p)
    return unique, copies


def _outcome(
    p: _Prepared, accepted: bool, reason: str | None, weight: float | None
) -> FrameOutcome:
    """A light's outcome with its figures."""
    q = p.metrics.quality
    return FrameOutcome(
        p.frame.path,
        accepted,
        reason,
        weight,
        q.star_count,
        q.fwhm_px,
        p.metrics.noise_adu,
        p.sha256,
        q.eccentricity,
        q.background_adu,
    )


def _warnings(name: str, frames: Sequence[FrameOutcome]) -> tuple[str, ...]:
    """A warning when fewer than half of the group's lights were integrated, with how many
    were rejected (outliers, unreadable, not registered) and how many were copies."""
    kept = sum(1 for f in frames if f.accepted)
    if 2 * kept >= len(frames):
        return ()
    duplicates = sum(1 for f in frames if f.duplicate_of is not None)
    rejected = len(frames) - kept - duplicates
    parts = [f"{rejected} rejected"] if rejected else []
    if duplicates:
        parts.append(f"{duplicates} duplicates")
    return (
        f"{name}: only {kept} of {len(frames)} lights integrated ({', '.join(parts)}); "
        "see each light's reason",
    )


_OPTICS_KEYWORDS = (
    "FOCALLEN",
    "XPIXSZ",
    "YPIXSZ",
    "RA",
    "DEC",
    "OBJCTRA",
    "OBJCTDEC",
    "INSTRUME",
    "TELESCOP",
    "SITELAT",
    "SITELONG",
)


def _optics_cards(reference: Path) -> list[FitsCard]:
    """The reference light's optics and pointing (the master is on its pixel grid): what
    plate solving the master needs for its scale and a hint, and what a reader expects."""
    try:
        _, header = read_fits_header(reference)
    except (OSError, ValueError):
        return []
    cards: list[FitsCard] = []
    for keyword in _OPTICS_KEYWORDS:
        value = header.get(keyword)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            cards.append((keyword, value, "of the reference light"))
    return cards


def _input_lines(path: Path, sha256: str, note: str = "") -> tuple[str, str]:
    """Two HISTORY lines naming an input and its checksum (a card holds 72 characters)."""
    return (f"input {path.name} {note}".rstrip(), f"sha256 {sha256}")


def _planar(stack: npt.NDArray[np.uint16]) -> npt.NDArray[np.uint16]:
    return stack[0] if len(stack) == 1 else stack


def _read(path: Path) -> tuple[F32, str]:
    """The image as float32 planes ``(1, y, x)`` and the file's SHA-256."""
    buffer = path.read_bytes()
    data, _ = decode_fits(buffer)
    return data.astype(np.float32)[None], hashlib.sha256(buffer).hexdigest()


def _sha256(frame: FrameInfo) -> str:
    if frame.sha256:
        return frame.sha256
    return hashlib.sha256(frame.path.read_bytes()).hexdigest()


def _master_name(kind: str, frame: FrameInfo) -> str:
    parts = [f"master_{kind.lower()}", f"bin{frame.binning}"]
    if kind in ("DARK", "DARKFLAT"):
        parts.append(f"{frame.exposure_s:g}s")
    if kind == "FLAT":
        parts.append(frame.filter_name or "nofilter")
    if frame.gain is not None:
        parts.append(f"gain{frame.gain:g}")
    if kind == "DARK" and frame.temperature_c is not None:
        parts.append(f"{frame.temperature_c:+.0f}C")
    return safe_file_name("_".join(parts))


__all__ = [
    "FITS_SUFFIXES",
    "FrameOutcome",
    "GroupResult",
    "PipelineConfig",
    "PipelineError",
    "PipelineResult",
    "ProgressCallback",
    "run_pipeline",
    "scan_folder",
    "summary",
]
