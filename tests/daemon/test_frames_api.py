"""Capture and frames over HTTP against the real daemon (embedded simulator), and recovery."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from astropy.io import fits
from PIL import Image

from tests.daemon.conftest import RunningDaemon, has_job_fork_server, running_daemon, wait_for
from tests.daemon.test_api import all_connected
from tests.helpers import read_only_folder

M31 = {"name": "M31", "ra_deg": 10.684583, "dec_deg": 41.269167}


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[RunningDaemon]:
    with running_daemon(tmp_path_factory.mktemp("frames-daemon"), catalog_cache) as running:
        wait_for(f"{running.url}/api/equipment", all_connected)
        yield running


def capture(daemon: RunningDaemon, **body: Any) -> httpx.Response:
    return httpx.post(f"{daemon.url}/api/capture", json=body, timeout=120)


def test_capture_returns_records_and_the_frame_is_served(daemon: RunningDaemon) -> None:
    assert not has_job_fork_server(daemon.process.pid)  # nothing to process yet: no CPU spent
    reply = capture(
        daemon, frame_type="LIGHT", exposure_s=1.0, count=2, filter_name="R", target=M31
    )
    assert reply.status_code == 201, reply.text
    frames = reply.json()
    assert [f["frame_type"] for f in frames] == ["LIGHT", "LIGHT"]
    assert all(f["filter_name"] == "R" for f in frames)
    frame = frames[0]
    assert frame["path"].startswith("M31/")

    record = httpx.get(f"{daemon.url}/api/frames/{frame['id']}").json()
    assert record["sha256"] == frame["sha256"]
    download = httpx.get(f"{daemon.url}/api/frames/{frame['id']}/fits")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == frame["sha256"]
    with fits.open(io.BytesIO(download.content)) as hdul:
        assert hdul[0].header["FILTER"] == "R"
        assert hdul[0].header["OBJECT"] == "M31"

    preview = httpx.get(f"{daemon.url}/api/frames/{frame['id']}/preview.jpg")
    assert preview.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(preview.content))
    assert max(image.size) <= 1024
    assert image.size[0] / image.size[1] == pytest.approx(2048 / 1536, rel=0.01)
    again = httpx.get(f"{daemon.url}/api/frames/{frame['id']}/preview.jpg")
    assert again.content == preview.content  # served from the cache
    assert list((daemon.data_dir / "previews").glob(f"{frame['id']}-*.jpg"))


def test_a_captured_light_reaches_the_live_stack_and_its_picture(daemon: RunningDaemon) -> None:
    reply = capture(daemon, frame_type="LIGHT", exposure_s=1.0, filter_name="G", target=M31)
    assert reply.status_code == 201, reply.text
    # A night that will be processed: the jobs' fork server loads the pipeline meanwhile.
    assert has_job_fork_server(daemon.process.pid)

    def stacked(stacks: Any) -> bool:
        return any(s["target"] == "M31" and s["filter_name"] == "G" for s in stacks)

    stacks = wait_for(f"{daemon.url}/api/live", stacked, timeout_s=90)
    (stack,) = [s for s in stacks if s["filter_name"] == "G"]  # type: ignore[attr-defined]
    assert stack["frames"] == 1
    assert stack["session_id"] == reply.json()[0]["session_id"]
    picture = httpx.get(f"{daemon.url}{stack['preview_url']}")
    assert picture.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(picture.content)).size[0] > 0
    missing = httpx.get(f"{daemon.url}/api/live/{stack['session_id']}/nothing_here.jpg")
    assert missing.status_code == 404


def test_sessions_and_frame_listing_with_filters(daemon: RunningDaemon) -> None:
    assert capture(daemon, frame_type="DARK", exposure_s=0.5, count=2).status_code == 201
    assert capture(daemon, frame_type="LIGHT", exposure_s=0.5, target=M31).status_code == 201
    sessions = httpx.get(f"{daemon.url}/api/sessions").json()
    assert len(sessions) == 1
    session = sessions[0]
    assert session["profile"] == "simulators"
    assert session["frames"] >= 3
    url = f"{daemon.url}/api/sessions/{session['id']}/frames"
    darks = httpx.get(url, params={"frame_type": "DARK"}).json()
    assert darks["total"] == 2
    assert all(f["frame_type"] == "DARK" for f in darks["items"])
    page = httpx.get(url, params={"limit": 1, "offset": 1}).json()
    assert len(page["items"]) == 1
    assert page["total"] == session["frames"]
    accepted = httpx.get(url, params={"accepted": "true", "frame_type": "LIGHT"}).json()
    assert all(f["accepted"] for f in accepted["items"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"frame_type": "LIGHT", "exposure_s": -1}, "exposure_s"),
        ({"frame_type": "SKYFLAT", "exposure_s": 1}, "frame_type"),
        ({"frame_type": "LIGHT", "exposure_s": 1, "binning": 0}, "binning"),
        ({"frame_type": "LIGHT", "exposure_s": 1, "count": 0}, "count"),
        ({"frame_type": "LIGHT", "exposure_s": 0}, "exposure_s"),
        (
            {"frame_type": "LIGHT", "exposure_s": 1, "target": {"name": "x", "dec_deg": 95}},
            "dec_deg",
        ),
    ],
)
def test_bad_capture_parameters_get_422_naming_the_field(
    daemon: RunningDaemon, body: dict[str, Any], field: str
) -> None:
    reply = httpx.post(f"{daemon.url}/api/capture", json=body)
    assert reply.status_code == 422, reply.text
    assert any(field in error["loc"] for error in reply.json()["detail"]), reply.text


def test_unknown_filter_gets_422_with_the_choices(daemon: RunningDaemon) -> None:
    reply = capture(daemon, frame_type="LIGHT", exposure_s=1, filter_name="Z")
    assert reply.status_code == 422
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", "filter_name"]
    assert "'Z' is not in this wheel" in error["msg"]


@pytest.mark.parametrize(("field", "value"), [("gain", 99), ("offset", 7)])
def test_a_gain_or_offset_the_camera_refuses_gets_422_naming_it(
    daemon: RunningDaemon, field: str, value: int
) -> None:
    """The simulated camera takes gain and offset as indices (0..3, 0..2): the device's own
    range message is passed on, and no frame is taken."""
    before = httpx.get(f"{daemon.url}/api/frames/latest").json().get("id")
    reply = capture(daemon, frame_type="DARK", exposure_s=1, **{field: value})
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", field]
    assert "out of range" in error["msg"]
    assert httpx.get(f"{daemon.url}/api/frames/latest").json().get("id") == before


def test_a_second_capture_while_one_runs_gets_409(daemon: RunningDaemon) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(capture, daemon, frame_type="DARK", exposure_s=3.0)
        deadline = time.monotonic() + 10
        while True:  # wait until the first capture holds the camera
            devices = httpx.get(f"{daemon.url}/api/equipment").json()["devices"]
            camera = next(d for d in devices if d["role"] == "camera")
            if camera["in_use"] or running.done():
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = capture(daemon, frame_type="DARK", exposure_s=1.0)
        assert running.result().status_code == 201
    assert second.status_code == 409
    assert "already running" in second.text


def test_unknown_ids_get_404(daemon: RunningDaemon) -> None:
    for path in (
        "frames/99999",
        "frames/99999/fits",
        "frames/99999/preview.jpg",
        "sessions/99999/frames",
    ):
        assert httpx.get(f"{daemon.url}/api/{path}").status_code == 404, path


def test_a_file_without_its_row_is_re_registered_at_start(
    tmp_path: Path, catalog_cache: Path
) -> None:
    """The state a crash between the file's rename and the row's commit leaves behind."""
    data = tmp_path / "data"
    with running_daemon(data, catalog_cache) as daemon:
        wait_for(f"{daemon.url}/api/equipment", all_connected)
        frame = capture(daemon, frame_type="LIGHT", exposure_s=1.0, target=M31).json()[0]
    with sqlite3.connect(data / "nightowl.db") as db:
        db.execute("DELETE FROM frame WHERE id = ?", (frame["id"],))
    partial = data / "frames" / "M31" / ".interrupted.fits.0badc0de.partial"
    partial.write_bytes(b"half a frame")

    with running_daemon(data, catalog_cache) as daemon:
        sessions = httpx.get(f"{daemon.url}/api/sessions").json()
        listed = httpx.get(f"{daemon.url}/api/sessions/{sessions[0]['id']}/frames").json()
    assert listed["total"] == 1
    recovered = listed["items"][0]
    for key in (
        "path",
        "sha256",
        "size_bytes",
        "frame_type",
        "exposure_s",
        "star_count",
        "hfr_px",
        "filter_name",
        "gain",
        "bin_x",
        "accepted",
    ):
        assert recovered[key] == frame[key], key
    assert recovered["exposure_start_utc"][:19] == frame["exposure_start_utc"][:19]
    assert not partial.exists()
    with sqlite3.connect(data / "nightowl.db") as db:
        messages = [m for (m,) in db.execute("SELECT message FROM event WHERE source='store'")]
    assert any("re-registered 1 frame" in m for m in messages)
    assert any("removed 1 partial" in m for m in messages)


def test_read_only_frames_root_gives_a_clear_error_and_keeps_earlier_frames(
    tmp_path: Path, catalog_cache: Path
) -> None:
    data = tmp_path / "data"
    with running_daemon(data, catalog_cache) as daemon:
        wait_for(f"{daemon.url}/api/equipment", all_connected)
        first = capture(daemon, frame_type="DARK", exposure_s=0.5).json()[0]
        before = sorted(p for p in (data / "frames").rglob("*") if p.is_file())
        with read_only_folder(data / "frames"):
            reply = capture(daemon, frame_type="LIGHT", exposure_s=0.5, count=3, target=M31)
            after = sorted(p for p in (data / "frames").rglob("*") if p.is_file())
        assert reply.status_code == 507, reply.text
        assert "cannot write frame" in reply.json()["detail"]["message"]
        assert after == before  # nothing new, nothing partial
        kept = httpx.get(f"{daemon.url}/api/frames/{first['id']}/fits")
        assert hashlib.sha256(kept.content).hexdigest() == first["sha256"]
        with sqlite3.connect(data / "nightowl.db") as db:
            errors = list(db.execute("SELECT message FROM event WHERE level='error'"))
            lights = db.execute("SELECT COUNT(*) FROM frame WHERE frame_type='LIGHT'").fetchone()
        assert errors
        assert "cannot write frame" in errors[0][0]
        assert lights == (0,)


def test_autofocus_over_the_api_is_run_and_kept(daemon: RunningDaemon) -> None:
    reply = httpx.post(f"{daemon.url}/api/autofocus", json={"exposure_s": 0.3}, timeout=180)
    assert reply.status_code == 201, reply.text
    run = reply.json()
    assert run["success"], run["reason"]
    assert abs(run["final_position"] - 10_000) <= 50
    assert run["exposures"] <= 11
    assert len(run["report"]["points"]) == 9
    listed = httpx.get(f"{daemon.url}/api/autofocus").json()
    assert listed[0]["id"] == run["id"]
    saved = list((daemon.data_dir / "autofocus").glob(f"*_{run['id']}.json"))
    assert len(saved) == 1
    bad = httpx.post(f"{daemon.url}/api/autofocus", json={"steps_out": 1})
    assert bad.status_code == 422
    assert "steps_out" in bad.text
