"""The processing worker: jobs from the database, run one at a time in a child process.

A job is a night (`session_id`: its accepted lights and its calibration frames, from the
frame database), a target across nights (`target_id`: every accepted light of it, in one
filter if asked, with the calibration frames of each of those nights) or a folder of FITS
files from any tool (grouped from the headers) inside the processing roots
(``NIGHTOWL_PROCESSING_ROOTS``, the data folder by default), plus `ProcessingOptions`.
Masters from the master library (``DATA_DIR/masters``) join every job,
so darks and flats of another night are reused when they match; the masters a job builds
are copied into the library.

The pipeline runs in a spawned process, never on the event loop: progress comes back over a
queue and lands in the job's row (stage, fraction), so `GET /api/processing/jobs/{id}` shows
it. A job the daemon stopped or crashed in (state running) is queued again at the next start
and restarts cleanly: its output folder is emptied first.

With a Dask scheduler (``NIGHTOWL_DASK_SCHEDULER``) the child is the cluster's client: the
per-frame stages run on the cluster's workers (`PipelineConfig.scheduler`) and the
finishing on one of them (`processing.cluster.run_on_cluster`). Cancelling a job stops its
child, whose client goes with it, so the scheduler drops the job's tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import queue
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from daemon.db.engine import owned_by_engine, owner_of
from daemon.db.models import Frame, ImagingSession, ObservatoryProfile, ProcessingJob, Target
from daemon.errors import Conflict, NotFound, Refused
from daemon.events import record_event
from daemon.frame_owners import own_frames
from daemon.processing_options import (
    FINISHED_DIR,
    ProcessingOptions,
    job_options,
    recipe_pipeline_config,
)
from daemon.recipes import default_job_recipe
from daemon.states import JobState, SessionState
from processing.cluster import run_on_cluster
from processing.debayer import BayerPattern
from processing.finish import LinearMaster, finish_targets, linear_masters, plate_solver
from processing.grouping import FrameInfo, FrameKind, LightGroup, group_frames
from processing.io import atomic_path
from processing.pipeline import (
    PipelineConfig,
    PipelineError,
    PipelineResult,
    run_pipeline,
    scan_folder,
    summary,
)
from processing.recipe import (
    Recipe,
    parse_recipe,
)
from sequences.frames import FrameType

if TYPE_CHECKING:  # ForkServerContext does not exist on Windows
    from multiprocessing.context import ForkServerContext, SpawnContext

log = logging.getLogger(__name__)

# Progress lands in the database at most this often.
_PROGRESS_INTERVAL_S = 1.0
_POLL_S = 0.5
_STOP_TIMEOUT_S = 10.0
CANCELLED = "cancelled"
"""The error of a job cancelled by request (its state is failed)."""


FOLDER_REFUSED = (
    "not a folder the daemon may process: give the absolute path of an existing folder inside "
    "the processing roots (the data folder unless NIGHTOWL_PROCESSING_ROOTS names others)"
)
"""One answer whether a folder is absent or outside the roots, so it tells nothing of
what exists elsewhere on the machine."""


def within_roots(path: Path, roots: Sequence[Path]) -> Path | None:
    """`path` resolved (symlinks followed) when it exists inside one of the resolved `roots`;
    None when it is relative, absent or outside them."""
    if not path.is_absolute():
        return None
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return None
    return resolved if any(resolved.is_relative_to(root) for root in roots) else None


def session_frames(engine: Engine, frames_root: Path, session_id: int) -> list[FrameInfo]:
    """A night's frames as the pipeline sees them: rejected lights are left out (clouds,
    trailing, focus), calibration frames all count. Raises KeyError for an unknown session."""
    with Session(engine) as db:
        if db.get(ImagingSession, session_id) is None:
            raise KeyError(session_id)
        rows = db.execute(
            select(Frame, Target.name)
            .outerjoin(Target, Frame.target_id == Target.id)
            .where(Frame.session_id == session_id)
            .order_by(Frame.id)
        ).all()
    return [
        _frame_info(frames_root, row, target)
        for row, target in rows
        if row.frame_type is not FrameType.LIGHT or row.accepted
    ]


def _target_lights(target_id: int, filter_name: str | None) -> Any:
    """The accepted lights of a target (in one filter when `filter_name` is given)."""
    query = select(Frame.id).where(
        Frame.target_id == target_id,
        Frame.frame_type == FrameType.LIGHT,
        Frame.accepted.is_(True),
    )
    return query if filter_name is None else query.where(Frame.filter_name == filter_name)


def target_frames(
    engine: Engine, frames_root: Path, target_id: int, filter_name: str | None = None
) -> list[FrameInfo]:
    """A target's frames across nights: its accepted lights of every night of this daemon
    (in `filter_name` only, when given) and all calibration frames of the nights they were
    taken in; other targets' lights are left out, and so are other telescopes' frames (a
    database shared by several daemons: their files are on those daemons' disks)."""
    lights = _target_lights(target_id, filter_name).where(*own_frames(engine))
    with Session(engine) as db:
        nights = select(Frame.session_id).where(Frame.id.in_(lights)).distinct()
        rows = db.execute(
            select(Frame, Target.name)
            .outerjoin(Target, Frame.target_id == Target.id)
            .where(
                Frame.session_id.in_(nights),
                (Frame.frame_type != FrameType.LIGHT) | Frame.id.in_(lights),
            )
            .order_by(Frame.id)
        ).all()
    return [_frame_info(frames_root, row, target) for row, target in rows]


def _frame_info(frames_root: Path, row: Frame, target: str | None) -> FrameInfo:
    return FrameInfo(
        path=frames_root / row.path,
        kind=FrameKind(row.frame_type.value),
        shape=(row.height_px, row.width_px),
        exposure_s=row.exposure_s,
        filter_name=row.filter_name,
        binning=row.bin_x,
        gain=None if row.gain is None else float(row.gain),
        temperature_c=row.sensor_temperature_c,
        target=target,
        bayer_pattern=None if row.bayer_pattern is None else BayerPattern(row.bayer_pattern),
        sha256=row.sha256,
    )


def close_sessions_of_run(engine: Engine, run_id: int) -> list[int]:
    """Close the nights a finished run took lights in (state closed, ended_at now) and
    return their ids: the sessions to hand to the worker."""
    with Session(engine) as db, db.begin():
        ids = db.scalars(
            select(Frame.session_id)
            .where(Frame.run_id == run_id, Frame.frame_type == FrameType.LIGHT)
            .distinct()
        ).all()
        for session_id in ids:
            night = db.get(ImagingSession, session_id)
            if night is not None and night.state is SessionState.OPEN:
                night.state = SessionState.CLOSED
                night.ended_at = datetime.now(UTC)
        return sorted(ids)


def _refuse_another_telescopes_night(db: Session, session_id: int, engine: Engine) -> None:
    """`Refused` for a night another daemon sharing the database took: its frames lie under
    that daemon's frames root, not this one's."""
    owner = owner_of(engine)
    profile = db.scalar(
        select(ObservatoryProfile.name)
        .join(ImagingSession, ImagingSession.profile_id == ObservatoryProfile.id)
        .where(ImagingSession.id == session_id)
    )
    if owner is not None and profile != owner:
        raise Refused(
            "session_id",
            f"night {session_id} belongs to profile {profile!r}: its frames are on that "
            "daemon's disk; queue the job on the daemon of that profile",
        )


def library_masters(masters_root: Path) -> list[FrameInfo]:
    """The master library's masters (files a folder scan reads as masters)."""
    if not masters_root.is_dir():
        return []
    frames, skipped = scan_folder(masters_root)
    for path, reason in skipped:
        log.warning("master library: %s skipped: %s", path, reason)
    return [f for f in frames if f.is_master]


def _target_with_lights(db: Session, engine: Engine, name: str, filter_name: str | None) -> int:
    """The id of target `name`; `NotFound` for an unknown name, `Refused` when `engine`'s
    daemon took no accepted light of it (in `filter_name`, when given)."""
    target_id = db.scalars(select(Target.id).where(Target.name == name)).first()
    if target_id is None:
        raise NotFound(
            f"no target {name!r}: give the name of a target with lights "
            "(GET /api/processing/targets lists them)"
        )
    lights = _target_lights(target_id, filter_name).where(*own_frames(engine))
    if db.scalars(lights.limit(1)).first() is None:
        where = "" if filter_name is None else f" in filter {filter_name!r}"
        raise Refused(
            "target",
            f"target {name!r} has no accepted lights{where}: choose a target (or filter) "
            "with lights taken, or accept some of its lights",
        )
    return target_id


# Share of a stacking job's progress that the stacking takes; the finishing has the rest.
_STACKING_SHARE = 0.85

_Report = Callable[[str, float], None]


def _reporter(progress: multiprocessing.Queue[tuple[str, Any]]) -> _Report:
    """Progress into the queue. A child whose daemon died (killed, crashed) stops at its next
    report instead of writing on into a folder the restarted daemon is about to empty."""
    parent = os.getppid()

    def report(stage: str, fraction: float) -> None:
        if os.getppid() != parent:
            os._exit(3)
        progress.put(("progress", (stage, fraction)))

    return report


def _run_job(
    groups: list[LightGroup],
    out_dir: Path,
    config: PipelineConfig,
    progress: multiprocessing.Queue[tuple[str, Any]],
    recipe: dict[str, Any] | None = None,
    cache_dir: Path | None = None,
) -> None:
    """The child process: run the pipeline, then (unless `recipe` is None: linear only)
    finish every target into ``OUT/finished/``; report progress, then the summary (with
    `finished`) or the error. A target that cannot be finished does not fail the job: its
    linear masters are there."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    put = _reporter(progress)
    share = 1.0 if recipe is None else _STACKING_SHARE

    def report(stage: str, fraction: float) -> None:
        if stage != "done" or recipe is None:
            put(stage, fraction * share)

    try:
        result: PipelineResult = run_pipeline(groups, out_dir, config, report)
        outputs: dict[str, Any] = dict(summary(result))
        if recipe is not None:
            put("finishing", share)
            solver = None if cache_dir is None else plate_solver(cache_dir)
            masters = linear_masters(outputs)
            if config.scheduler is None:
                outputs["finished"] = finish_targets(
                    masters,
                    parse_recipe(recipe),
                    out_dir / FINISHED_DIR,
                    lambda stage, fraction: put(stage, share + (1.0 - share) * fraction),
                    solver,
                )
            else:  # on one worker of the cluster; its progress stays there
                outputs["finished"] = run_on_cluster(
                    config.scheduler,
                    finish_targets,
                    masters,
                    parse_recipe(recipe),
                    out_dir / FINISHED_DIR,
                    lambda stage, fraction: None,
                    solver,
                )
    except (PipelineError, OSError, ValueError) as e:
        progress.put(("failed", str(e)))
        return
    except Exception as e:  # the job's supervisor: any failure becomes the job's error
        logging.getLogger(__name__).exception("processing job failed")
        progress.put(("failed", f"{type(e).__name__}: {e}"))
        return
    progress.put(("done", outputs))


def _stop(process: BaseProcess) -> None:
    """End a job's child process: SIGTERM, SIGKILL when it outlives the timeout."""
    process.terminate()
    process.join(_STOP_TIMEOUT_S)
    if process.is_alive():
        process.kill()
        process.join(_STOP_TIMEOUT_S)


def _run_finish_job(
    source_id: int,
    masters: list[LinearMaster],
    out_dir: Path,
    recipe: dict[str, Any],
    progress: multiprocessing.Queue[tuple[str, Any]],
    cache_dir: Path | None = None,
    scheduler: str | None = None,
) -> None:
    """The child process of a job that only finishes another job's linear masters again
    (another recipe, no restacking), here or on one worker of the Dask `scheduler`. Like a
    stacking job's finishing, a target that cannot be finished is an entry with its error
    (and a warning event), not a failed job."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    put = _reporter(progress)
    try:
        put("finishing", 0.0)
        solver = None if cache_dir is None else plate_solver(cache_dir)
        recipe_ = parse_recipe(recipe)
        if scheduler is None:
            finished = finish_targets(masters, recipe_, out_dir / FINISHED_DIR, put, solver)
        else:
            finished = run_on_cluster(
                scheduler,
                finish_targets,
                masters,
                recipe_,
                out_dir / FINISHED_DIR,
                lambda stage, fraction: None,
                solver,
            )
    except (OSError, ValueError) as e:
        progress.put(("failed", str(e)))
        return
    except Exception as e:  # the job's supervisor: any failure becomes the job's error
        logging.getLogger(__name__).exception("finishing job failed")
        progress.put(("failed", f"{type(e).__name__}: {e}"))
        return
    progress.put(("done", {"finish_of": source_id, "finished": finished}))


@dataclass(frozen=True)
class _Plan:
    """What a job's child process gets: the groups to stack and their config (none for a
    job that only finishes), the recipe (None: linear only) and the masters to finish."""

    out_dir: Path
    groups: list[LightGroup]
    config: PipelineConfig | None
    recipe: dict[str, Any] | None
    finish_of: int | None = None
    masters: tuple[LinearMaster, ...] = ()


class ProcessingWorker:
    """Runs queued jobs one after another; `submit` adds one, `stop` ends the loop (a job
    in flight is stopped and queued again at the next start)."""

    def __init__(
        self,
        engine: Engine,
        frames_root: Path,
        processing_root: Path,
        masters_root: Path,
        roots: Sequence[Path],
        cache_dir: Path | None = None,
        night_cache: Callable[[int], Path] | None = None,
        *,
        scheduler: str | None = None,
    ) -> None:
        """`roots`: the resolved folders a job may read (folders and references) from;
        `cache_dir`: where the plate solver keeps its databases (None: pictures are not
        plate solved for their colour calibration); `night_cache(session_id)`: where the
        live stack kept a night's calibrated lights, which its job reuses (and removes once
        it has succeeded on a closed night); `scheduler`: the Dask scheduler
        (tcp://host:port) jobs run on (None: a local process pool)."""
        self._scheduler = scheduler
        self._cancelled: set[int] = set()
        self._engine = engine
        self._night_cache = night_cache
        self._cache_dir = cache_dir
        self._roots = tuple(roots)
        self._frames_root = frames_root
        self._processing_root = processing_root
        self._masters_root = masters_root
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._process: BaseProcess | None = None
        # Jobs are forked from a fork server that has the pipeline loaded (`daemon.job_preload`),
        # not spawned into a fresh interpreter: each job starts warm. Where there is no fork
        # server (Windows), they are spawned.
        self._forkserver = "forkserver" in multiprocessing.get_all_start_methods()
        self._context: ForkServerContext | SpawnContext = (
            multiprocessing.get_context("forkserver")
            if self._forkserver
            else multiprocessing.get_context("spawn")
        )
        if self._forkserver:
            multiprocessing.forkserver.set_forkserver_preload(["daemon.job_preload"])

    def prepare(self) -> None:
        """Start the fork server jobs are forked from, unless it runs already (a check of
        microseconds then). Its imports (`daemon.job_preload`: ~2 CPU-seconds) are then done
        long before the night's job, which starts warm; the daemon calls this at each light
        of a night it will process. Thread-safe; returns at once. A server that cannot
        start is logged: the next job tries again and reports its own error."""
        if not self._forkserver:
            return
        try:
            multiprocessing.forkserver.ensure_running()
        except OSError as e:
            log.warning("processing: the jobs' fork server did not start: %s", e)

    async def start(self) -> None:
        requeued = await asyncio.to_thread(self._requeue_interrupted)
        if requeued:
            await asyncio.to_thread(
                record_event,
                self._engine,
                "warning",
                "processing",
                f"processing job(s) {requeued} were interrupted; they restart from the beginning",
            )
        self._task = asyncio.create_task(self._loop(), name="processing worker")
        self._wake.set()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def submit(
        self,
        options: ProcessingOptions,
        *,
        session_id: int | None = None,
        folder: Path | None = None,
        target: str | None = None,
        filter_name: str | None = None,
        recipe: Recipe | None = None,
        linear_only: bool = False,
    ) -> int:
        """Queue a job for a night, a folder or a target across nights (`target`, its
        name; `filter_name`: only its lights in that filter); returns its id. Its config
        holds the options and the full `recipe` document (None:
        `daemon.recipes.default_job_recipe`), so the job can be redone after the recipe
        changes; `linear_only` stops after the linear masters. Raises `NotFound` for an
        unknown session or target, `Refused` for a target without accepted lights, for a
        folder or reference that is not inside the roots (the same answer when it does not
        exist)."""
        if sum(source is not None for source in (session_id, folder, target)) != 1:
            raise Refused(None, "a job processes one of a session_id, a folder or a target")
        if filter_name is not None and target is None:
            raise Refused("filter", "filter chooses a target's lights: give target too")
        if folder is not None:
            folder = await asyncio.to_thread(within_roots, folder, self._roots)
            if folder is None or not await asyncio.to_thread(folder.is_dir):
                raise Refused("folder", FOLDER_REFUSED)
        if options.reference is not None:
            reference = await asyncio.to_thread(within_roots, options.reference, self._roots)
            if reference is None or not await asyncio.to_thread(reference.is_file):
                raise Refused(
                    "options",
                    "reference: not a file the daemon may read: give the absolute path of a "
                    "light inside the processing roots (NIGHTOWL_PROCESSING_ROOTS)",
                )

        chosen = default_job_recipe() if recipe is None else recipe

        def create(db: Session) -> ProcessingJob:
            if session_id is not None and db.get(ImagingSession, session_id) is None:
                raise NotFound(f"no session {session_id}")
            if session_id is not None:
                _refuse_another_telescopes_night(db, session_id, self._engine)
            config = options.model_dump(mode="json") | {
                "recipe": chosen.model_dump(mode="json"),
                "linear_only": linear_only,
            }
            target_id = None
            if target is not None:
                target_id = _target_with_lights(db, self._engine, target, filter_name)
                config |= {"target": target, "filter": filter_name}
            return ProcessingJob(
                session_id=session_id,
                target_id=target_id,
                folder=None if folder is None else str(folder),
                state=JobState.QUEUED,
                config=config,
            )

        return await self._queue(create)

    async def submit_finish(self, source_id: int, recipe: Recipe) -> int:
        """Queue a job that finishes done job `source_id`'s linear masters again with
        `recipe`, without stacking again; its config is ``{"finish_of": id, "recipe":
        {...}}`` (a finishing job's own source is used when `source_id` is one). Raises
        `NotFound` for an unknown job, `Conflict` unless it is done."""

        def create(db: Session) -> ProcessingJob:
            source = db.get(ProcessingJob, source_id)
            if source is None:
                raise NotFound(f"no processing job {source_id}")
            if source.state is not JobState.DONE:
                raise Conflict(
                    f"processing job {source_id} is {source.state.value}: only a done "
                    "job's masters can be finished again; wait for it to end"
                )
            origin = int(source.config.get("finish_of", source_id))
            return ProcessingJob(
                state=JobState.QUEUED,
                config={"finish_of": origin, "recipe": recipe.model_dump(mode="json")},
            )

        return await self._queue(create)

    async def _queue(self, make: Callable[[Session], ProcessingJob]) -> int:
        """Store the job `make` builds (it may raise to refuse), give it its folder and
        wake the loop; returns its id."""

        def create() -> int:
            with Session(self._engine) as db, db.begin():
                job = make(db)
                db.add(job)
                db.flush()
                job.out_dir = str((self._processing_root / f"job_{job.id:05d}").resolve())
                return job.id

        job_id = await asyncio.to_thread(create)
        self._wake.set()
        return job_id

    async def cancel(self, job_id: int) -> None:
        """Cancel a queued or running job: it ends failed with the error `CANCELLED`; a
        running job's child process is stopped within a second or so, and with it its Dask
        client, so the scheduler drops the job's tasks. Raises `NotFound` for an unknown
        job, `Conflict` for one that has already ended."""

        def mark() -> bool:
            with Session(self._engine) as db, db.begin():
                job = db.get(ProcessingJob, job_id)
                if job is None:
                    raise NotFound(f"no processing job {job_id}")
                running = job.state is JobState.RUNNING
                ended = db.execute(
                    update(ProcessingJob)
                    .where(
                        ProcessingJob.id == job_id,
                        ProcessingJob.state.in_((JobState.QUEUED, JobState.RUNNING)),
                    )
                    .values(
                        state=JobState.FAILED,
                        error=CANCELLED,
                        finished_at=datetime.now(UTC),
                        updated_at=datetime.now(UTC),
                    )
                )
                if getattr(ended, "rowcount", 0) == 1:
                    return running
                db.refresh(job)
                raise Conflict(
                    f"processing job {job_id} is {job.state.value}: only a queued or running "
                    "job can be cancelled"
                )

        if await asyncio.to_thread(mark):
            self._cancelled.add(job_id)
        await asyncio.to_thread(
            record_event,
            self._engine,
            "warning",
            "processing",
            f"processing job {job_id} cancelled",
            {"job_id": job_id},
        )

    async def wait(self, job_id: int, timeout_s: float) -> JobState:
        """Wait until the job is done or failed (tests, the CLI). Raises TimeoutError."""

        async def poll() -> JobState:
            while True:
                state = await asyncio.to_thread(self._state, job_id)
                if state in (JobState.DONE, JobState.FAILED):
                    return state
                await asyncio.sleep(_POLL_S)

        async with asyncio.timeout(timeout_s):
            return await poll()

    # --- internals ----------------------------------------------------------------------

    def _state(self, job_id: int) -> JobState:
        with Session(self._engine) as db:
            job = db.get(ProcessingJob, job_id)
            if job is None:
                raise KeyError(job_id)
            return job.state

    def _requeue_interrupted(self) -> list[int]:
        """This daemon's jobs left running by a stop; other daemons sharing the database
        keep theirs."""
        with Session(self._engine) as db, db.begin():
            jobs = db.scalars(
                select(ProcessingJob)
                .where(
                    ProcessingJob.state == JobState.RUNNING,
                    owned_by_engine(ProcessingJob.owner, self._engine),
                )
                .order_by(ProcessingJob.id)
            ).all()
            for job in jobs:
                job.state = JobState.QUEUED
                job.progress = 0.0
                job.stage = None
            return [job.id for job in jobs]

    def _next_job(self) -> int | None:
        """Claim this daemon's oldest queued job (state running); None when there is none.
        The claim is one conditional update, so a job is never taken twice."""
        while True:
            with Session(self._engine) as db, db.begin():
                job_id = db.scalars(
                    select(ProcessingJob.id)
                    .where(
                        ProcessingJob.state == JobState.QUEUED,
                        owned_by_engine(ProcessingJob.owner, self._engine),
                    )
                    .order_by(ProcessingJob.id)
                    .limit(1)
                ).first()
                if job_id is None:
                    return None
                claimed = db.execute(
                    update(ProcessingJob)
                    .where(ProcessingJob.id == job_id, ProcessingJob.state == JobState.QUEUED)
                    .values(
                        state=JobState.RUNNING,
                        started_at=datetime.now(UTC),
                        stage="planning",
                        updated_at=datetime.now(UTC),
                    )
                )
                if getattr(claimed, "rowcount", 0) == 1:
                    return job_id

    def _update(self, job_id: int, **values: Any) -> None:
        with Session(self._engine) as db, db.begin():
            job = db.get(ProcessingJob, job_id)
            if job is not None:
                for key, value in values.items():
                    setattr(job, key, value)

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (job_id := await asyncio.to_thread(self._next_job)) is not None:
                await self._run(job_id)

    def _plan(self, job_id: int) -> _Plan:
        """Raises PipelineError when there is nothing to do, ValueError for a config that no
        longer validates."""
        with Session(self._engine) as db:
            job = db.get(ProcessingJob, job_id)
            assert job is not None
            session_id, folder, out_dir = job.session_id, job.folder, job.out_dir
            target_id = job.target_id
            config = dict(job.config)
            source_id = config.get("finish_of")
            source_outputs = None
            if source_id is not None:
                source = db.get(ProcessingJob, int(source_id))
                source_outputs = {} if source is None else dict(source.outputs)
        assert out_dir is not None
        if source_id is not None:
            assert source_outputs is not None
            masters = tuple(linear_masters(source_outputs))
            if not masters:
                raise PipelineError(f"processing job {source_id} has no linear masters to finish")
            recipe = parse_recipe(config["recipe"]).model_dump(mode="json")
            return _Plan(Path(out_dir), [], None, recipe, int(source_id), masters)
        options = job_options(config)
        chosen = parse_recipe(config["recipe"]) if "recipe" in config else default_job_recipe()
        if session_id is not None:
            frames = session_frames(self._engine, self._frames_root, session_id)
        elif target_id is not None:
            frames = target_frames(self._engine, self._frames_root, target_id, config.get("filter"))
        else:
            assert folder is not None
            frames, skipped = scan_folder(Path(folder))
            for path, reason in skipped:
                log.warning("job %d: %s skipped: %s", job_id, path, reason)
        frames += library_masters(self._masters_root)
        pipeline = recipe_pipeline_config(options, chosen)
        if session_id is not None and self._night_cache is not None:
            pipeline = replace(pipeline, cache_dir=self._night_cache(session_id))
        if self._scheduler is not None:
            pipeline = replace(pipeline, scheduler=self._scheduler)
        return _Plan(
            Path(out_dir),
            group_frames(frames),
            pipeline,
            None if config.get("linear_only") else chosen.model_dump(mode="json"),
        )

    async def _run(self, job_id: int) -> None:
        """Run a job `_next_job` claimed."""
        try:
            plan = await asyncio.to_thread(self._plan, job_id)
            if plan.finish_of is None and not any(group.lights for group in plan.groups):
                raise PipelineError("no light frames: nothing to integrate")
        except (PipelineError, OSError, ValueError) as e:
            await self._finish(job_id, JobState.FAILED, error=str(e))
            return
        if job_id in self._cancelled:
            self._cancelled.discard(job_id)
            return
        await asyncio.to_thread(shutil.rmtree, plan.out_dir, True)
        messages: multiprocessing.Queue[tuple[str, Any]] = self._context.Queue()
        if plan.finish_of is None:
            target: Callable[..., None] = _run_job
            args: tuple[Any, ...] = (
                plan.groups,
                plan.out_dir,
                plan.config,
                messages,
                plan.recipe,
                self._cache_dir,
            )
        else:
            target = _run_finish_job
            args = (
                plan.finish_of,
                list(plan.masters),
                plan.out_dir,
                plan.recipe,
                messages,
                self._cache_dir,
                self._scheduler,
            )
        process = self._context.Process(target=target, args=args, name=f"job {job_id}")
        self._process = process
        # Off the event loop: a fork server still importing the pipeline (3 s on a quiet
        # machine, over 10 s on a busy one) holds start() until it can fork.
        starting = asyncio.ensure_future(asyncio.to_thread(process.start))
        try:
            await asyncio.shield(starting)
            outcome = await self._follow(job_id, process, messages)
        except asyncio.CancelledError:
            await starting  # a process is stopped once it exists
            process.terminate()
            await asyncio.to_thread(process.join, _STOP_TIMEOUT_S)
            raise
        finally:
            self._process = None
            self._cancelled.discard(job_id)
        kind, payload = outcome
        if kind == CANCELLED:
            return
        if kind == "done":
            await asyncio.to_thread(self._keep_masters, payload)
            await asyncio.to_thread(self._warn_unfinished, job_id, payload)
            await self._finish(job_id, JobState.DONE, outputs=payload)
        else:
            await self._finish(job_id, JobState.FAILED, error=str(payload))

    async def _follow(
        self,
        job_id: int,
        process: BaseProcess,
        messages: multiprocessing.Queue[tuple[str, Any]],
    ) -> tuple[str, Any]:
        """Pass progress to the job's row until the child reports its end (or dies), or the
        job is cancelled (here, or in the database by another daemon): then the child is
        stopped and the outcome is `CANCELLED`."""
        last_write = last_check = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() - last_check >= _PROGRESS_INTERVAL_S:
                last_check = loop.time()
                if await asyncio.to_thread(self._state, job_id) is not JobState.RUNNING:
                    self._cancelled.add(job_id)
            if job_id in self._cancelled:
                await asyncio.to_thread(_stop, process)
                return CANCELLED, None
            try:
                kind, payload = await asyncio.to_thread(messages.get, True, _POLL_S)
            except queue.Empty:
                if not process.is_alive():
                    return "failed", f"the processing process died (exit code {process.exitcode})"
                continue
            if kind != "progress":
                await asyncio.to_thread(process.join, _STOP_TIMEOUT_S)
                return kind, payload
            stage, fraction = payload
            if loop.time() - last_write >= _PROGRESS_INTERVAL_S:
                last_write = loop.time()
                await asyncio.to_thread(
                    self._update, job_id, stage=stage, progress=round(float(fraction), 4)
                )

    async def _finish(
        self,
        job_id: int,
        state: JobState,
        *,
        outputs: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": state, "finished_at": datetime.now(UTC)}
        if state is JobState.DONE:
            values |= {"progress": 1.0, "stage": "done", "outputs": outputs or {}}
        else:
            values |= {"error": error}
        await asyncio.to_thread(self._update, job_id, **values)
        data: dict[str, Any] = {"job_id": job_id}
        level, message = (
            ("info", f"processing job {job_id} done")
            if state is JobState.DONE
            else ("error", f"processing job {job_id} failed: {error}")
        )
        pictures = [
            {"target": entry["target"], "name": entry["name"], "outputs": entry["outputs"]}
            for entry in (outputs or {}).get("finished", [])
            if "error" not in entry
        ]
        session_id = await asyncio.to_thread(self._session_of, job_id)
        if (
            state is JobState.DONE
            and session_id is not None
            and self._night_cache is not None
            and await asyncio.to_thread(self._night_closed, session_id)
        ):
            # The night is over and its picture exists: its calibrated lights need not stay
            # on disk. An open night's live stack still writes there, so its cache stays.
            await asyncio.to_thread(shutil.rmtree, self._night_cache(session_id), True)
        if state is JobState.DONE and pictures and session_id is not None:
            # A night that ends with its picture is news for the observer: an alert.
            targets = ", ".join(dict.fromkeys(p["target"] for p in pictures))
            level = "alert"
            message = f"night {session_id} finished with its picture: {targets} (job {job_id})"
            data |= {"session_id": session_id, "pictures": pictures}
        await asyncio.to_thread(record_event, self._engine, level, "processing", message, data)

    def _session_of(self, job_id: int) -> int | None:
        with Session(self._engine) as db:
            job = db.get(ProcessingJob, job_id)
            return None if job is None else job.session_id

    def _night_closed(self, session_id: int) -> bool:
        with Session(self._engine) as db:
            night = db.get(ImagingSession, session_id)
            return night is not None and night.state is not SessionState.OPEN

    def _warn_unfinished(self, job_id: int, outputs: dict[str, Any]) -> None:
        """A warning event for each target a done job could not finish."""
        for entry in outputs.get("finished", []):
            if "error" in entry:
                record_event(
                    self._engine,
                    "warning",
                    "processing",
                    f"processing job {job_id}: {entry['target']} was not finished: "
                    f"{entry['error']}",
                    {"job_id": job_id, "target": entry["target"]},
                )

    def _keep_masters(self, outputs: dict[str, Any]) -> None:
        """Copy the job's masters into the library (the newest of a kind replaces one of
        the same name), for nights without calibration frames of their own."""
        self._masters_root.mkdir(parents=True, exist_ok=True)
        for name, path in dict(outputs.get("masters", {})).items():
            with atomic_path(self._masters_root / f"{name}.fits") as temporary:
                shutil.copyfile(path, temporary)
