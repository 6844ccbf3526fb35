"""The sequence runner against the real simulator, a real SQLite file and the daemon's sinks."""

from __future__ import annotations

import asyncio
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

from daemon.capture import CaptureConfig, CaptureService
from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.db.models import Event, Frame, SequenceRun
from daemon.naming import DEFAULT_PATTERN
from daemon.runs import CaptureSink, RunEvents, RunManager
from daemon.store import FrameStore
from drivers.equipment import Equipment
from sequences.clock import SimulatedClock
from sequences.context import RunContext
from sequences.document import SequenceDocument, parse_document
from sequences.model import Status
from sequences.state import RunState, RunStatus
from sequences.validation import site_of
from tests.drivers.test_alpaca_camera import M31

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

    async def run(self, document: dict[str, Any]) -> tuple[int, RunStatus]:
        run_id = await self.runs.start(parse_document(document))
        return run_id, await asyncio.wait_for(self.runs.wait(run_id), 120)

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
async def harness(
    tmp_path: Path, equipment: Equipment, simulator_url: str
) -> AsyncIterator[Harness]:
    engine = make_engine(f"sqlite:///{tmp_path / 'nightowl.db'}")
    upgrade(engine)
    capture = CaptureService(
        engine,
        equipment,
        FrameStore(tmp_path / "frames"),
        CaptureConfig("simulators", DEFAULT_PATTERN, UTC),
    )
    clock = SimulatedClock(NIGHT_START)
    sink = CaptureSink(capture, engine)

    def context(run_id: int, events: RunEvents) -> RunContext:
        return RunContext(
            equipment=equipment,
            clock=clock,
            frames=sink,
            events=events,
            run_id=run_id,
            site=site_of(equipment),
        )

    runs = RunManager(engine, context, clock)
    harness = Harness(engine, runs, clock, simulator_url)
    harness.set_safe(True)
    yield harness
    await runs.shutdown()
    harness.set_safe(True)
    engine.dispose()


def lights(count: int, exposure_s: float = 0.5, **extra: Any) -> dict[str, Any]:
    return {"kind": "take_exposures", "count": count, "exposure_s": exposure_s, **extra}


async def test_a_night_runs_start_targets_end_and_records_its_frames(harness: Harness) -> None:
    run_id, status = await harness.run(
        {
            "name": "short night",
            "start": {"items": [{"kind": "unpark"}, {"kind": "set_tracking", "on": True}]},
            "targets": [{**M31_TARGET, "items": [{"kind": "slew"}, lights(3, filter_name="R")]}],
            "end": {"items": [{"kind": "park"}]},
        }
    )
    assert status is RunStatus.COMPLETED
    frames = harness.frames(run_id)
    assert [(f.frame_type.value, f.filter_name) for f in frames] == [("LIGHT", "R")] * 3
    assert {f.node_path for f in frames} == {"targets[0].items[1]"}
    assert all(f.star_count and f.star_count > 10 for f in frames)  # pointed at M31
    events = harness.events(run_id)
    order = [
        next(i for i, e in enumerate(events) if e.startswith(p))
        for p in ("unpark started", "slew started", "take_exposures started", "park started")
    ]
    assert order == sorted(order)
    state = harness.state(run_id)
    assert state.status is RunStatus.COMPLETED
    assert all(n.status is Status.SUCCEEDED for n in state.nodes.values())


async def test_error_behaviours_retry_then_skip_continue_or_go_to_the_end(
    harness: Harness,
) -> None:
    fail = {"kind": "run_command", "argv": ["false"], "attempts": 2}
    note = {"kind": "annotation", "text": "after the failure"}
    run_id, status = await harness.run(
        {
            "name": "failures",
            "targets": [
                {"kind": "sequential", "items": [fail, note]},
                {"kind": "sequential", "items": [{**fail, "on_error": "continue"}, note]},
                {"kind": "sequential", "items": [{**fail, "on_error": "skip_to_end"}, note]},
                {"kind": "sequential", "items": [note]},
            ],
            "end": {"items": [{"kind": "annotation", "text": "end area"}]},
        }
    )
    assert status is RunStatus.COMPLETED
    nodes = harness.state(run_id).nodes
    assert nodes["targets[0].items[0]"].attempts == 2
    assert nodes["targets[0].items[0]"].status is Status.FAILED
    assert "targets[0].items[1]" not in nodes  # skipped with the rest of its container
    assert nodes["targets[1].items[1]"].status is Status.SUCCEEDED  # continue
    assert "targets[2].items[1]" not in nodes
    assert "targets[3]" not in nodes
    assert nodes["end.items[0]"].status is Status.SUCCEEDED
    events = harness.events(run_id)
    assert sum("false exited with 1" in e for e in events) == 6


