"""The equipment state: one background poller reads the devices; the API answers from its
snapshot. The faults are real: the test's own simulator is stopped (SIGSTOP: a server that
accepts requests and never answers) or killed and started again."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.db.models import Event
from daemon.equipment_state import EquipmentState
from daemon.simulator.rig import SimulatorRig
from drivers.equipment import Equipment
from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for
from tests.helpers import eventually


@pytest.fixture
def rig_and_daemon(
    tmp_path: Path, catalog_cache: Path
) -> Iterator[tuple[SimulatorRig, RunningDaemon]]:
    """A simulator of the test's own (the test stops or kills it) and the daemon using it."""
    with SimulatorRig(run_dir=tmp_path / "rig", cache_dir=catalog_cache) as rig:
        try:
            with running_daemon(
                tmp_path / "daemon",
                catalog_cache,
                NIGHTOWL_SIMULATOR_URL=rig.url,
                NIGHTOWL_SAFETY_POLL_S="0.5",
            ) as daemon:
                yield rig, daemon
        finally:
            if rig.pid is not None:  # a frozen simulator would not hear the stop
                os.killpg(rig.pid, signal.SIGCONT)


def all_answer(body: dict[str, Any]) -> bool:
    return all(d["connected"] and d["error"] is None for d in body["devices"])


def timed_equipment(url: str) -> tuple[dict[str, Any], float]:
    began = time.monotonic()
    body: dict[str, Any] = httpx.get(f"{url}/api/equipment", timeout=30).json()
    return body, time.monotonic() - began


def equipment_events(url: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = httpx.get(
        f"{url}/api/events", params={"source": "equipment", "limit": 1000}
    ).json()
    return events


def test_the_equipment_is_served_from_the_poller_while_the_devices_hang(
    rig_and_daemon: tuple[SimulatorRig, RunningDaemon],
) -> None:
    rig, daemon = rig_and_daemon
    body = wait_for(f"{daemon.url}/api/equipment", all_answer)
    assert body["read_at"] is not None
    assert body["age_s"] < 10
    assert all(d["read_at"] is not None for d in body["devices"])  # type: ignore[attr-defined]

    assert rig.pid is not None
    os.killpg(rig.pid, signal.SIGSTOP)
    try:
        answers_s: list[float] = []
        deadline = time.monotonic() + 60
        while True:
            body, took_s = timed_equipment(daemon.url)
            answers_s.append(took_s)
            if all(d["error"] is not None for d in body["devices"]):
                break
            assert time.monotonic() < deadline, f"the hang is not shown: {body}"
            time.sleep(0.5)
    finally:
        os.killpg(rig.pid, signal.SIGCONT)
    # No request waits for a device: asking the hung devices takes at least alpyca's 5 s
    # HTTP timeout, the snapshot a few ms (a second on a busy machine).
    assert max(answers_s) < 4.0, answers_s

    body = wait_for(f"{daemon.url}/api/equipment", all_answer, timeout_s=60)
    assert body["age_s"] < 10


def test_a_device_the_supervisor_reconnects_shows_no_old_error(
    rig_and_daemon: tuple[SimulatorRig, RunningDaemon],
) -> None:
    """After the simulator comes back, the devices show connected and without error, with no
    `/equipment/connect`; each change is one event, not one per poll."""
    rig, daemon = rig_and_daemon
    wait_for(f"{daemon.url}/api/equipment", all_answer)
    assert rig.pid is not None
    os.killpg(rig.pid, signal.SIGKILL)
    rig.stop()
    failing = wait_for(
        f"{daemon.url}/api/equipment",
        lambda body: all(d["error"] is not None for d in body["devices"]),
    )
    rig.start()  # the same port: the server came back
    roles = {d["role"] for d in failing["devices"]}  # type: ignore[attr-defined]

    def reconnected() -> set[str]:
        events = httpx.get(f"{daemon.url}/api/events", params={"source": "safety"}).json()
        messages = [e["message"] for e in events]
        return {r for r in roles if any(m.startswith(f"{r} reconnected") for m in messages)}

    deadline = time.monotonic() + 90
    while reconnected() != roles:
        assert time.monotonic() < deadline, f"reconnected: {reconnected()}"
        time.sleep(0.5)
    # The poller's next pass (every 2 s) shows it; a busy machine may take a few.
    body = wait_for(
        f"{daemon.url}/api/equipment",
        lambda body: all(d["connected"] and d["error"] is None for d in body["devices"]),
        timeout_s=30,
    )
    assert [(d["role"], d["error"]) for d in body["devices"] if d["error"]] == []

    events = equipment_events(daemon.url)
    for role in roles:
        mine = [e for e in events if e["data"]["role"] == role]
        conditions = [e["data"]["condition"] for e in mine]
        assert conditions == ["answers", "failing", "answers"], (role, mine)
        assert mine[-1]["message"] == f"{role} answers again"


async def test_the_poller_leaves_a_device_the_capture_path_holds_alone(
    tmp_path: Path, equipment: Equipment
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nightowl.db'}")
    upgrade(engine)
    held: set[str] = set()
    state = EquipmentState(
        engine, equipment, in_use=lambda: held, period_s=0.1, in_use_period_s=60.0
    )

    def read_at(role: str) -> float | None:
        reading = next(d for d in state.snapshot().devices if d.report.role == role)
        return None if reading.read_at is None else reading.read_at.timestamp()

    state.start()
    try:
        await eventually(lambda: read_at("camera") is not None, 10, "a first reading")
        held.add("camera")
        # A camera read begun before the hold may still land: the baseline is taken once the
        # camera's reading has stood still for a while (no read starts after the hold).
        camera_before = read_at("camera")
        steady_since = time.monotonic()
        while time.monotonic() - steady_since < 2.0:
            await asyncio.sleep(0.1)
            if read_at("camera") != camera_before:
                camera_before, steady_since = read_at("camera"), time.monotonic()
        mount_before = read_at("mount")
        await asyncio.sleep(1.0)
        assert read_at("camera") == camera_before
        assert (read_at("mount") or 0) > (mount_before or 0)
        camera = next(d for d in state.snapshot().devices if d.report.role == "camera")
        assert camera.in_use
        assert camera.age_s is not None
        assert camera.age_s >= 1.0
        assert camera.report.status is not None  # the last reading is still shown

        held.clear()
        await eventually(lambda: (read_at("camera") or 0) > (camera_before or 0), 10, "a read")
    finally:
        await state.stop()
    with Session(engine) as db:
        # The devices answered throughout: no change, no event.
        assert list(db.scalars(select(Event.message).where(Event.source == "equipment"))) == []
    engine.dispose()
