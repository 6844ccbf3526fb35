"""Two daemons (one per telescope) share one PostgreSQL database: each keeps its own frames,
nights, runs, processing jobs, night plans and alerts, and a restart of one leaves the other's
alone."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from daemon.db.engine import make_engine, owned_engine
from daemon.db.migrate import upgrade
from daemon.db.models import Event, PlanNight, PlanNightState, ProcessingJob, SequenceRun
from daemon.events import record_event
from daemon.nights import NightDirector
from daemon.plans import save_plan
from daemon.runs import RunEvents, RunManager
from daemon.safety import SafetySupervisor
from daemon.scheduler import NightScheduler, job_table
from daemon.simulator.rig import SimulatorRig, simulator_profile
from daemon.states import JobState
from daemon.templates import save_template
from drivers.equipment import Equipment
from sequences.clock import SystemClock
from sequences.context import RunContext
from sequences.document import parse_document
from sequences.instructions.mount import Coordinates
from sequences.plan import Goal, NightPlan, PlanTarget
from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for
from tests.daemon.test_nights import TEMPLATE, m31_plan
from tests.daemon.test_notifications import webhook_receiver
from tests.pg import PostgresServer

PROFILES = ("east pier", "west pier")
# File names without a time: both telescopes' first dark gets the same relative path.
PATTERN = "$$IMAGETYPE$$/$$EXPOSURETIME$$s_$$FRAMENR$$"
Shared = tuple[str, dict[str, Path], SimulatorRig]
"""The database URL, each profile's data folder, the module's simulator rig."""


def connected(body: dict[str, Any]) -> bool:
    return all(d["connected"] for d in body["devices"] if d["role"] == "camera")


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path, postgres: PostgresServer
) -> Iterator[Shared]:
    """The database URL, each profile's data folder (its profile file inside), one simulator
    rig of the module's own: a daemon's stop disconnects the devices it used."""
    url = postgres.create_database("shared")
    with SimulatorRig(run_dir=tmp_path_factory.mktemp("rig"), cache_dir=catalog_cache) as rig:
        folders = {}
        for name in PROFILES:
            folder = tmp_path_factory.mktemp(name.replace(" ", "-"))
            profile = simulator_profile(rig.url).model_dump(mode="json", exclude_defaults=True)
            (folder / "profile.yaml").write_text(json.dumps({**profile, "name": name}))
            folders[name] = folder
        yield url, folders, rig


def start(
    stack: ExitStack, shared: Shared, catalog_cache: Path, name: str, **env: str
) -> RunningDaemon:
    url, folders, _ = shared
    return stack.enter_context(
        running_daemon(
            folders[name],
            catalog_cache,
            NIGHTOWL_DATABASE_URL=url,
            NIGHTOWL_EQUIPMENT_PROFILE=str(folders[name] / "profile.yaml"),
            NIGHTOWL_RESUME_RUNS="false",
            NIGHTOWL_PROCESS_AFTER_RUN="false",
            NIGHTOWL_FILE_PATTERN=PATTERN,
            **env,
        )
    )


def dark(daemon: RunningDaemon) -> dict[str, Any]:
    wait_for(f"{daemon.url}/api/equipment", connected, timeout_s=60)
    reply = httpx.post(
        f"{daemon.url}/api/capture", json={"frame_type": "DARK", "exposure_s": 0.2}, timeout=120
    )
    assert reply.status_code == 201, reply.text
    frame: dict[str, Any] = reply.json()[0]
    return frame


def leftovers(engine: Engine, owner: str, folder: Path) -> tuple[int, int, int]:
    """A run and a processing job as a daemon of `owner` killed mid-way leaves them (running),
    and a queued job of an empty folder (it fails at once when its daemon takes it)."""
    empty = folder / "empty"
    empty.mkdir(exist_ok=True)
    with Session(owned_engine(engine, owner)) as db, db.begin():
        run = SequenceRun(name="night", document={}, state={"status": "running"}, status="running")
        running, queued = (
            ProcessingJob(state=state, folder=str(empty), out_dir=str(folder / state), config={})
            for state in (JobState.RUNNING, JobState.QUEUED)
        )
        db.add_all([run, running, queued])
        db.flush()
        return run.id, running.id, queued.id


def unfinished_night(engine: Engine, owner: str, template_id: int) -> tuple[int, int]:
    """A plan of `owner` (not enabled: nothing arms it) and a night of it a stop left
    running, whose dawn has passed: the plan's daemon closes it when it starts."""
    owned = owned_engine(engine, owner)
    plan_id = save_plan(owned, m31_plan(f"{owner}'s plan", template_id, 5), False).id
    dawn = datetime.now(UTC) - timedelta(hours=1)
    with Session(owned) as db, db.begin():
        night = PlanNight(
            plan_id=plan_id,
            state=PlanNightState.RUNNING,
            dusk=dawn - timedelta(hours=8),
            dawn=dawn,
        )
        db.add(night)
        db.flush()
        return plan_id, night.id


