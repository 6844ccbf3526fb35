"""The live stack service: every accepted light of the night folded into a running stack per
(night, target, filter), off the capture path, shown on the dashboard.

Capture only queues the frame's id (`queue_light`, O(1) from its worker thread). One thread
here takes the ids in order and hands each light to one spawned, lower-priority process,
which calibrates it exactly as the morning's job would (`processing.stack_calibrate`, the
master library's matching masters, chosen by the same grouping rules; none matching: the
light is stacked uncalibrated and the stack's status says so), keeps the calibrated light
in the night's cache (``DATA_DIR/live/night_<id>/cache``, which the morning's job reuses),
registers it by the stars capture stored (`frame_stars`) and folds it in
(`processing.live`). The process keeps its stacks in memory and writes each one's state,
status and JPEG preview after every light, so a restart resumes it; lights queued but not
folded when the daemon stopped are queued again at the next start. If the stacking falls
behind, lights wait in the queue (the morning needs every one in the cache) and capture
never waits for it. A light that cannot be stacked is an event, never a crash.

The night's cache holds every calibrated light as float planes (hundreds of MB to GB a
night), so it does not outlive its use: the worker removes it once a job of the closed night
has finished successfully (the picture exists; an open night's stack still writes there),
and caches of nights closed more than ``NIGHTOWL_LIVE_CACHE_DAYS`` ago (a night whose job
never ran or failed) are removed when the service starts and after each light it stacks.
The stacks themselves (state, status, JPEG) stay.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import queue
import re
import shutil
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from daemon.db.models import Frame, FrameStars, ImagingSession, Target
from daemon.events import record_event
from daemon.processing_options import ProcessingOptions, recipe_pipeline_config
from daemon.recipes import default_job_recipe
from daemon.states import SessionState
from daemon.worker import library_masters
from processing.export import preview_jpeg
from processing.grouping import FrameInfo, frame_info, group_frames
from processing.io import atomic_path, read_fits_header
from processing.live import LiveConfig, LiveStack
from processing.pipeline import PipelineConfig, exit_with_parent
from processing.register import RegistrationError
from processing.stack_calibrate import (
    CalibratedLight,
    CalibrateStage,
    CalibrateTask,
    MasterFiles,
    calibrate_light,
)
from processing.stack_masters import build_master, group_masters
from processing.star_lists import StarList
from sequences.frames import FrameType

log = logging.getLogger(__name__)

STATUS = "status.json"
PREVIEW = "preview.jpg"
_STATE = "state"
_PREVIEW_PX = 1200
_FULL_SCALE_ADU = 65535.0
_STOP_TIMEOUT_S = 30.0
_NICE = 10
"""The stacking process yields the cores to capture, guiding and the API."""


def night_folder(live_root: Path, session_id: int) -> Path:
    return live_root / f"night_{session_id}"


def night_cache(live_root: Path, session_id: int) -> Path:
    """The night's calibrated lights, for the morning's job (`PipelineConfig.cache_dir`)."""
    return night_folder(live_root, session_id) / "cache"


def remove_stale_caches(engine: Engine, live_root: Path, days: float, now: datetime) -> list[int]:
    """Remove the caches of nights closed more than `days` before `now` (their job never ran
    or failed: the frames are still there to process cold); returns those nights' ids."""
    caches = {
        int(match[1]): cache
        for cache in live_root.glob("night_*/cache")
        if (match := re.fullmatch(r"night_(\d+)", cache.parent.name))
    }
    if not caches:
        return []
    with Session(engine) as db:
        stale = db.scalars(
            select(ImagingSession.id).where(
                ImagingSession.id.in_(caches),
                ImagingSession.state == SessionState.CLOSED,
                ImagingSession.ended_at < now - timedelta(days=days),
            )
        ).all()
    for session_id in stale:
        shutil.rmtree(caches[session_id], ignore_errors=True)
    return sorted(stale)


