"""`create_app(settings)`: the FastAPI application and everything its lifespan wires up.

Nothing is created at import time. At startup the lifespan opens the database, finds the
equipment (profile file, running simulator rig, or an embedded rig it starts itself), and
connects the devices in the background so a dead device cannot hold up the API. At shutdown
it disconnects the devices, stops an embedded rig and closes the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy import Engine

from daemon.access import Access
from daemon.api.auth import require_access
from daemon.api.errors import install_error_handlers
from daemon.api.guards import install_guards
from daemon.api.openapi import install_openapi
from daemon.api.routes import auth as auth_routes
from daemon.api.routes import autofocus as autofocus_routes
from daemon.api.routes import equipment as equipment_routes
from daemon.api.routes import events as event_routes
from daemon.api.routes import frames as frame_routes
from daemon.api.routes import health as health_routes
from daemon.api.routes import imaging as imaging_routes
from daemon.api.routes import live as live_routes
from daemon.api.routes import plans as plan_routes
from daemon.api.routes import processing as processing_routes
from daemon.api.routes import profile as profile_routes
from daemon.api.routes import recipes as recipe_routes
from daemon.api.routes import runs as run_routes
from daemon.api.routes import targets as target_routes
from daemon.api.routes import templates as template_routes
from daemon.api.routes.web import install_web
from daemon.autofocus import AutofocusService
from daemon.capture import CaptureConfig, CaptureService
from daemon.db.engine import make_engine, owned_engine
from daemon.db.migrate import upgrade
from daemon.db.ownership import adopt_unowned
from daemon.device_faults import DeviceFaultLog
from daemon.equipment_state import EquipmentState, held_for_imaging
from daemon.events import record_event
from daemon.frame_records import register_unrecorded_files
from daemon.imaging import ImagingService
from daemon.live import LiveService, night_cache
from daemon.log_redaction import install_log_redaction
from daemon.loop_watchdog import LoopWatchdog, Stall
from daemon.nights import NightDirector
from daemon.notifications import Notifier
from daemon.plans import plan_run_ids, recipe_of_runs
from daemon.processing_options import ProcessingOptions
from daemon.profile_editor import stored_horizon
from daemon.runs import CaptureSink, ContextFactory, RunEvents, RunManager
from daemon.safety import SafetyConfig, SafetySupervisor
from daemon.scheduler import NightScheduler
from daemon.settings import Settings
from daemon.simulator.rig import SimulatorRig, simulator_profile
from daemon.store import FrameStore
from daemon.worker import ProcessingWorker, close_sessions_of_run
from drivers.alpaca import build_equipment
from drivers.base import Guider
from drivers.equipment import Equipment
from drivers.errors import DeviceError
from drivers.guider.native import NativeGuider
from drivers.guider.phd2 import Phd2Guider
from drivers.profile import EquipmentProfile, NativeGuiderChoice, load_profile
from sequences.astro import Horizon, configure_astropy_offline, load_earth_orientation
from sequences.clock import Clock, SimulatedClock, SystemClock
from sequences.context import RunContext
from sequences.platesolve import frame_solver, prepare_solver
from sequences.state import RunStatus
from sequences.validation import site_of

log = logging.getLogger(__name__)

_DISCONNECT_TIMEOUT_S = 15.0


@dataclass
class Runtime:
    """What the running daemon holds; routers reach it through `daemon.api.deps`."""

    settings: Settings
    engine: Engine
    equipment: Equipment
    rig: SimulatorRig | None
    store: FrameStore
    capture: CaptureService
    autofocus: AutofocusService
    clock: Clock
    runs: RunManager
    guider: Guider | None
    worker: ProcessingWorker
    safety: SafetySupervisor
    nights: NightDirector
    scheduler: NightScheduler
    horizon: Horizon | None
    equipment_state: EquipmentState
    live: LiveService | None
    profile: EquipmentProfile | None = None
    imaging: ImagingService | None = None
    watchdog: LoopWatchdog | None = None


async def _equipment_source(settings: Settings) -> tuple[EquipmentProfile, SimulatorRig | None]:
    if settings.equipment_profile is not None:
        return load_profile(settings.equipment_profile), None
    if settings.simulator_url is not None:
        return simulator_profile(settings.simulator_url), None
    rig = SimulatorRig(
        run_dir=settings.data_dir / "simulator", cache_dir=settings.resolved_cache_dir
    )
    await asyncio.to_thread(rig.start)
    return simulator_profile(rig.url), rig


def _recover_frames(engine: Engine, store: FrameStore, profile: str, settings: Settings) -> None:
    """Register frame files a crash left without a row; tell what was found."""
    result = register_unrecorded_files(engine, store, profile, settings.resolved_timezone)
    if result.unregistered:
        record_event(
            engine,
            "warning",
            "store",
            f"re-registered {len(result.unregistered)} frame file(s) that had no record",
            {"paths": [str(f.path) for f in result.unregistered]},
        )
    if result.removed_partials:
        record_event(
            engine,
            "warning",
            "store",
            f"removed {len(result.removed_partials)} partial file(s) of interrupted writes",
            {"paths": [str(p) for p in result.removed_partials]},
        )


def build_guider(profile: EquipmentProfile, equipment: Equipment) -> Guider | None:
    """The profile's guider: PHD2 when chosen (it runs its own guide camera), else the native
    guider when there are a guide camera and a mount, else none."""
    choice = profile.guider
    if not isinstance(choice, NativeGuiderChoice):
        return Phd2Guider(choice)
    if equipment.guide_camera is None or equipment.mount is None:
        return None
    return NativeGuider(equipment.guide_camera, equipment.mount)


def make_clock(settings: Settings) -> Clock:
    if settings.clock == "simulated":
        return SimulatedClock(settings.clock_start or datetime.now(UTC))
    return SystemClock()


def _run_context_factory(
    engine: Engine,
    equipment: Equipment,
    capture: CaptureService,
    autofocus: AutofocusService,
    clock: Clock,
    guider: Guider | None,
    cache_dir: Path,
    horizon: Horizon | None,
    scripts_dir: Path | None,
) -> ContextFactory:
    sink = CaptureSink(capture, engine)
    solver = frame_solver(equipment, cache_dir)

    def build(run_id: int, events: RunEvents) -> RunContext:
        return RunContext(
            equipment=equipment,
            clock=clock,
            frames=sink,
            events=events,
            run_id=run_id,
            site=site_of(equipment),
            horizon=horizon,
            guider=guider,
            solve=solver,
            autofocus=autofocus,
            scripts_dir=scripts_dir,
        )

    return build


async def _resume_after_connect(
    runs: RunManager, run_id: int, connecting: Awaitable[object] | None
) -> None:
    if connecting is not None:
        await connecting
    log.info("resuming run %d", run_id)
    await runs.resume(run_id)


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Everything the daemon holds, from the database to the run manager; devices are built
    but not connected. On exit: the active run is interrupted (resumable), devices disconnect,
    an embedded simulator rig stops."""
    configure_astropy_offline()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = make_engine(settings.resolved_database_url)
    await asyncio.to_thread(upgrade, database)
    profile, rig = await _equipment_source(settings)
    # Daemons sharing a database each own what they create: its runs, jobs, plans, events.
    engine = owned_engine(database, profile.name)
    adopted = await asyncio.to_thread(adopt_unowned, engine)
    if any(adopted.values()):
        log.info("profile %r took over rows without an owner: %s", profile.name, adopted)
    faults = DeviceFaultLog(engine)
    equipment = build_equipment(profile, faults.heard)
    store = FrameStore(settings.frames_root)
    await asyncio.to_thread(_recover_frames, engine, store, profile.name, settings)
    guider = build_guider(profile, equipment)
    live = (
        LiveService(
            engine,
            settings.frames_root,
            settings.masters_root,
            settings.live_root,
            cache_days=settings.live_cache_days,
        )
        if settings.live_stack
        else None
    )
    worker = ProcessingWorker(
        engine,
        settings.frames_root,
        settings.processing_root,
        settings.masters_root,
        settings.resolved_processing_roots,
        settings.resolved_solver_cache_dir,
        None if live is None else functools.partial(night_cache, settings.live_root),
        scheduler=settings.dask_scheduler,
    )

    def light_saved(frame_id: int) -> None:
        """An accepted light: the live stack takes it, and when the night will be processed,
        the jobs' fork server gets ready for it (see `ProcessingWorker.prepare`)."""
        if settings.process_after_run:
            worker.prepare()
        if live is not None:
            live.queue_light(frame_id)

    capture = CaptureService(
        engine,
        equipment,
        store,
        CaptureConfig(
            profile.name, settings.file_pattern, settings.resolved_timezone, profile.acceptance
        ),
        guider,
        on_light=light_saved,
        # The poller (built below: it watches the capture) holds the station's last reading.
        weather=lambda: equipment_state.recent_weather(),
    )
    autofocus = AutofocusService(engine, equipment, capture, settings.autofocus_root)
    clock = make_clock(settings)

    async def hand_off(run_ids: list[int]) -> None:
        """Finished runs close their nights; the nights' lights go to the processing worker."""
        sessions: set[int] = set()
        for run_id in run_ids:
            sessions.update(await asyncio.to_thread(close_sessions_of_run, engine, run_id))
        if settings.process_after_run:
            recipe = await asyncio.to_thread(recipe_of_runs, engine, run_ids)
            for session_id in sorted(sessions):
                job_id = await worker.submit(
                    ProcessingOptions(), session_id=session_id, recipe=recipe
                )
                log.info("runs %s: night %d queued as job %d", run_ids, session_id, job_id)

    async def run_finished(run_id: int, status: RunStatus) -> None:
        log.info("run %d ended %s", run_id, status)
        await hand_off([run_id])

    horizon = settings.horizon() or stored_horizon(settings)
    runs = RunManager(
        engine,
        _run_context_factory(
            engine,
            equipment,
            capture,
            autofocus,
            clock,
            guider,
            settings.resolved_solver_cache_dir,
            horizon,
            settings.scripts_dir,
        ),
        clock,
        on_finished=run_finished,
        scripts_dir=settings.scripts_dir,
    )
    safety = SafetySupervisor(
        engine,
        equipment,
        clock,
        runs,
        guider,
        SafetyConfig(
            poll_s=settings.safety_poll_s,
            safe_delay_s=settings.safe_delay_s,
            weather_limits=None if profile.weather is None else profile.weather.unsafe,
        ),
    )
    nights = NightDirector(engine, equipment, clock, runs, safety, hand_off, horizon)
    scheduler = NightScheduler(engine, equipment, nights)
    equipment_state = EquipmentState(engine, equipment, held_for_imaging(capture, guider))
    imaging = ImagingService(
        engine,
        equipment,
        capture,
        store,
        lambda: runs.active_run_id,
        settings.resolved_solver_cache_dir,
    )
    notifier = Notifier(engine, settings.webhook_urls, profile.name)
    await notifier.start()
    await worker.start()
    if live is not None:
        await live.start()
    faults.start()
    safety.start()
    equipment_state.start()
    watchdog = LoopWatchdog(on_stall=_stall_recorder(engine))
    watchdog.start()
    log.info(
        "equipment profile %r: %s", profile.name, ", ".join(d.role for d in equipment.devices())
    )
    try:
        yield Runtime(
            settings,
            engine,
            equipment,
            rig,
            store,
            capture,
            autofocus,
            clock,
            runs,
            guider,
            worker,
            safety,
            nights,
            scheduler,
            horizon,
            equipment_state,
            live,
            profile,
            imaging=imaging,
            watchdog=watchdog,
        )
    finally:
        watchdog.stop()
        await imaging.shutdown()
        await equipment_state.stop()
        scheduler.shutdown()
        await nights.shutdown()
        await safety.stop()
        await runs.shutdown()
        await worker.stop()
        if live is not None:
            await live.stop()
        if guider is not None:
            try:
                await guider.stop()
            except DeviceError as e:
                log.warning("the guider did not stop: %s", e)
            if isinstance(guider, Phd2Guider):
                await guider.close()
        try:
            async with asyncio.timeout(_DISCONNECT_TIMEOUT_S):
                await equipment.disconnect_all()
        except TimeoutError:
            log.warning("devices did not disconnect within %.0f s", _DISCONNECT_TIMEOUT_S)
        if rig is not None:
            await asyncio.to_thread(rig.stop)
        await faults.stop()
        await notifier.stop()
        database.dispose()


