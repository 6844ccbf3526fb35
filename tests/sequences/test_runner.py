"""The sequence runner against the real simulator, a real SQLite file and the daemon's sinks."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from daemon.db.models import SequenceRun
from drivers.base import CameraState
from drivers.equipment import Equipment
from sequences.clock import SystemClock
from sequences.context import RunContext
from sequences.document import SequenceDocument, parse_document
from sequences.model import Status
from sequences.runner import SequenceRunner
from sequences.state import RunState, RunStatus
from tests.sequences.conftest import M31_TARGET, Harness


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


async def test_an_abort_while_the_run_starts_is_kept(harness: Harness) -> None:
    """A night stopped at the moment its run starts: the abort comes before the runner's
    main areas exist, and must still stop them (the end area runs)."""
    run_id = await harness.runs.start(
        parse_document(
            {
                "name": "stopped at once",
                "targets": [{**M31_TARGET, "items": [lights(5, exposure_s=2.0)]}],
                "end": {"items": [{"kind": "park"}]},
            }
        )
    )
    harness.runs.control(run_id, "abort")

    status = await asyncio.wait_for(harness.runs.wait(run_id), 60)

    assert status is RunStatus.ABORTED
    assert harness.frames(run_id) == []
    assert "park done" in harness.events(run_id)


async def test_error_behaviours_retry_then_skip_continue_or_go_to_the_end(
    harness: Harness,
) -> None:
    fail = {"kind": "run_command", "argv": [harness.script("fail", "exit 1")], "attempts": 2}
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
    assert events.count("fail exited with 1") == 6


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


async def camera_idle(equipment: Equipment, timeout_s: float = 30.0) -> None:
    """Wait for the camera to settle after a stop (the simulator may end an aborted exposure
    a moment after its abort answered)."""
    camera = equipment.camera
    assert camera is not None
    deadline = time.monotonic() + timeout_s
    while (await camera.status()).state is not CameraState.IDLE:
        assert time.monotonic() < deadline, "the camera did not come back to idle"
        await asyncio.sleep(0.1)


async def test_an_interrupted_run_resumes_with_exactly_the_missing_frames(
    harness: Harness, equipment: Equipment
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
    await camera_idle(equipment)  # as after a restart, which takes longer than the abort
    taken = len(harness.frames(run_id))
    assert 2 <= taken < 5
    assert harness.state(run_id).status is RunStatus.INTERRUPTED

    await harness.runs.resume(run_id)
    assert await asyncio.wait_for(harness.runs.wait(run_id), 60) is RunStatus.COMPLETED
    frames = harness.frames(run_id)
    assert len(frames) == 5
    assert len({f.path for f in frames}) == 5


async def test_a_run_killed_mid_exposures_resumes_from_its_last_saved_state(
    harness: Harness, equipment: Equipment
) -> None:
    """As after kill -9: the run's row holds the state last saved before the frames (no
    counters written since), yet the resume takes exactly the missing ones."""
    document = parse_document(
        {
            "name": "killed",
            "start": {"items": [{"kind": "unpark"}]},
            "targets": [{**M31_TARGET, "items": [{"kind": "slew"}, lights(5, 1.0)]}],
        }
    )
    run_id = await harness.runs.start(document)
    await harness.until(lambda: len(harness.frames(run_id)) >= 2)
    with Session(harness.engine) as db:
        row = db.get(SequenceRun, run_id)
        assert row is not None
        saved_state = row.state  # what a kill at this moment leaves behind
    await harness.runs.shutdown()
    await camera_idle(equipment)  # as after a restart, which takes longer than the abort
    taken = len(harness.frames(run_id))
    assert 2 <= taken < 5
    with Session(harness.engine) as db, db.begin():
        row = db.get(SequenceRun, run_id)
        assert row is not None
        row.state = saved_state

    await harness.runs.resume(run_id)
    assert await asyncio.wait_for(harness.runs.wait(run_id), 60) is RunStatus.COMPLETED
    assert len(harness.frames(run_id)) == 5, " / ".join(harness.events(run_id))


async def test_a_run_a_crash_left_pending_becomes_interrupted_and_resumes(
    harness: Harness,
) -> None:
    """Killed between the run's row and its first journal write: at the next start it is
    interrupted like a running one (not pending for ever), and a resume runs it whole."""
    document = parse_document({"name": "never started", "targets": [{**M31_TARGET, "items": []}]})
    with Session(harness.engine) as db, db.begin():
        row = SequenceRun(
            name=document.name,
            document=document.model_dump(mode="json"),
            state=RunState().to_json(),
            status=RunStatus.PENDING.value,
        )
        db.add(row)
        db.flush()
        run_id = row.id
    assert run_id in await harness.runs.mark_interrupted()
    assert harness.state(run_id).status is RunStatus.INTERRUPTED

    await harness.runs.resume(run_id)
    assert await asyncio.wait_for(harness.runs.wait(run_id), 60) is RunStatus.COMPLETED


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


async def test_the_end_area_disconnects_all_but_the_safety_monitor(
    harness: Harness, equipment: Equipment
) -> None:
    try:
        _, status = await harness.run(
            {"name": "close up", "end": {"items": [{"kind": "disconnect_equipment"}]}}
        )
        assert status is RunStatus.COMPLETED
        connected = {d.role: d.connected for d in equipment.devices()}
        assert connected.pop("safety_monitor") is True
        assert not any(connected.values()), connected
    finally:
        assert not any((await equipment.connect_all()).values())


async def test_a_finished_run_keeps_the_state_of_every_node_of_its_last_pass(
    harness: Harness,
) -> None:
    run_id, status = await harness.run(
        {
            "name": "one pass",
            "targets": [
                {
                    **M31_TARGET,
                    "items": [
                        {
                            "kind": "sequential",
                            "conditions": [{"kind": "loop_count", "count": 2}],
                            "items": [lights(1), {"kind": "annotation", "text": "pass"}],
                        }
                    ],
                }
            ],
        }
    )
    assert status is RunStatus.COMPLETED
    assert len(harness.frames(run_id)) == 2
    nodes = harness.state(run_id).nodes
    exposures = nodes["targets[0].items[0].items[0]"]
    assert exposures.status is Status.SUCCEEDED
    assert exposures.counters["done"] == 1  # the last pass's count, not a pending 0
    assert nodes["targets[0].items[0].items[1]"].status is Status.SUCCEEDED
    assert harness.state(run_id).iterations["targets[0].items[0]"] == 2


async def test_a_pause_waits_for_the_exposure_but_stops_a_wait_at_once(harness: Harness) -> None:
    harness.set_safe(False)
    run_id = await harness.runs.start(
        parse_document(
            {
                "name": "pauses",
                "targets": [
                    {
                        **M31_TARGET,
                        "items": [
                            lights(2, 2.0),
                            {"kind": "wait_until_safe"},
                            {"kind": "annotation", "text": "after the wait"},
                        ],
                    }
                ],
            }
        )
    )
    await harness.until(lambda: harness.state(run_id).current == "targets[0].items[0]")
    await harness.runs.request(run_id, "pause")
    state = harness.state(run_id)
    assert state.pause_requested
    assert state.status is RunStatus.RUNNING
    await harness.until(lambda: harness.state(run_id).status is RunStatus.PAUSED)
    assert not harness.state(run_id).pause_requested
    assert len(harness.frames(run_id)) < 2  # paused before the second exposure

    await harness.runs.request(run_id, "resume")
    await harness.until(lambda: harness.state(run_id).current == "targets[0].items[1]")
    # During the wait: at once. The wait itself cannot end while the monitor says unsafe, so
    # any pause that comes is the pause cutting it short.
    await harness.runs.request(run_id, "pause")
    await harness.until(lambda: harness.state(run_id).status is RunStatus.PAUSED)
    assert "paused during wait_until_safe" in harness.events(run_id)

    harness.set_safe(True)
    await harness.runs.request(run_id, "resume")
    assert await asyncio.wait_for(harness.runs.wait(run_id), 30) is RunStatus.COMPLETED
    wait = harness.state(run_id).nodes["targets[0].items[1]"]
    assert (wait.status, wait.attempts) == (Status.SUCCEEDED, 1)
    events = harness.events(run_id)
    assert events.index("paused during wait_until_safe") < events.index("after the wait")


class _PauseWhenStarted:
    """An event sink that asks the runner to pause the moment `label` reports it started:
    after the run state names it current, before its task exists."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.runner: SequenceRunner | None = None
        self.messages: list[str] = []

    async def emit(self, level: str, message: str, **_: object) -> None:
        self.messages.append(message)
        if message == f"{self.label} started" and self.runner is not None:
            self.runner.pause()