def stack_name(target: str, filter_name: str | None) -> str:
    """A stack's folder name: `<target>_<filter>` in letters, digits, '-' and '_'."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", f"{target}_{filter_name or 'nofilter'}").strip("-")


@dataclass(frozen=True)
class LiveJob:
    """One light for the stacking process: its file's facts, its stored stars, the library's
    masters, where its stack lives and how the morning's job would calibrate it."""

    frame_id: int
    session_id: int
    frame: FrameInfo
    stars: bytes | None
    library: tuple[FrameInfo, ...]
    folder: Path
    cache: Path
    pipeline: PipelineConfig
    config: LiveConfig
    status: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Open:
    """A stack the process holds: its masters (files for `calibrate_light`), its stage."""

    stack: LiveStack | None
    masters: MasterFiles
    stage: CalibrateStage
    notes: tuple[str, ...]


_OPEN: dict[Path, _Open] = {}
"""The stacking process's stacks (it runs one light at a time)."""


def _start_process(parent: int) -> None:
    """The stacking process: below the daemon's priority, and gone when the daemon is."""
    os.nice(_NICE)
    exit_with_parent(parent)


def fold_light(job: LiveJob) -> dict[str, Any]:
    """In the stacking process: calibrate, register and fold one light; write the stack's
    state, preview and status. Returns the status. Raises OSError when files cannot be
    written."""
    status = dict(job.status)
    opened = _OPEN.get(job.folder) or _open(job)
    _OPEN[job.folder] = opened
    work = job.folder / "work"
    work.mkdir(parents=True, exist_ok=True)
    task = CalibrateTask(
        0, job.frame, opened.masters, opened.stage, work / f"{job.frame_id}.npy", job.cache
    )
    result = calibrate_light(task)
    try:
        if not isinstance(result, CalibratedLight):
            return _skipped(job, status, result[1])
        if result.pixels_sha256 in status.get("pixels", []):
            # As the morning's job, which integrates the same pixels once.
            return _skipped(job, status, "duplicate of a light stacked already")
        outcome = _fold(opened, job, result)
    finally:
        task.target.unlink(missing_ok=True)
    if isinstance(outcome, str):
        return _skipped(job, status, outcome)
    stack, weight, rejected, new_reference = outcome
    assert opened.stack is not None
    opened.stack.save(job.folder / _STATE)
    image = np.moveaxis(opened.stack.image(), 0, -1)
    scaled = np.clip(np.nan_to_num(image / np.float32(_FULL_SCALE_ADU)), 0.0, 1.0)
    with atomic_path(job.folder / PREVIEW) as temporary:
        temporary.write_bytes(
            preview_jpeg(scaled.squeeze(-1) if scaled.shape[-1] == 1 else scaled, _PREVIEW_PX)
        )
    folded = list(status.get("folded", []))
    if new_reference and folded:
        # The stack started again from this light; the earlier ones stay out of it.
        status["superseded"] = [*status.get("superseded", []), *folded]
        folded = []
    status |= {
        "folded": [*folded, job.frame_id],
        "pixels": [*status.get("pixels", []), result.pixels_sha256],
        "frames": stack.frames,
        "rejected_fraction": stack.rejected_fraction,
        "last_weight": weight,
        "last_rejected_fraction": rejected,
        "notes": list(opened.notes),
        "updated": datetime.now(UTC).isoformat(),
    }
    if new_reference or "reference_frame_id" not in status:
        status["reference_frame_id"] = job.frame_id
    _write_status(job.folder, status)
    return status


def _fold(
    opened: _Open, job: LiveJob, light: CalibratedLight
) -> tuple[LiveStack, float, float, bool] | str:
    """The light folded into its stack (or starting it); the reason when it cannot be."""
    cube = np.load(light.path)
    stored = None if job.stars is None else StarList.from_bytes(job.stars)
    minimum = job.config.registration.min_matches
    stars = stored.yx if stored is not None and len(stored) >= minimum else light.stars_yx
    if opened.stack is None:
        opened.stack = LiveStack.start(cube, stars, light.metrics)
        return opened.stack, 1.0, 0.0, True
    try:
        stack, folded = opened.stack.add(cube, stars, light.metrics, job.config)
    except (RegistrationError, ValueError) as e:
        return str(e)
    opened.stack = stack
    return stack, folded.weight, folded.rejected_fraction, folded.new_reference