def _stall_recorder(engine: Engine) -> Callable[[Stall], None]:
    """Keeps each stall of the event loop as a warning event, with the stack that held it."""

    def record(stall: Stall) -> None:
        message = (
            f"the event loop was held for {stall.seconds:.1f} s: devices, runs and the API "
            "waited (the stack that held it is in the event's data)"
        )
        data = {"seconds": round(stall.seconds, 3), "where": stall.where}
        stored = asyncio.get_running_loop().run_in_executor(
            None, functools.partial(record_event, engine, "warning", "daemon", message, data)
        )
        stored.add_done_callback(_log_unstored)

    return record


def _log_unstored(stored: asyncio.Future[int]) -> None:
    if not stored.cancelled() and (error := stored.exception()) is not None:
        log.warning("a stall of the event loop was not stored: %s", error)


async def connect_and_prepare(equipment: Equipment, cache_dir: Path) -> None:
    """Connect every device, then build the plate solver's database for the main camera
    (once per camera and telescope, ~20 s), so the first centering does not wait for it."""
    await equipment.connect_all()
    try:
        await prepare_solver(equipment, cache_dir)
    except Exception:  # a missing solver costs centering, not the daemon
        log.exception("could not prepare the plate solver")


async def _plans_after_connect(runtime: Runtime, connecting: Awaitable[object] | None) -> None:
    """Once the mount has told the site: join a night a restart interrupted, and (on the
    system clock) arm every enabled plan at its next dusk."""
    if connecting is not None:
        await connecting
    try:
        await runtime.nights.join_unfinished()
        if isinstance(runtime.clock, SystemClock):
            runtime.scheduler.start()
            await runtime.scheduler.arm_all()
    except Exception:  # plans wait for the next start; the API stays up and says why
        log.exception("could not resume the night plans")
        await asyncio.to_thread(
            record_event, runtime.engine, "error", "plan", "could not resume the night plans"
        )


