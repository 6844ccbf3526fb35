"""Processing jobs on a real Dask cluster: the daemon (`nightowl serve`) with
NIGHTOWL_DASK_SCHEDULER pointing at a scheduler and two workers started with Nightowl's own
commands (`tests.cluster`), and `nightowl process --dask`.

Two small synthetic nights of one target lie in the daemon's frames folder before it
starts, so it records them as two sessions (the start-up scan). One daemon and one cluster
serve the whole module.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy.orm import Session

from daemon.db.engine import make_engine, owned_engine
from daemon.db.migrate import upgrade
from daemon.db.models import Frame, ImagingSession, ObservatoryProfile, ProcessingJob, Target
from daemon.errors import Conflict, NotFound, Refused
from daemon.processing_jobs import targets_with_lights
from daemon.processing_options import ProcessingOptions, recipe_pipeline_config
from daemon.settings import Settings
from daemon.states import JobState
from daemon.worker import ProcessingWorker, target_frames
from processing import synthetic
from processing.cluster import ClusterProcesses
from processing.grouping import group_frames
from processing.pipeline import run_pipeline, scan_folder
from processing.recipe import parse_recipe
from sequences.frames import FrameType
from tests.cluster import dask_cluster
from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for
from tests.helpers import SMALL_SESSION

TARGET = "NGC 7000"
NIGHTS = {"night1": ("2026-11-01", 8), "night2": ("2026-11-02", 7)}
"""Folder under the frames root: (the night's date, its bias frames). The same sky and
camera; another count of biases draws other noise and dithers for the rest of the night."""
LIGHTS_PER_NIGHT = SMALL_SESSION.light_frames
QUICK_RECIPE = {
    "schema_version": 1,
    "name": "quick",
    "steps": [
        {"kind": "combine"},
        {"kind": "stretch_stf"},
        {"kind": "export", "formats": ["fits"]},
    ],
}
"""A finishing of three steps: the cluster's worker finishes the picture in a moment."""
NINA_IMAGETYP = {kind: kind for kind in ("BIAS", "DARK", "FLAT", "LIGHT")}
"""IMAGETYP as Nightowl writes it (the spelling its start-up scan of the frames reads)."""


def _write_night(frames: Path, scratch: Path, date: str, biases: int) -> None:
    """A synthetic night as the daemon's frame files: ``.fits`` with DATE-OBS in the night."""
    written = synthetic.write_session(
        scratch, replace(SMALL_SESSION, bias_frames=biases), target=TARGET, imagetyp=NINA_IMAGETYP
    )
    for number, path in enumerate(written):
        destination = frames / path.relative_to(scratch).with_suffix(".fits")
        destination.parent.mkdir(parents=True, exist_ok=True)
        with fits.open(path) as hdul:
            hdul[0].header["DATE-OBS"] = f"{date}T21:{number // 60:02d}:{number % 60:02d}"
            hdul.writeto(destination)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("cluster-daemon")
    for folder, (night, biases) in NIGHTS.items():
        _write_night(data / "frames" / folder, data / "scratch" / folder, night, biases)
    return data


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcesses]:
    with dask_cluster(2, tmp_path_factory.mktemp("dask")) as running:
        yield running


@pytest.fixture(scope="module")
def daemon(
    data_dir: Path, catalog_cache: Path, cluster: ClusterProcesses
) -> Iterator[RunningDaemon]:
    profile = data_dir / "bare.yaml"
    profile.write_text("name: cluster-pier\n")
    with running_daemon(
        data_dir,
        catalog_cache,
        NIGHTOWL_EQUIPMENT_PROFILE=str(profile),
        NIGHTOWL_CONNECT_ON_START="false",
        NIGHTOWL_TIMEZONE="UTC",
        NIGHTOWL_DASK_SCHEDULER=cluster.address,
    ) as running:
        yield running


def _sessions(daemon: RunningDaemon) -> dict[str, int]:
    """Session id by night date."""
    rows = httpx.get(f"{daemon.url}/api/sessions").json()
    return {row["night_date"]: row["id"] for row in rows}


def _ended(job: dict[str, Any]) -> bool:
    return job["state"] in ("done", "failed")