async def test_loops_and_waits_run_on_the_simulated_clock(harness: Harness) -> None:
    started = time.monotonic()
    run_id, status = await harness.run(
        {
            "name": "loops",
            "targets": [
                {
                    "kind": "sequential",
                    "conditions": [{"kind": "loop_count", "count": 3}],
                    "items": [{"kind": "annotation", "text": "pass"}],
                },
                {
                    "kind": "sequential",
                    "conditions": [{"kind": "loop_until_time", "until": "23:00"}],
                    "items": [
                        {"kind": "wait_for_time", "at": "21:00"},
                        {"kind": "annotation", "text": "hour"},
                    ],
                },
            ],
        }
    )
    assert status is RunStatus.COMPLETED
    events = harness.events(run_id)
    assert events.count("pass") == 3
    # Pass 1 waits until 21:00 and notes it; pass 2 waits for tomorrow's 21:00, and the
    # condition (until 23:00 today), checked between items, ends the loop before the note.
    assert events.count("hour") == 1
    assert harness.clock.now() > datetime(2026, 11, 23, 20, 59, tzinfo=UTC)
    assert time.monotonic() - started < 20


async def test_an_interrupted_run_resumes_with_exactly_the_missing_frames(
    harness: Harness,
) -> None:
    document = parse_document(
        {
            "name": "resumable",
            "start": {"items": [{"kind": "unpark"}]},
            "targets": [{**M31_TARGET, "items": [{"kind": "slew"}, lights(5, 1.0)]}],
        }
    )
    run_id = await harness.runs.start(document)
    await harness.until(lambda: len(harness.frames(run_id)) >= 2)
    await harness.runs.shutdown()  # as at a daemon stop: no end area, resumable
    taken = len(harness.frames(run_id))
    assert 2 <= taken < 5
    assert harness.state(run_id).status is RunStatus.INTERRUPTED

    await harness.runs.resume(run_id)
    assert await asyncio.wait_for(harness.runs.wait(run_id), 60) is RunStatus.COMPLETED
    frames = harness.frames(run_id)
    assert len(frames) == 5
    assert len({f.path for f in frames}) == 5


async def test_unsafe_mid_exposure_aborts_it_and_parks_within_ten_seconds(
    harness: Harness, equipment: Equipment
) -> None:
    assert equipment.mount is not None
    document: SequenceDocument = parse_document(
        {
            "name": "safety",
            "start": {"items": [{"kind": "unpark"}]},
            "targets": [
                {
                    **M31_TARGET,
                    "conditions": [{"kind": "while_safe"}],
                    "items": [{"kind": "slew"}, lights(1, 60.0)],
                }
            ],
            "end": {"items": [{"kind": "park"}]},
        }
    )
    run_id = await harness.runs.start(document)
    await harness.until(lambda: harness.state(run_id).current == "targets[0].items[1]")
    await asyncio.sleep(2.0)  # the 60 s exposure is running
    harness.set_safe(False)
    unsafe_at = time.monotonic()
    status = await asyncio.wait_for(harness.runs.wait(run_id), 30)
    parked_after = time.monotonic() - unsafe_at
    assert status is RunStatus.COMPLETED
    assert (await equipment.mount.status()).at_park
    assert parked_after < 10
    assert harness.frames(run_id) == []  # the aborted exposure is not stored
    assert any("while_safe no longer holds" in e for e in harness.events(run_id))