async def test_a_pause_asked_as_a_wait_starts_pauses_it() -> None:
    """The wait lasts an hour of the real clock: a pause that does not reach it is lost."""
    events = _PauseWhenStarted("wait_for_time")
    ctx = RunContext(
        equipment=Equipment("none"),
        clock=SystemClock(),
        frames=None,  # type: ignore[arg-type]  # the document takes no frames
        events=events,
    )
    an_hour_on = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    document = parse_document(
        {"name": "waits", "start": {"items": [{"kind": "wait_for_time", "at": an_hour_on}]}}
    )
    runner = SequenceRunner(document, ctx, _Journal(), RunState())
    events.runner = runner
    run = asyncio.create_task(runner.run())
    try:
        for _ in range(100):
            if runner.state.status is RunStatus.PAUSED:
                break
            await asyncio.sleep(0.05)
        assert runner.state.status is RunStatus.PAUSED, events.messages
        assert "paused during wait_for_time" in events.messages
    finally:
        runner.abort()
        status = await asyncio.wait_for(run, 30)
    assert status is RunStatus.ABORTED
    assert runner.state.nodes["start.items[0]"].status is Status.CANCELLED


class _Journal:
    async def save(self, state: RunState) -> None:
        pass


async def test_an_abort_during_a_wait_leaves_it_cancelled(harness: Harness) -> None:
    harness.set_safe(False)
    run_id = await harness.runs.start(
        parse_document(
            {
                "name": "aborted wait",
                "targets": [
                    {
                        "kind": "sequential",
                        "items": [
                            {"kind": "wait_until_safe"},
                            {"kind": "annotation", "text": "never"},
                        ],
                    }
                ],
            }
        )
    )
    await harness.until(lambda: harness.state(run_id).current == "targets[0].items[0]")
    harness.runs.control(run_id, "abort")
    assert await asyncio.wait_for(harness.runs.wait(run_id), 30) is RunStatus.ABORTED
    nodes = harness.state(run_id).nodes
    assert nodes["targets[0].items[0]"].status is Status.CANCELLED
    assert nodes["targets[0]"].status is Status.CANCELLED
    assert "targets[0].items[1]" not in nodes  # never reached
