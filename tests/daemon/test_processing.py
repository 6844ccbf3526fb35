"""Processing jobs through the real daemon under uvicorn, and `nightowl process`.

Jobs run in the daemon's worker process on folders of synthetic FITS files (a small night
with known content, `tests.helpers.SMALL_SESSION`); a killed daemon restarts its job.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from astropy.io import fits

from processing import synthetic
from tests.daemon.conftest import RunningDaemon, has_job_fork_server, running_daemon, wait_for
from tests.helpers import SMALL_SESSION

QUIET = {"NIGHTOWL_CONNECT_ON_START": "false"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("processing-daemon")


@pytest.fixture(scope="module")
def night_folder(data_dir: Path) -> Path:
    """Inside the daemon's data folder: the processing root when none is set."""
    folder = data_dir / "night"
    synthetic.write_session(folder, SMALL_SESSION, target="NGC 7000")
    return folder


@pytest.fixture(scope="module")
def daemon(data_dir: Path, catalog_cache: Path, simulator_url: str) -> Iterator[RunningDaemon]:
    env = {"NIGHTOWL_SIMULATOR_URL": simulator_url, **QUIET}
    with running_daemon(data_dir, catalog_cache, **env) as d:
        yield d


def finished(job: dict[str, object]) -> bool:
    return job["state"] in ("done", "failed")


def test_a_folder_job_runs_and_serves_its_results(
    daemon: RunningDaemon, night_folder: Path
) -> None:
    reply = httpx.post(
        f"{daemon.url}/api/processing/jobs",
        json={"folder": str(night_folder), "options": {"rejection": "winsorized"}},
    )
    assert reply.status_code == 201, reply.text
    job = reply.json()
    assert job["state"] in ("queued", "running")
    done = wait_for(f"{daemon.url}/api/processing/jobs/{job['id']}", finished, timeout_s=120)
    assert done["state"] == "done", (done["error"], daemon.log()[-3000:])
    assert done["progress"] == 1.0
    # Jobs are forked from a server that keeps the pipeline loaded for the next one.
    assert has_job_fork_server(daemon.process.pid)
    assert done["finished_at"] is not None
    summary = done["outputs"]
    assert isinstance(summary, dict)
    assert summary["inputs"] == {"LIGHT": 8, "BIAS": 8, "DARK": 8, "FLAT": 8, "DARKFLAT": 0}
    (group,) = summary["groups"]
    assert group["name"] == "NGC 7000_L"
    assert group["integrated"] == 8
    # The job's row records what went in: every light's checksum, as its file has it.
    for frame in group["frames"]:
        assert frame["sha256"] == hashlib.sha256(Path(frame["path"]).read_bytes()).hexdigest()
    assert done["config"]["rejection"] == "winsorized"
    assert set(summary["timings_s"]) == {"masters", "calibrate", "register", "integrate"}

    base = f"{daemon.url}/api/processing/jobs/{job['id']}/groups/NGC 7000_L"
    jpeg = httpx.get(f"{base}/jpeg")
    assert jpeg.status_code == 200
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert jpeg.content[:2] == b"\xff\xd8"
    fits_reply = httpx.get(f"{base}/fits")
    assert fits_reply.content[:6] == b"SIMPLE"
    assert httpx.get(f"{base}/tiff").status_code == 404
    assert (
        httpx.get(f"{daemon.url}/api/processing/jobs/{job['id']}/groups/M1_L/fits").status_code
        == 404
    )

    # The masters went into the library, for nights without calibration frames.
    library = sorted(p.name for p in (daemon.data_dir / "masters").glob("*.fits"))
    assert library == sorted(f"{name}.fits" for name in summary["masters"])
    listed = httpx.get(f"{daemon.url}/api/processing/jobs").json()
    assert listed[0]["id"] == job["id"]


def test_bad_job_requests_name_the_field(daemon: RunningDaemon, night_folder: Path) -> None:
    url = f"{daemon.url}/api/processing/jobs"
    both = httpx.post(url, json={"folder": str(night_folder), "session_id": 1})
    assert both.status_code == 422
    assert "either session_id or folder" in both.text
    bogus = httpx.post(url, json={"folder": str(night_folder), "options": {"rejection": "bogus"}})
    assert bogus.status_code == 422
    assert bogus.json()["detail"][0]["loc"] == ["body", "options", "rejection"]
    limits = {"folder": str(night_folder), "options": {"reject_sigma": 0}}
    zero_sigma = httpx.post(url, json=limits)
    assert zero_sigma.status_code == 422
    assert zero_sigma.json()["detail"][0]["loc"] == ["body", "options", "reject_sigma"]
    drizzle = {"drizzle": 4, "pixfrac": 0.05, "ln_tile_px": 8}
    bad_drizzle = httpx.post(url, json={"folder": str(night_folder), "options": drizzle})
    assert bad_drizzle.status_code == 422
    assert sorted(tuple(p["loc"]) for p in bad_drizzle.json()["detail"]) == [
        ("body", "options", name) for name in ("drizzle", "ln_tile_px", "pixfrac")
    ]
    unknown = httpx.post(url, json={"folder": str(night_folder), "options": {"kappa": 3}})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "options", "kappa"]
    assert httpx.post(url, json={"session_id": 999}).status_code == 404
    assert httpx.get(f"{url}/999").status_code == 404


