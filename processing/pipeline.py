"""A processing job: frames in, calibrated, registered and integrated masters out.

Each group of lights (`processing.grouping`) goes through the stages in order; each stage is
a function of its family's module over typed inputs, returning a dataclass:

1. masters (`processing.stack_masters`): bias, dark, dark-flat and flat combined with
   rejection, or a ready-made master reused; each built once per job;
2. calibrate (`processing.stack_calibrate`): (L - D) / F_norm, cosmetic correction, debayer
   for colour sensors; stars detected and per-frame metrics;
3. judge (`processing.stack_judge`): copies integrated once, weights, outliers rejected with
   their reason (`processing.subframes.SubframeRules`), the reference chosen;
4. register (`processing.stack_register`): star patterns matched to the reference,
   Lanczos resampling onto its grid;
5. integrate (`processing.stack_integrate`): normalised (locally too, if asked), weighted,
   winsorized sigma clipping by default, in row blocks, auto-cropped to the area every frame
   covers; then drizzle onto a finer grid, if asked (`processing.stack_drizzle`);
6. write (`processing.stack_outputs`, every file of the job and its provenance):
   ``OUT/masters/``, ``OUT/<target>_<filter>.fits`` (float32, HISTORY: every input with
   its SHA-256, every step with its parameters), ``.xisf``, ``.jpg`` and the rejection maps.

A group that integrates fewer than half of its lights carries a warning in its result and
in the summary: most of the night was lost, and a person should look before trusting it.

This module is the runner: it holds what belongs to the job, not to a stage (the executor,
the work folder, progress and timings, the masters built so far). The per-frame stages
(calibrate with its measurements, register with its resampling) are maps over an executor
(`processing.cluster`): a pool of worker processes (forked on Linux), one per
`PipelineConfig.threads` (with 1, they run in this process): sep holds the GIL, so threads
would not fill the cores. Integration is a reduction over row blocks on the integration's
own threads, in this process. With `PipelineConfig.scheduler`, both run on the workers of
that Dask cluster instead: the per-frame steps as one task per frame, the integration as one
task per row block; the masters, the judging and the writing of the results stay in this
process. The results are the same, bit for bit, wherever the work runs. Intermediate frames
and the masters the workers read live as ``.npy`` files in a work folder under OUT that is
removed afterwards, so memory stays bounded by the integration budget plus a few frames per
worker process; on a cluster, OUT and the frames must be at the same paths on every worker.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from processing.calibrate import CalibrationConfig, CosmeticConfig
from processing.cluster import (
    DaskExecutor,
    Executor,
    InProcess,
    LocalPool,
    check_scheduler_address,
    exit_with_parent,
)
from processing.debayer import Demosaic
from processing.drizzle import DrizzleConfig
from processing.grouping import FrameInfo, GroupingConfig, LightGroup, frame_info
from processing.integrate import IntegrationConfig
from processing.io import read_fits_header
from processing.local_norm import LocalNormConfig
from processing.masters import MasterConfig
from processing.register import Interpolation, RegistrationConfig
from processing.stack_calibrate import (
    CalibrateStage,
    MasterFiles,
    calibrate_light,
    calibration_tasks,
    gather_calibrated,
)
from processing.stack_drizzle import drizzle_registered
from processing.stack_integrate import IntegrateStage, integrate_registered
from processing.stack_judge import FrameOutcome, JudgeStage, judge_lights
from processing.stack_masters import (
    BuiltMaster,
    GroupMasters,
    build_master,
    group_masters,
    master_key,
)
from processing.stack_outputs import StackOutputs
from processing.stack_register import (
    RegisterStage,
    gather_registered,
    register_light,
    registration_tasks,
)
from processing.stack_results import GroupResult, PipelineResult, group_warnings, summary
from processing.stacking import PipelineError
from processing.stars import StarConfig
from processing.subframes import SubframeRules, Weighting

log = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fts")
# Share of a group's work per stage, for one progress fraction over the whole job.
_STAGE_SHARE = {"masters": 0.15, "calibrate": 0.4, "register": 0.3, "integrate": 0.15}

_T = TypeVar("_T")
_R = TypeVar("_R")

ProgressCallback = Callable[[str, float], None]
"""Called with the stage's name and the job's overall fraction done, 0..1."""


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
    - pool_min_megapixels: a job with fewer light megapixels (lights x MP) than this runs
      its per-frame stages in this process whatever `threads` says. On Linux the workers
      are forked and ready at once, so every job uses them (0); where they are spawned,
      two cost ~2 s of imports, more than 8 lights of 1 MP take to calibrate and register.
    - preview_size_px: longer side of the JPEG previews.
    - local_normalization: match each registered light to the reference tile by tile before
      integration (`processing.local_norm`; None: off).
    - drizzle: drizzle the lights onto a finer grid after the 1x integration
      (`processing.drizzle`; None: off, the 1x integration is the result).
    - cache_dir: a `processing.frame_cache` folder: lights calibrated there before (by the
      live stack during the night) are not calibrated again; new ones are kept there.
    - scheduler: "tcp://host:port" of a Dask scheduler whose workers calibrate, register
      and integrate (`processing.cluster`; `threads` and `pool_min_megapixels` then do not
      apply); None: this machine, as `threads` says.
    """

    grouping: GroupingConfig = field(default_factory=GroupingConfig)
    masters: MasterConfig = field(default_factory=MasterConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    cosmetic: CosmeticConfig | None = field(default_factory=CosmeticConfig)
    demosaic: Demosaic = Demosaic.EDGE_AWARE
    stars: StarConfig = field(default_factory=lambda: StarConfig(max_stars=500))
    weighting: Weighting = Weighting.PSF_NOISE
    subframes: SubframeRules = field(default_factory=SubframeRules)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    interpolation: Interpolation = Interpolation.LANCZOS4
    integration: IntegrationConfig = field(default_factory=IntegrationConfig)
    reference: Path | None = None
    crop: bool = True
    saturation_adu: float = 60_000.0
    threads: int = 2
    pool_min_megapixels: float = 0.0
    preview_size_px: int = 1600
    cache_dir: Path | None = None
    local_normalization: LocalNormConfig | None = None
    drizzle: DrizzleConfig | None = None
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if self.threads < 1 or self.preview_size_px < 16:
            raise ValueError("threads must be >= 1 and preview_size_px >= 16")
        if self.scheduler is not None:
            check_scheduler_address(self.scheduler)


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
    # Spawned workers start now, so their imports overlap the masters, which this process
    # builds; forked ones start at the first map, sharing what the masters loaded.
    executor = _executor(config, groups)
    job = _Job(config, work, StackOutputs(out_dir, config.preview_size_px), progress, executor)
    try:
        results = tuple(
            _process_group(job, index, group, len(groups)) for index, group in enumerate(groups)
        )
    finally:
        executor.close()
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
    job.progress("done", 1.0)
    return PipelineResult(
        groups=results,
        masters=dict(job.outputs.masters),
        inputs=inputs,
        timings_s=dict(job.timings),
        executor=executor.name,
    )


def _executor(config: PipelineConfig, groups: Sequence[LightGroup]) -> Executor:
    """Where the per-frame stages run: the Dask cluster if configured, else a local pool
    when the job is large enough to repay its start, else this process. Raises
    ClusterError (a PipelineError) when the cluster cannot be reached."""
    if config.scheduler is not None:
        return DaskExecutor(config.scheduler)
    if config.threads > 1 and _light_megapixels(groups) >= config.pool_min_megapixels:
        return LocalPool(config.threads)
    return InProcess()


def _light_megapixels(groups: Sequence[LightGroup]) -> float:
    """Pixels of every light of the job, in millions (lights x megapixels)."""
    return sum(f.shape[0] * f.shape[1] for g in groups for f in g.lights) / 1e6


class _Job:
    """What belongs to the job rather than to a stage: the executor, the work folder, the
    outputs, progress and timings, and the masters built so far (shared between groups)."""

    def __init__(
        self,
        config: PipelineConfig,
        work: Path,
        outputs: StackOutputs,
        progress: ProgressCallback | None,
        executor: Executor,
    ) -> None:
        self.config = config
        self.work = work
        self.outputs = outputs
        self.progress: ProgressCallback = progress or (lambda stage, fraction: None)
        self.executor = executor
        self.timings: dict[str, float] = {}
        self.group_index = 0
        self.group_count = 1
        self._masters: dict[tuple[object, ...], BuiltMaster] = {}
        self._master_sets = 0

    def stage_progress(self, stage: str, done: float) -> None:
        """Report `done` (0..1) of `stage` of the current group as the job's fraction."""
        before = 0.0
        for name, share in _STAGE_SHARE.items():
            if name == stage:
                break
            before += share
        within = before + _STAGE_SHARE[stage] * done
        self.progress(stage, min(1.0, (self.group_index + within) / self.group_count))

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        self.stage_progress(stage, 0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.timings[stage] = self.timings.get(stage, 0.0) + elapsed
            log.info("processing: %s took %.2f s", stage, elapsed)

    def map(self, stage: str, function: Callable[[_T], _R], tasks: Sequence[_T]) -> list[_R]:
        """`function` over `tasks` on the executor, results in task order, with `stage`'s
        progress as they come."""
        return self.executor.map(
            function, tasks, lambda done: self.stage_progress(stage, done / len(tasks))
        )

    def master(
        self,
        kind: str,
        frames: Sequence[FrameInfo],
        *,
        bias: BuiltMaster | None = None,
        dark_flat: BuiltMaster | None = None,
    ) -> BuiltMaster | None:
        """The master of `frames` (None without frames), built and written once per job."""
        if not frames:
            return None
        key = master_key(kind, frames)
        if key not in self._masters:
            made = build_master(kind, frames, self.config.masters, bias=bias, dark_flat=dark_flat)
            if made.combined:
                self.outputs.master(made)
            self._masters[key] = made
        return self._masters[key]

    def masters(self, group: LightGroup) -> tuple[GroupMasters, MasterFiles]:
        """The group's masters, and their copies in the work folder for the workers."""
        bias = self.master("BIAS", group.bias)
        dark_flat = self.master("DARKFLAT", group.dark_flats)
        flat = self.master("FLAT", group.flats, bias=bias, dark_flat=dark_flat)
        dark = self.master("DARK", group.darks)
        self.stage_progress("masters", 0.9)
        colour = group.lights[0].bayer_pattern is not None
        made = group_masters(
            bias, dark, dark_flat, flat, cosmetic=self.config.cosmetic, colour=colour
        )
        self._master_sets += 1
        return made, MasterFiles.save(made, self.work, f"group{self._master_sets}")


def _process_group(job: _Job, index: int, group: LightGroup, count: int) -> GroupResult:
    """One group through every stage; raises PipelineError when nothing is left of it."""
    config, work = job.config, job.work
    job.group_index, job.group_count = index, count
    log.info("processing %s: %d lights; %s", group.name, len(group.lights), group.notes)
    with job.timed("masters"):
        masters, files = job.masters(group)
    with job.timed("calibrate"):
        calibration = replace(config.calibration, dark_scaling=group.dark_scaling)
        stage = CalibrateStage(calibration, config.demosaic, config.stars, config.saturation_adu)
        tasks = calibration_tasks(group.lights, files, stage, work, config.cache_dir)
        calibrated = gather_calibrated(job.map("calibrate", calibrate_light, tasks), calibration)
    if not calibrated.lights:
        raise PipelineError(
            f"{group.name}: no light could be calibrated: {list(calibrated.failed)}"
        )
    judged = judge_lights(
        calibrated, JudgeStage(config.weighting, config.subframes, config.reference, config.stars)
    )
    for copy in judged.copies:
        copy.path.unlink()
    grid = judged.grid
    with job.timed("register"):
        registering = RegisterStage(
            config.registration, config.interpolation, keep_calibrated=config.drizzle is not None
        )
        to_register = registration_tasks(judged.kept, grid, registering, work)
        results = job.map("register", register_light, to_register)
        registered = gather_registered(judged.kept, to_register, results, grid, registering)
        job.executor.release()
    outcomes = dict(judged.outcomes)
    for light, reason in registered.failed:
        old = outcomes[light.frame.path]
        outcomes[light.frame.path] = replace(old, accepted=False, reason=reason)
    with job.timed("integrate"):
        share = 0.8 if config.drizzle is None else 0.4
        integrated = integrate_registered(
            registered,
            grid,
            IntegrateStage(config.integration, config.crop, config.local_normalization),
            lambda done: job.stage_progress("integrate", done * share),
            job.executor,
        )
        if config.drizzle is not None:
            integrated = drizzle_registered(
                registered,
                grid,
                integrated,
                config.drizzle,
                lambda done: job.stage_progress("integrate", share + done * share),
            )
        steps = (
            *masters.history,
            *calibrated.history,
            *judged.history,
            *registered.history,
            *integrated.history,
        )
        outputs = job.outputs.group(group, steps, registered, grid.path, integrated)
        for resampled in registered.lights:
            resampled.path.unlink()
            if config.drizzle is not None:
                resampled.light.path.unlink()
    frames = tuple(outcomes[f.path] for f in group.lights)
    warnings = group_warnings(group.name, frames)
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
        crop_yx=integrated.crop_yx,
        notes=group.notes,
        warnings=warnings,
    )


__all__ = [
    "FITS_SUFFIXES",
    "FrameOutcome",
    "GroupResult",
    "PipelineConfig",
    "PipelineError",
    "PipelineResult",
    "ProgressCallback",
    "exit_with_parent",
    "run_pipeline",
    "scan_folder",
    "summary",
]