def _run(daemon: RunningDaemon, body: dict[str, Any], timeout_s: float = 120) -> dict[str, Any]:
    reply = httpx.post(f"{daemon.url}/api/processing/jobs", json=body, timeout=30)
    assert reply.status_code == 201, reply.text
    url = f"{daemon.url}/api/processing/jobs/{reply.json()['id']}"
    done = wait_for(url, _ended, timeout_s=timeout_s)
    assert done["state"] == "done", (done["error"], daemon.log()[-3000:])
    return done


def _job_tasks(cluster: ClusterProcesses, mine: set[str]) -> list[str]:
    """The keys the scheduler holds, except the test's own `mine`."""
    keys = cluster.client.run_on_scheduler(
        lambda dask_scheduler: [str(key) for key in dask_scheduler.tasks]
    )
    return [key for key in keys if key not in mine]


def test_a_nights_job_runs_on_the_cluster_bit_identical_to_this_machine(
    daemon: RunningDaemon, cluster: ClusterProcesses, data_dir: Path, tmp_path: Path
) -> None:
    night = _sessions(daemon)[NIGHTS["night1"][0]]
    done = _run(daemon, {"session_id": night, "recipe": QUICK_RECIPE})
    outputs = done["outputs"]
    assert cluster.address in outputs["executor"]
    assert "2 workers" in outputs["executor"]
    (group,) = outputs["groups"]
    assert group["integrated"] == LIGHTS_PER_NIGHT
    # The finishing ran too (on one worker): the night's picture exists.
    (picture,) = outputs["finished"]
    assert "error" not in picture, picture
    assert Path(picture["outputs"]["fits"]).is_file()

    # The same frames stacked here, in this process, with the job's settings: the very
    # same pixels (the issue asks for bit-identical results wherever the work runs).
    frames, skipped = scan_folder(data_dir / "frames" / "night1")
    assert skipped == []
    config = recipe_pipeline_config(ProcessingOptions(), parse_recipe(QUICK_RECIPE))
    local = run_pipeline(group_frames(frames), tmp_path / "local", replace(config, threads=1))
    assert local.executor == "this process"
    (local_group,) = local.groups
    cluster_pixels = fits.getdata(group["outputs"]["fits"])
    local_pixels = fits.getdata(local_group.outputs["fits"])
    assert cluster_pixels.shape == local_pixels.shape
    assert np.array_equal(cluster_pixels, local_pixels)


def test_a_target_job_gathers_its_lights_of_every_night(
    daemon: RunningDaemon, cluster: ClusterProcesses
) -> None:
    url = f"{daemon.url}/api/processing/jobs"
    targets = httpx.get(f"{daemon.url}/api/processing/targets").json()
    lights = 2 * LIGHTS_PER_NIGHT
    assert targets == [{"name": TARGET, "accepted_lights": lights, "nights": 2, "filters": ["L"]}]
    done = _run(daemon, {"target": TARGET, "filter": "L", "linear_only": True})
    assert done["target_id"] is not None
    assert done["session_id"] is None
    assert done["config"]["target"] == TARGET
    outputs = done["outputs"]
    assert cluster.address in outputs["executor"]
    # Both nights' lights, and both nights' calibration frames.
    assert outputs["inputs"]["LIGHT"] == 2 * LIGHTS_PER_NIGHT
    assert outputs["inputs"]["BIAS"] == sum(biases for _, biases in NIGHTS.values())
    (group,) = outputs["groups"]
    assert len(group["frames"]) == 2 * LIGHTS_PER_NIGHT
    assert group["integrated"] == 2 * LIGHTS_PER_NIGHT
    assert "finished" not in outputs

    unknown = httpx.post(url, json={"target": "M 999"})
    assert unknown.status_code == 404
    assert "no target 'M 999'" in unknown.text
    no_lights = httpx.post(url, json={"target": TARGET, "filter": "Ha"})
    assert no_lights.status_code == 422
    assert no_lights.json()["detail"][0]["loc"] == ["body", "target"]
    assert "no accepted lights in filter 'Ha'" in no_lights.text
    two = httpx.post(url, json={"target": TARGET, "session_id": 1})
    assert two.status_code == 422
    assert "target (a target's lights across nights)" in two.text
    lone_filter = httpx.post(url, json={"session_id": 1, "filter": "L"})
    assert lone_filter.status_code == 422
    assert "give target too" in lone_filter.text