def test_a_job_reads_only_inside_the_processing_roots(
    daemon: RunningDaemon, night_folder: Path
) -> None:
    """Outside the roots or absent, one answer: a token holder learns nothing of the machine's
    other paths (the data folder is the only root here)."""
    url = f"{daemon.url}/api/processing/jobs"
    queued = len(httpx.get(url).json())
    (daemon.data_dir / "etc").symlink_to("/etc")
    refused = [
        "/etc",
        "/proc/1",
        "/root",
        "/nonexistent/lights",
        str(night_folder / "nope"),
        str(daemon.data_dir / "etc"),  # a link inside the data folder to /etc
        str(night_folder / ".." / ".." / ".."),
        "night",  # relative: not the daemon's working folder
        "",
        " ",
    ]
    for folder in refused:
        reply = httpx.post(url, json={"folder": folder})
        assert reply.status_code == 422, (folder, reply.text)
        (problem,) = reply.json()["detail"]
        assert problem["loc"] == ["body", "folder"]
        assert problem["msg"] == (
            "not a folder the daemon may process: give the absolute path of an existing "
            "folder inside the processing roots (the data folder unless "
            "NIGHTOWL_PROCESSING_ROOTS names others)"
        )
    for reference in ("/etc/hostname", str(daemon.data_dir / "etc" / "hostname")):
        reply = httpx.post(
            url, json={"folder": str(night_folder), "options": {"reference": reference}}
        )
        assert reply.status_code == 422, reply.text
        assert reply.json()["detail"][0]["loc"] == ["body", "options"]
    assert len(httpx.get(url).json()) == queued  # nothing was queued


def test_a_memory_budget_beyond_the_machine_is_refused(
    daemon: RunningDaemon, night_folder: Path
) -> None:
    machine_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    reply = httpx.post(
        f"{daemon.url}/api/processing/jobs",
        json={"folder": str(night_folder), "options": {"memory_budget_mb": machine_mb + 1}},
    )
    assert reply.status_code == 422, reply.text
    (problem,) = reply.json()["detail"]
    assert problem["loc"] == ["body", "options", "memory_budget_mb"]
    assert f"this machine's memory ({machine_mb} MiB)" in problem["msg"]


def test_a_job_interrupted_by_a_killed_daemon_restarts_cleanly(
    tmp_path: Path, catalog_cache: Path, simulator_url: str
) -> None:
    folder = tmp_path / "big"
    # Large enough that the job is still running when the daemon is killed.
    config = synthetic.SessionConfig(
        sensor=synthetic.SensorModel(shape=(768, 1024), seed=2),
        bias_frames=6,
        dark_frames=6,
        flat_frames=6,
        light_frames=16,
        star_count=200,
    )
    synthetic.write_session(folder, config)
    data = tmp_path / "data"
    env = {
        "NIGHTOWL_SIMULATOR_URL": simulator_url,
        "NIGHTOWL_PROCESSING_ROOTS": json.dumps([str(folder)]),
        **QUIET,
    }
    with running_daemon(data, catalog_cache, **env) as first:
        job = httpx.post(
            f"{first.url}/api/processing/jobs", json={"folder": str(folder), "linear_only": True}
        ).json()
        wait_for(
            f"{first.url}/api/processing/jobs/{job['id']}",
            lambda j: j["state"] == "running" and j["stage"] in ("calibrate", "register"),
            timeout_s=120,
        )
        first.process.send_signal(signal.SIGKILL)  # a crash: the job is left "running"
        first.process.wait()
    with sqlite3.connect(data / "nightowl.db") as db:
        (state,) = db.execute(
            "SELECT state FROM processing_job WHERE id = ?", (job["id"],)
        ).fetchone()
    assert state == "RUNNING"
    with running_daemon(data, catalog_cache, **env) as second:
        done = wait_for(f"{second.url}/api/processing/jobs/{job['id']}", finished, timeout_s=180)
        assert done["state"] == "done", done["error"]
    out = Path(str(done["out_dir"]))
    assert not (out / ".work").exists()
    result = fits.getdata(out / "SYNTH_L.fits")
    assert result.shape[0] > 700
    assert np.isfinite(result).all()
    assert done["outputs"]["groups"][0]["integrated"] == 16  # type: ignore[index]
    with sqlite3.connect(data / "nightowl.db") as db:
        messages = [row[0] for row in db.execute("SELECT message FROM event")]
    assert any("interrupted" in m and "restart" in m for m in messages), messages


def test_the_command_line_processes_a_folder(night_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "process", str(night_folder), "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    (group,) = summary["groups"]
    assert group["integrated"] == 8
    assert Path(group["outputs"]["fits"]) == out / "NGC_7000_L.fits"
    assert (out / "NGC_7000_L.xisf").is_file()
    assert (out / "masters" / "master_flat_bin1_L_gain100.fits").is_file()
    assert summary["skipped"] == []

    nothing = subprocess.run(
        [sys.executable, "-m", "daemon", "process", str(tmp_path / "nope"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert nothing.returncode == 1
    assert "is not a folder of FITS files" in nothing.stderr
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon",
            "process",
            str(night_folder),
            "--out",
            str(out),
            "--rejection",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "--rejection" in bad.stderr