def test_two_daemons_share_one_postgresql_and_keep_to_their_own(
    shared: Shared, catalog_cache: Path
) -> None:
    url, folders, _ = shared
    engine = make_engine(url)
    east_name, west_name = PROFILES
    with ExitStack() as west_stack:
        with ExitStack() as east_stack:
            east = start(east_stack, shared, catalog_cache, east_name)
            west = start(west_stack, shared, catalog_cache, west_name)
            east_frame, west_frame = dark(east), dark(west)

            # The same relative path, each file under its own daemon's frames root.
            assert east_frame["path"] == west_frame["path"]
            assert east_frame["session_id"] != west_frame["session_id"]
            for daemon, frame in ((east, east_frame), (west, west_frame)):
                fits = httpx.get(f"{daemon.url}/api/frames/{frame['id']}/fits", timeout=30)
                assert fits.status_code == 200
                assert (daemon.data_dir / "frames" / frame["path"]).is_file()
            # East serves none of west's files (the same relative path is east's own file).
            for part in ("fits", "preview.jpg", "histogram", "stars", "header"):
                refused = httpx.get(f"{east.url}/api/frames/{west_frame['id']}/{part}", timeout=30)
                assert refused.status_code == 409, (part, refused.text)
                assert repr(west_name) in refused.json()["detail"]
            record = httpx.get(f"{east.url}/api/frames/{west_frame['id']}", timeout=30)
            assert record.json()["path"] == west_frame["path"]  # the record is plain metadata
            # West's dark is the newer; east's latest frame and nights are its own.
            latest = httpx.get(f"{east.url}/api/frames/latest", timeout=30).json()
            assert latest["id"] == east_frame["id"]
            sessions = httpx.get(f"{east.url}/api/sessions", timeout=30).json()
            assert [s["id"] for s in sessions] == [east_frame["session_id"]]
            every = {"all_profiles": "true"}
            sessions = httpx.get(f"{east.url}/api/sessions", params=every, timeout=30).json()
            owners = {s["id"]: s["profile"] for s in sessions}
            assert owners[east_frame["session_id"]] == east_name
            assert owners[west_frame["session_id"]] == west_name
            west_night = f"{east.url}/api/sessions/{west_frame['session_id']}/frames"
            refused = httpx.get(west_night, timeout=30)
            assert refused.status_code == 409
            assert repr(west_name) in refused.json()["detail"]
            listed = httpx.get(west_night, params=every, timeout=30).json()
            assert [f["id"] for f in listed["items"]] == [west_frame["id"]]

            east_left = leftovers(engine, east_name, folders[east_name])
            west_left = leftovers(engine, west_name, folders[west_name])
            template_id = save_template(engine, parse_document(TEMPLATE)).id
            east_plan, east_night = unfinished_night(engine, east_name, template_id)
            west_plan, west_night_id = unfinished_night(engine, west_name, template_id)
        # East was stopped; it comes back (its devices need not connect) while west runs on.
        with ExitStack() as east_stack, webhook_receiver() as receiver:
            east = start(
                east_stack,
                shared,
                catalog_cache,
                east_name,
                NIGHTOWL_CONNECT_ON_START="false",
                NIGHTOWL_WEBHOOK_URLS=receiver.url,
            )
            # Each daemon sends its own alerts only: west's, recorded first, never reaches
            # east's webhook (east reads the alerts in id order).
            west_alert, east_alert = (
                record_event(owned_engine(engine, name), "alert", "safety", f"{name}: roof")
                for name in (west_name, east_name)
            )
            started = datetime.now(UTC)
            while east_alert not in [b["id"] for b in receiver.bodies()]:
                assert datetime.now(UTC) - started < timedelta(seconds=30), receiver.bodies()
                time.sleep(0.2)
            assert west_alert not in [b["id"] for b in receiver.bodies()]
            assert {b["profile"] for b in receiver.bodies()} == {east_name}
            events = httpx.get(
                f"{east.url}/api/events", params={"after_id": west_alert - 1}, timeout=30
            ).json()
            shown = {e["id"]: e["owner"] for e in events}
            assert (shown[west_alert], shown[east_alert]) == (west_name, east_name)

            runs = httpx.get(f"{east.url}/api/runs", timeout=30).json()
            status = {r["id"]: r["status"] for r in runs}
            assert status[east_left[0]] == "interrupted"
            assert status[west_left[0]] == "running"  # west's run is west's to mark
            owner = {r["id"]: r["owner"] for r in runs}
            assert (owner[east_left[0]], owner[west_left[0]]) == (east_name, west_name)

            # East closes its own night left running (its dawn passed), not west's.
            wait_for(
                f"{east.url}/api/plans/{east_plan}/nights",
                lambda nights: [(n["id"], n["state"]) for n in nights] == [(east_night, "stopped")],
                timeout_s=60,
            )
            nights = httpx.get(f"{east.url}/api/plans/{west_plan}/nights", timeout=30).json()
            assert [(n["id"], n["state"]) for n in nights] == [(west_night_id, "running")]
            plans = httpx.get(f"{east.url}/api/plans", timeout=30).json()
            owned = {p["id"]: p["owner"] for p in plans}
            assert (owned[east_plan], owned[west_plan]) == (east_name, west_name)
            refused = httpx.post(f"{east.url}/api/plans/{west_plan}/start", timeout=30)
            assert refused.status_code == 409
            assert repr(west_name) in refused.json()["detail"]
            assert "start it on that daemon" in refused.json()["detail"]

            for job_id in east_left[1:]:  # requeued, then taken by east: nothing to stack
                job = wait_for(
                    f"{east.url}/api/processing/jobs/{job_id}",
                    lambda j: j["state"] == "failed",
                    timeout_s=60,
                )
                assert "no light frames" in str(job["error"])
                assert job["owner"] == east_name
            with Session(engine) as db:
                west_running = db.get(ProcessingJob, west_left[1])
                assert west_running is not None
                assert west_running.state is JobState.RUNNING  # west's to requeue
                by_east = db.scalars(select(Event).where(Event.owner == east_name)).all()
            # East took none of west's jobs and re-registered none of west's frame files.
            assert not [e for e in by_east if e.data.get("job_id") in west_left[1:]]
            assert not [e for e in by_east if "re-registered" in e.message]
            frames = httpx.get(
                f"{east.url}/api/sessions/{east_frame['session_id']}/frames", timeout=30
            ).json()
            assert [f["id"] for f in frames["items"]] == [east_frame["id"]]
            # West's night is on west's disk: east refuses to process it.
            refused = httpx.post(
                f"{east.url}/api/processing/jobs",
                json={"session_id": west_frame["session_id"]},
                timeout=30,
            )
            assert refused.status_code == 422, refused.text
            assert refused.json()["detail"][0]["loc"] == ["body", "session_id"]
            assert west_name in refused.json()["detail"][0]["msg"]
    engine.dispose()