def create_app(settings: Settings) -> FastAPI:
    """Raises ValueError when the settings would expose the API without a token."""
    if (problem := settings.exposure_problem()) is not None:
        raise ValueError(problem)
    access = Access(settings.control_token, settings.read_token, settings.auth_required)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_log_redaction(access.token_values())
        async with open_runtime(settings) as runtime:
            app.state.runtime = runtime
            interrupted = await runtime.runs.mark_interrupted()
            if interrupted:
                await asyncio.to_thread(
                    record_event,
                    runtime.engine,
                    "warning",
                    "sequence",
                    f"run(s) {interrupted} were interrupted by a stop of the daemon",
                )
            connecting = (
                asyncio.create_task(
                    connect_and_prepare(runtime.equipment, settings.resolved_solver_cache_dir)
                )
                if settings.connect_on_start
                else None
            )
            # A night plan's runs are not resumed: the plan joins its night and chooses again.
            planned = await asyncio.to_thread(plan_run_ids, runtime.engine, interrupted)
            resumable = [r for r in interrupted if r not in planned]
            resuming = (
                asyncio.create_task(_resume_after_connect(runtime.runs, resumable[-1], connecting))
                if resumable and settings.resume_runs
                else None
            )
            planning = asyncio.create_task(_plans_after_connect(runtime, connecting))
            # In the background: the first sky computation a request makes is then quick.
            warming = asyncio.create_task(asyncio.to_thread(load_earth_orientation))
            # The first request would import anyio's thread pool on the event loop (0.4-0.8 s
            # on a busy machine, found by the loop watchdog): imported now, in a thread.
            await asyncio.to_thread(importlib.import_module, "anyio._backends._asyncio")
            documenting = asyncio.create_task(asyncio.to_thread(app.openapi))
            try:
                yield
            finally:
                for task in (documenting, warming, planning, resuming, connecting):
                    if task is not None and not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task

    # The API docs page serves Swagger UI from the installed package, not from a CDN: an
    # observatory often has no internet.
    app = FastAPIOffline(
        title="Nightowl",
        summary="Observatory automation daemon with an image-processing backend",
        lifespan=lifespan,
        dependencies=[Depends(require_access)],
    )
    app.state.access = access
    install_guards(app, settings)
    install_error_handlers(app)
    app.include_router(health_routes.router)
    app.include_router(auth_routes.router)
    app.include_router(equipment_routes.router)
    app.include_router(frame_routes.router)
    app.include_router(autofocus_routes.router)
    app.include_router(template_routes.router)
    app.include_router(run_routes.router)
    app.include_router(processing_routes.router)
    app.include_router(recipe_routes.router)
    app.include_router(plan_routes.router)
    app.include_router(plan_routes.safety_router)
    app.include_router(event_routes.router)
    app.include_router(live_routes.router)
    app.include_router(target_routes.router)
    app.include_router(imaging_routes.router)
    app.include_router(profile_routes.router)
    install_web(app)
    install_openapi(app)
    return app