def test_cancelling_a_job_drops_its_tasks_from_the_scheduler(
    daemon: RunningDaemon, cluster: ClusterProcesses, tmp_path: Path
) -> None:
    # Both workers busy with a task of ours: the job's tasks wait in the scheduler, so
    # the job is surely mid-run when it is cancelled.
    release = tmp_path / "release"

    def block(started: Path) -> None:
        """Hold a worker until `release` exists (at most a minute). A local function:
        the workers get it by value, as they cannot import the tests."""
        started.touch()
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    workers = sorted(cluster.client.scheduler_info(n_workers=-1)["workers"])
    blockers = [
        cluster.client.submit(
            block, tmp_path / f"started-{i}", workers=[w], pure=False, key=f"block-{i}"
        )
        for i, w in enumerate(workers)
    ]
    mine = {f"block-{i}" for i in range(len(workers))}
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"started-{i}").exists() for i in range(len(workers))):
            assert time.monotonic() < deadline, "the blocking tasks did not start"
            time.sleep(0.05)
        reply = httpx.post(
            f"{daemon.url}/api/processing/jobs", json={"target": TARGET, "linear_only": True}
        )
        assert reply.status_code == 201, reply.text
        job_id = reply.json()["id"]
        deadline = time.monotonic() + 60
        while not _job_tasks(cluster, mine):
            assert time.monotonic() < deadline, daemon.log()[-3000:]
            time.sleep(0.1)

        cancelled = httpx.post(f"{daemon.url}/api/processing/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "failed"
        assert cancelled.json()["error"] == "cancelled"
        # The job's process stops within its poll (~1 s) and the scheduler forgets its
        # tasks once its client is gone; 20 s is a wide margin on a loaded machine.
        deadline = time.monotonic() + 20
        while left := _job_tasks(cluster, mine):
            assert time.monotonic() < deadline, f"the scheduler still holds {left}"
            time.sleep(0.1)
    finally:
        release.touch()
        cluster.client.gather(blockers)
        cluster.client.cancel(blockers)
    job = httpx.get(f"{daemon.url}/api/processing/jobs/{job_id}").json()
    assert (job["state"], job["error"]) == ("failed", "cancelled")
    again = httpx.post(f"{daemon.url}/api/processing/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert "only a queued or running job can be cancelled" in again.text
    assert httpx.post(f"{daemon.url}/api/processing/jobs/99999/cancel").status_code == 404


def test_the_command_line_runs_on_the_cluster(
    cluster: ClusterProcesses, data_dir: Path, tmp_path: Path
) -> None:
    night = data_dir / "frames" / "night2"
    command = [sys.executable, "-m", "daemon", "process", str(night), "--linear-only"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "out"), "--dask", cluster.address, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert cluster.address in summary["executor"]
    (group,) = summary["groups"]
    assert group["integrated"] == LIGHTS_PER_NIGHT
    assert Path(group["outputs"]["fits"]).is_file()

    bad = subprocess.run(
        [*command, "--out", str(tmp_path / "bad"), "--dask", "http://localhost:8786"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 1
    assert "--dask 'http://localhost:8786' is not a tcp:// address" in bad.stderr


def _frame(session: ImagingSession, kind: FrameType, number: int, **fields: Any) -> Frame:
    return Frame(
        session_id=session.id,
        path=f"{session.night_date}/{kind.value}_{number}.fits",
        sha256="0" * 64,
        size_bytes=1,
        frame_type=kind,
        exposure_s=60.0,
        exposure_start_utc=datetime(2026, 11, 1, 21, tzinfo=UTC),
        width_px=256,
        height_px=192,
        bin_x=1,
        bin_y=1,
        **fields,
    )


async def test_a_targets_frames_and_a_cancel_on_either_database(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    await asyncio.to_thread(upgrade, engine)
    with Session(engine) as db, db.begin():
        profile, other = ObservatoryProfile(name="pier"), ObservatoryProfile(name="other pier")
        m31, m33, m101 = Target(name="M 31"), Target(name="M 33"), Target(name="M 101")
        db.add_all([profile, other, m31, m33, m101])
        db.flush()
        # Another telescope's night on the same database: its lights are on its own disk.
        theirs = ImagingSession(profile_id=other.id, night_date=date(2026, 11, 1))
        db.add(theirs)
        db.flush()
        db.add_all(
            [
                _frame(theirs, FrameType.LIGHT, 9, target_id=m31.id, filter_name="L"),
                _frame(theirs, FrameType.LIGHT, 8, target_id=m101.id, filter_name="L"),
            ]
        )
        nights = [
            ImagingSession(profile_id=profile.id, night_date=date(2026, 11, day))
            for day in (1, 2, 3)
        ]
        db.add_all(nights)
        db.flush()
        one, two, three = nights
        light = FrameType.LIGHT
        db.add_all(
            [
                _frame(one, light, 1, target_id=m31.id, filter_name="L"),
                _frame(one, light, 2, target_id=m31.id, filter_name="L"),
                _frame(one, light, 3, target_id=m31.id, filter_name="L", accepted=False),
                _frame(one, light, 4, target_id=m31.id, filter_name="Ha"),
                _frame(one, light, 5, target_id=m33.id, filter_name="L"),
                _frame(two, light, 1, target_id=m31.id, filter_name="L"),
                _frame(three, light, 1, target_id=m33.id, filter_name="L"),
                *(_frame(night, FrameType.DARK, 1) for night in nights),
                _frame(one, FrameType.FLAT, 1, filter_name="L"),
            ]
        )
        m31_id = m31.id
    everyone = engine
    engine = owned_engine(everyone, "pier")
    root = tmp_path / "frames"
    frames = target_frames(engine, root, m31_id)
    kinds = sorted((f.path.relative_to(root).as_posix(), f.kind.value) for f in frames)
    assert kinds == [
        ("2026-11-01/DARK_1.fits", "DARK"),
        ("2026-11-01/FLAT_1.fits", "FLAT"),
        ("2026-11-01/LIGHT_1.fits", "LIGHT"),
        ("2026-11-01/LIGHT_2.fits", "LIGHT"),
        ("2026-11-01/LIGHT_4.fits", "LIGHT"),
        ("2026-11-02/DARK_1.fits", "DARK"),
        ("2026-11-02/LIGHT_1.fits", "LIGHT"),
    ]
    assert {f.target for f in frames if f.kind.value == "LIGHT"} == {"M 31"}
    only_l = [f for f in target_frames(engine, root, m31_id, "L") if f.kind.value == "LIGHT"]
    assert len(only_l) == 3
    assert targets_with_lights(engine) == [
        {"name": "M 31", "accepted_lights": 4, "nights": 2, "filters": ["Ha", "L"]},
        {"name": "M 33", "accepted_lights": 2, "nights": 2, "filters": ["L"]},
    ]

    assert [t["name"] for t in targets_with_lights(everyone)] == ["M 101", "M 31", "M 33"]

    worker = ProcessingWorker(engine, root, tmp_path / "jobs", tmp_path / "masters", [tmp_path])
    job_id = await worker.submit(ProcessingOptions(), target="M 31", filter_name="Ha")
    with pytest.raises(Refused, match="'M 101' has no accepted lights"):
        await worker.submit(ProcessingOptions(), target="M 101")
    with pytest.raises(NotFound, match="no target 'M 99'"):
        await worker.submit(ProcessingOptions(), target="M 99")
    with pytest.raises(Refused, match="no accepted lights in filter 'OIII'"):
        await worker.submit(ProcessingOptions(), target="M 31", filter_name="OIII")
    await worker.cancel(job_id)
    with Session(engine) as db:
        job = db.get(ProcessingJob, job_id)
        assert job is not None
        assert (job.target_id, job.state, job.error) == (m31_id, JobState.FAILED, "cancelled")
        assert job.config["filter"] == "Ha"
    with pytest.raises(Conflict, match="only a queued or running job"):
        await worker.cancel(job_id)
    with pytest.raises(NotFound):
        await worker.cancel(job_id + 100)
    everyone.dispose()


def test_the_scheduler_setting_names_itself_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTOWL_DASK_SCHEDULER", "tcp://127.0.0.1:8786")
    assert Settings().dask_scheduler == "tcp://127.0.0.1:8786"
    for wrong in ("127.0.0.1:8786", "tcp://127.0.0.1", "tcp://h:70000", "tcp://h:1/x"):
        monkeypatch.setenv("NIGHTOWL_DASK_SCHEDULER", wrong)
        with pytest.raises(ValueError, match=r"NIGHTOWL_DASK_SCHEDULER.*tcp://host:port"):
            Settings()