def _skipped(job: LiveJob, status: dict[str, Any], reason: str) -> dict[str, Any]:
    skipped = dict(status.get("skipped", {}))
    skipped[str(job.frame_id)] = reason
    status = status | {"skipped": skipped, "updated": datetime.now(UTC).isoformat()}
    _write_status(job.folder, status)
    return status


def _open(job: LiveJob) -> _Open:
    """A stack's masters (as the morning's job would match them) and its saved state."""
    (group,) = [g for g in group_frames([job.frame, *job.library]) if g.lights]
    config = job.pipeline
    bias = build_master("BIAS", group.bias, config.masters) if group.bias else None
    dark_flat = (
        build_master("DARKFLAT", group.dark_flats, config.masters) if group.dark_flats else None
    )
    flat = (
        build_master("FLAT", group.flats, config.masters, bias=bias, dark_flat=dark_flat)
        if group.flats
        else None
    )
    dark = build_master("DARK", group.darks, config.masters) if group.darks else None
    made = group_masters(
        bias,
        dark,
        dark_flat,
        flat,
        cosmetic=config.cosmetic,
        colour=job.frame.bayer_pattern is not None,
    )
    folder = job.folder / "masters"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    masters = MasterFiles.save(made, folder, "live")
    calibration = replace(config.calibration, dark_scaling=group.dark_scaling)
    stage = CalibrateStage(calibration, config.demosaic, config.stars, config.saturation_adu)
    used = [kind for kind, m in (("bias", bias), ("dark", dark), ("flat", flat)) if m]
    notes = (
        ("calibrated with the library's master " + ", ".join(used),)
        if used
        else ("uncalibrated: no master in the library matches these lights",)
    )
    state = job.folder / _STATE
    stack = LiveStack.load(state) if (state / "state.json").exists() else None
    return _Open(stack, masters, stage, notes)


def _write_status(folder: Path, status: dict[str, Any]) -> None:
    with atomic_path(folder / STATUS) as temporary:
        temporary.write_text(json.dumps(status))


def read_status(folder: Path) -> dict[str, Any] | None:
    """A stack's status, or None when it has none (yet) or it cannot be read."""
    try:
        status: dict[str, Any] = json.loads((folder / STATUS).read_text())
    except (OSError, ValueError):
        return None
    return status


