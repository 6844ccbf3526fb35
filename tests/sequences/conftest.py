"""Sequence tests: the runner with the daemon's real sinks, a real SQLite file, the simulators."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from daemon.autofocus import AutofocusService
from daemon.capture import CaptureConfig, CaptureService
from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.db.models import Event, Frame, SequenceRun
from daemon.naming import DEFAULT_PATTERN
from daemon.runs import CaptureSink, RunEvents, RunManager
from daemon.store import FrameStore
from drivers.base import Guider, PierSide
from drivers.equipment import Equipment
from drivers.errors import DeviceError
from drivers.guider import GuiderConfig, NativeGuider, calibration_from_guide_rates
from sequences.clock import SimulatedClock
from sequences.context import RunContext
from sequences.document import parse_document
from sequences.platesolve import frame_solver, prepare_solver
from sequences.state import RunState, RunStatus
from sequences.validation import site_of
from tests.drivers.test_alpaca_camera import M31
from tests.drivers.test_guider import EAST_ANGLE_DEG, NORTH_ANGLE_DEG, PIXEL_SCALE_ARCSEC_PX

# The simulated night starts when M31 is high at the simulator's site (47 N, 8 E).
NIGHT_START = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)
M31_TARGET = {
    "kind": "target",
    "target_name": "M31",
    "coordinates": {"ra_hours": M31.ra_hours, "dec_deg": M31.dec_deg},
}


@dataclass
class Harness:
    engine: Engine
    runs: RunManager
    clock: SimulatedClock
    simulator_url: str
    scripts_dir: Path
    """The run_command folder of the runs (empty at first)."""

    def script(self, name: str, body: str) -> str:
        """An executable shell script `name` in the scripts folder, for run_command."""
        path = self.scripts_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        path.chmod(0o755)
        return name

    def frames(self, run_id: int) -> list[Frame]:
        with Session(self.engine) as db:
            return list(db.scalars(select(Frame).where(Frame.run_id == run_id).order_by(Frame.id)))

    def events(self, run_id: int) -> list[str]:
        with Session(self.engine) as db:
            rows = db.scalars(select(Event).where(Event.run_id == run_id).order_by(Event.id))
            return [e.message for e in rows]

    def state(self, run_id: int) -> RunState:
        with Session(self.engine) as db:
            row = db.get(SequenceRun, run_id)
            assert row is not None
            return RunState.from_json(row.state)

    async def run(
        self, document: dict[str, Any], timeout_s: float = 120.0
    ) -> tuple[int, RunStatus]:
        run_id = await self.runs.start(parse_document(document))
        return run_id, await asyncio.wait_for(self.runs.wait(run_id), timeout_s)

    async def until(self, condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert self.runs.active_run_id is not None, "the run ended early"
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.2)

    def set_safe(self, safe: bool) -> None:
        httpx.put(
            f"{self.simulator_url}/api/v1/safetymonitor/0/issafe",
            data={"IsSafe": str(safe), "ClientTransactionID": "1", "ClientID": "1"},
        ).raise_for_status()


@pytest.fixture
def night_start() -> datetime:
    return NIGHT_START


@contextlib.asynccontextmanager
async def open_harness(
    folder: Path,
    equipment: Equipment,
    simulator_url: str,
    catalog_cache: Path,
    night_start: datetime,
    guider: Guider | None = None,
) -> AsyncIterator[Harness]:
    """The daemon's run manager over `equipment`, with its database and frames in `folder`;
    the native guider unless `guider` is given."""
    engine = make_engine(f"sqlite:///{folder / 'nightowl.db'}")
    upgrade(engine)
    if guider is None:
        assert equipment.guide_camera is not None
        assert equipment.mount is not None
        guider = NativeGuider(equipment.guide_camera, equipment.mount)
    capture = CaptureService(
        engine,
        equipment,
        FrameStore(folder / "frames"),
        CaptureConfig("simulators", DEFAULT_PATTERN, UTC),
        guider,
    )
    autofocus = AutofocusService(engine, equipment, capture, folder / "autofocus")
    clock = SimulatedClock(night_start)
    sink = CaptureSink(capture, engine)
    scripts_dir = folder / "scripts"
    scripts_dir.mkdir(exist_ok=True)
    await prepare_solver(equipment, catalog_cache)
    solver = frame_solver(equipment, catalog_cache)

    def context(run_id: int, events: RunEvents) -> RunContext:
        return RunContext(
            equipment=equipment,
            clock=clock,
            frames=sink,
            events=events,
            run_id=run_id,
            site=site_of(equipment),
            guider=guider,
            solve=solver,
            autofocus=autofocus,
            scripts_dir=scripts_dir,
        )

    runs = RunManager(engine, context, clock, scripts_dir=scripts_dir)
    harness = Harness(engine, runs, clock, simulator_url, scripts_dir)
    harness.set_safe(True)
    try:
        yield harness
    finally:
        await runs.shutdown()
        await guider.stop()
        engine.dispose()
        await restore_observatory(equipment)


async def restore_observatory(equipment: Equipment) -> None:
    """What a run may change that later tests' frames depend on: the dust cover back open, the
    panel off, the rotator back at 0. A test that stopped its own simulator has nothing to
    restore (its devices no longer answer)."""
    with contextlib.suppress(DeviceError):
        if equipment.cover_calibrator is not None:
            await equipment.cover_calibrator.calibrator_off()
            await equipment.cover_calibrator.open_cover()
        if equipment.rotator is not None:
            await equipment.rotator.move_mechanical(0.0)


@pytest.fixture
async def harness(
    tmp_path: Path,
    equipment: Equipment,
    simulator_url: str,
    catalog_cache: Path,
    night_start: datetime,
) -> AsyncIterator[Harness]:
    async with open_harness(tmp_path, equipment, simulator_url, catalog_cache, night_start) as h:
        yield h
        h.set_safe(True)


@pytest.fixture
async def calibrated_harness(
    tmp_path: Path,
    equipment: Equipment,
    simulator_url: str,
    catalog_cache: Path,
    night_start: datetime,
) -> AsyncIterator[Harness]:
    """The harness with a guider that keeps a calibration from an earlier night, as NINA's
    StartGuiding without ForceCalibration expects (measuring one takes ~50 s here; the guider
    tests measure it). The calibration follows from the simulator's guide rates and its guide
    camera's sky orientation."""
    assert equipment.guide_camera is not None
    assert equipment.mount is not None
    status = await equipment.mount.status()
    assert status.guide_rate_ra_deg_s is not None
    assert status.guide_rate_dec_deg_s is not None
    kept = calibration_from_guide_rates(
        north_angle_deg=NORTH_ANGLE_DEG,
        east_angle_deg=EAST_ANGLE_DEG,
        guide_rate_ra_deg_s=status.guide_rate_ra_deg_s,
        guide_rate_dec_deg_s=status.guide_rate_dec_deg_s,
        pixel_scale_arcsec_px=PIXEL_SCALE_ARCSEC_PX,
        declination_deg=M31.dec_deg,
        pier_side=PierSide.UNKNOWN,
    )
    guider = NativeGuider(
        equipment.guide_camera,
        equipment.mount,
        GuiderConfig(exposure_s=0.5, dither_seed=4),
        calibrations={PierSide.UNKNOWN: kept},
    )
    async with open_harness(
        tmp_path, equipment, simulator_url, catalog_cache, night_start, guider
    ) as harness:
        yield harness
        harness.set_safe(True)