async def test_each_daemon_arms_only_its_own_plans_in_a_job_table_of_its_own(
    postgres: PostgresServer, equipment: Equipment
) -> None:
    """APScheduler fires every due job of its table: a plan saved on one daemon is armed in
    that daemon's table only, and the other daemon neither arms nor drops it."""
    plain = make_engine(postgres.create_database("plans"))
    upgrade(plain)
    east, west = (owned_engine(plain, name) for name in PROFILES)
    template = save_template(east, parse_document(TEMPLATE))
    plan = NightPlan(
        name="east's plan",
        template_id=template.id,
        targets=[
            PlanTarget(
                name="M31",
                coordinates=Coordinates(ra_hours=0.712306, dec_deg=41.2692),
                goals=[Goal(exposure_s=60.0, count=10)],
            )
        ],
    )
    plan_id = save_plan(east, plan, True).id
    clock = SystemClock()

    async def hand_off(run_ids: list[int]) -> None:
        pass

    def scheduler(engine: Engine) -> NightScheduler:
        runs = RunManager(engine, _no_context, clock)
        safety = SafetySupervisor(engine, equipment, clock, runs, None)
        director = NightDirector(engine, equipment, clock, runs, safety, hand_off)
        return NightScheduler(engine, equipment, director)

    # A daytime instant: the dusk armed lies ahead whatever the time of day the test runs at.
    noon = datetime.now(UTC).replace(hour=11, minute=30, second=0, microsecond=0)
    if noon < datetime.now(UTC):
        noon += timedelta(days=1)
    first, second = scheduler(east), scheduler(west)
    first.start()
    try:
        armed = await first.arm(plan_id, after=noon)
        assert armed is not None
        assert armed > noon
    finally:
        first.shutdown()
    second.start()
    try:
        assert await second.arm(plan_id, after=noon) is None
        await second.arm_all()
        assert second.next_start(plan_id) is None
        with Session(plain) as db:
            said = db.scalars(select(Event.message).where(Event.owner == "west pier")).all()
        expected = (
            'not armed here, armed by the daemon of their profile: "east\'s plan" (east pier)'
        )
        assert said == [expected]
    finally:
        second.shutdown()
    with plain.connect() as db:
        for name, expected in zip(PROFILES, ([f"plan-{plan_id}"], []), strict=True):
            table = job_table(name)
            assert db.execute(text(f'SELECT id FROM "{table}"')).scalars().all() == expected
    plain.dispose()


def _no_context(run_id: int, events: RunEvents) -> RunContext:
    raise AssertionError("no run starts in this test")