class LiveService:
    """Queues accepted lights and folds them in a background process (see the module)."""

    def __init__(
        self,
        engine: Engine,
        frames_root: Path,
        masters_root: Path,
        live_root: Path,
        config: LiveConfig | None = None,
        cache_days: float = 7.0,
    ) -> None:
        """`cache_days`: a closed night's cache is removed this long after it closed."""
        self._engine = engine
        self._cache_days = cache_days
        self._frames_root = frames_root
        self._masters_root = masters_root
        self.live_root = live_root
        self._config = config or LiveConfig()
        self._pipeline = recipe_pipeline_config(ProcessingOptions(), default_job_recipe())
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pool: ProcessPoolExecutor | None = None

    def queue_light(self, frame_id: int) -> None:
        """Stack this accepted light soon (thread-safe, returns at once)."""
        self._queue.put(frame_id)

    async def start(self) -> None:
        """Start the stacking thread, with the lights of open nights not stacked yet, once
        old nights' caches are gone."""
        await asyncio.to_thread(self._remove_stale_caches)
        waiting = await asyncio.to_thread(self._unstacked)
        for frame_id in waiting:
            self._queue.put(frame_id)
        self._thread = threading.Thread(target=self._loop, name="live stack", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join, _STOP_TIMEOUT_S)
        self._thread = None

    def stacks(self) -> list[dict[str, Any]]:
        """Every live stack's status, newest night first."""
        found = []
        for folder in sorted(self.live_root.glob("night_*/*/"), reverse=True):
            status = read_status(folder)
            if status is not None:
                found.append(status | {"name": folder.name})
        return found

    def preview(self, session_id: int, name: str) -> Path | None:
        """A stack's JPEG, or None when there is none."""
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            return None
        path = night_folder(self.live_root, session_id) / name / PREVIEW
        return path if path.is_file() else None

    # --- internals ----------------------------------------------------------------------

    def _loop(self) -> None:
        while (frame_id := self._queue.get()) is not None:
            try:
                self._stack(frame_id)
            except Exception as e:  # the stacking's supervisor: a failure is an event
                log.exception("live stack: frame %d", frame_id)
                self._event("warning", f"live stack: frame {frame_id} not stacked: {e}", {})
            self._remove_stale_caches()
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def _stack(self, frame_id: int) -> None:
        job = self._job(frame_id)
        if job is None:
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_process,
                initargs=(os.getpid(),),
            )
        try:
            status = self._pool.submit(fold_light, job).result()
        except BrokenProcessPool:
            self._pool = None
            raise
        data = {
            "live": job.folder.name,
            "session_id": job.session_id,
            "frame_id": frame_id,
            "frames": status.get("frames", 0),
        }
        reason = status.get("skipped", {}).get(str(frame_id))
        if reason is not None:
            self._event(
                "warning", f"live stack {job.folder.name}: frame {frame_id} skipped: {reason}", data
            )
        else:
            self._event("info", f"live stack {job.folder.name}: {status['frames']} frames", data)

    def _job(self, frame_id: int) -> LiveJob | None:
        with Session(self._engine) as db:
            row = db.execute(
                select(Frame, Target.name, FrameStars.stars)
                .outerjoin(Target, Frame.target_id == Target.id)
                .outerjoin(FrameStars, FrameStars.frame_id == Frame.id)
                .where(Frame.id == frame_id)
            ).first()
        if row is None:
            return None
        frame, target, stars = row
        if frame.frame_type is not FrameType.LIGHT or not frame.accepted:
            return None
        path = self._frames_root / frame.path
        shape, header = read_fits_header(path)
        info = replace(frame_info(path, shape, header), target=target, sha256=frame.sha256)
        name = stack_name(info.target or "target", info.filter_name)
        folder = night_folder(self.live_root, frame.session_id) / name
        status = read_status(folder) or {
            "session_id": frame.session_id,
            "target": info.target or "target",
            "filter": info.filter_name,
        }
        if frame.id in status.get("folded", []) or str(frame.id) in status.get("skipped", {}):
            return None
        return LiveJob(
            frame_id=frame.id,
            session_id=frame.session_id,
            frame=info,
            stars=stars,
            library=tuple(library_masters(self._masters_root)),
            folder=folder,
            cache=night_cache(self.live_root, frame.session_id),
            pipeline=self._pipeline,
            config=self._config,
            status=status,
        )

    def _remove_stale_caches(self) -> None:
        """`remove_stale_caches`; a failure costs disk space until the next try, never the
        stacking."""
        try:
            removed = remove_stale_caches(
                self._engine, self.live_root, self._cache_days, datetime.now(UTC)
            )
        except (SQLAlchemyError, OSError) as e:
            log.error("live stack: old nights' caches not removed: %s", e)
            return
        if removed:
            log.info("live stack: caches of nights %s removed (closed long ago)", removed)

    def _unstacked(self) -> list[int]:
        """Accepted lights of open nights that no stack has folded or skipped."""
        done: set[int] = set()
        for status in self.stacks():
            done.update(int(i) for i in status.get("folded", []))
            done.update(int(i) for i in status.get("superseded", []))
            done.update(int(i) for i in status.get("skipped", {}))
        with Session(self._engine) as db:
            ids = db.scalars(
                select(Frame.id)
                .join(ImagingSession, Frame.session_id == ImagingSession.id)
                .where(
                    ImagingSession.state == SessionState.OPEN,
                    Frame.frame_type == FrameType.LIGHT,
                    Frame.accepted.is_(True),
                )
                .order_by(Frame.id)
            ).all()
        return [i for i in ids if i not in done]

    def _event(self, level: str, message: str, data: dict[str, Any]) -> None:
        try:
            record_event(self._engine, level, "live", message, data)
        except SQLAlchemyError as e:
            log.error("live stack event not recorded: %s", e)
