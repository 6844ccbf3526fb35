"""Imaging by hand over HTTP against the real daemon (embedded simulators): the loop, a frame's
histogram, stars and header, and what is refused while a run holds the equipment."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from astropy.io import fits

from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for
from tests.daemon.test_api import all_connected

SIMULATED = {"NIGHTOWL_CLOCK": "simulated", "NIGHTOWL_CLOCK_START": "2026-11-22T20:00:00Z"}
M31 = {"ra_hours": 0.712306, "dec_deg": 41.2692}
FINISHED = ("completed", "aborted", "failed")


def point_at_m31(count: int = 0, exposure_s: float = 1.0) -> dict[str, Any]:
    """A run that unparks and slews to M31 (and takes `count` lights there)."""
    items: list[dict[str, Any]] = [{"kind": "slew"}]
    if count:
        items.append({"kind": "take_exposures", "count": count, "exposure_s": exposure_s})
    return {
        "name": "to M31",
        "start": {"items": [{"kind": "unpark"}]},
        "targets": [{"kind": "target", "target_name": "M31", "coordinates": M31, "items": items}],
        "end": {"items": []},
    }


def run_to_end(daemon: RunningDaemon, document: dict[str, Any]) -> None:
    reply = httpx.post(f"{daemon.url}/api/runs", json={"document": document})
    assert reply.status_code == 201, reply.text
    run = wait_for(
        f"{daemon.url}/api/runs/{reply.json()['id']}",
        lambda r: r["status"] in FINISHED,
        timeout_s=90,
    )
    assert run["status"] == "completed", run


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[RunningDaemon]:
    env = {**SIMULATED, "NIGHTOWL_PROCESS_AFTER_RUN": "false", "NIGHTOWL_LIVE_STACK": "false"}
    with running_daemon(tmp_path_factory.mktemp("imaging-daemon"), catalog_cache, **env) as d:
        wait_for(f"{d.url}/api/equipment", all_connected, timeout_s=60)
        yield d


def test_while_a_run_holds_the_equipment_the_page_s_actions_are_refused_naming_it(
    daemon: RunningDaemon,
) -> None:
    reply = httpx.post(f"{daemon.url}/api/runs", json={"document": point_at_m31(1, 1.5)})
    run_id = reply.json()["id"]
    loop = httpx.post(f"{daemon.url}/api/imaging/loop", json={"exposure_s": 1})
    assert loop.status_code == 409
    assert f"run {run_id} is using the camera" in loop.json()["detail"]
    flats = httpx.post(f"{daemon.url}/api/imaging/flats", json={"count": 1})
    assert flats.status_code == 409
    center = httpx.post(f"{daemon.url}/api/imaging/center", json={"frame_id": 1, "x": 1, "y": 1})
    assert center.status_code == 409
    assert f"run {run_id} is using the mount" in center.json()["detail"]
    # The run leaves the mount at M31, where the next tests loop.
    run = wait_for(
        f"{daemon.url}/api/runs/{run_id}", lambda r: r["status"] in FINISHED, timeout_s=60
    )
    assert run["status"] == "completed", run


def test_a_counted_loop_keeps_its_frames_and_shows_their_histogram_stars_and_header(
    daemon: RunningDaemon,
) -> None:
    body = {"exposure_s": 0.5, "filter_name": "L", "binning": 1, "count": 2}
    started = httpx.post(f"{daemon.url}/api/imaging/loop", json=body)
    assert started.status_code == 202, started.text
    assert started.json()["state"] == "running"
    again = httpx.post(f"{daemon.url}/api/imaging/loop", json=body)
    assert again.status_code == 409, again.text
    assert "camera is busy" in again.json()["detail"]

    loop = wait_for(f"{daemon.url}/api/imaging/loop", lambda s: s["state"] != "running")
    assert loop["state"] == "done", loop
    assert loop["frames_taken"] == 2
    last = loop["last_frame"]
    assert last["filter_name"] == "L"
    assert last["star_count"] > 10
    frame = httpx.get(f"{daemon.url}/api/frames/{last['id']}").json()
    assert frame["frame_type"] == "LIGHT"

    fits_bytes = httpx.get(f"{daemon.url}/api/frames/{last['id']}/fits").content
    data = fits.getdata(io.BytesIO(fits_bytes))
    histogram = httpx.get(f"{daemon.url}/api/frames/{last['id']}/histogram").json()
    (counts,) = histogram["channels"]
    assert len(counts) == 256
    # The same binning of the downloaded file: every pixel is counted once, in the same bin.
    expected, _ = np.histogram(data, bins=256, range=(0, 65535))
    assert counts == expected.tolist()
    assert histogram["median_adu"] == pytest.approx(float(np.median(data)))
    # The auto-STF clips the shadows just below the sky and puts the midtones above them.
    assert 0 < histogram["shadows"] < histogram["median_adu"] / 65535
    assert 0 < histogram["midtones"] < 0.5
    assert histogram["highlights"] == 1.0
    zoomed = httpx.get(
        f"{daemon.url}/api/frames/{last['id']}/histogram", params={"upper_adu": 4000}
    ).json()
    expected, _ = np.histogram(data, bins=256, range=(0, 4000))
    assert zoomed["channels"] == [expected.tolist()]
    assert zoomed["upper_adu"] == 4000

    stars = httpx.get(f"{daemon.url}/api/frames/{last['id']}/stars").json()
    assert stars["star_count"] == last["star_count"]
    assert stars["measured_now"] is False  # capture kept them
    assert (stars["width_px"], stars["height_px"]) == (2048, 1536)
    assert all(
        0 <= s["x"] < 2048 and 0 <= s["y"] < 1536 and s["hfr_px"] > 0 for s in stars["stars"]
    )
    # A star sits where the data peaks: the brightest star's pixel is far above the sky.
    brightest = stars["stars"][0]
    assert data[round(brightest["y"]), round(brightest["x"])] > 2 * np.median(data)

    header = httpx.get(f"{daemon.url}/api/frames/{last['id']}/header").json()
    cards = {c["keyword"]: c["value"] for c in header}
    assert cards["IMAGETYP"] == "LIGHT"
    assert cards["FILTER"] == "L"
    assert float(cards["EXPTIME"]) == 0.5


def test_a_loop_until_stopped_stops_on_request(daemon: RunningDaemon) -> None:
    started = httpx.post(f"{daemon.url}/api/imaging/loop", json={"exposure_s": 0.3})
    assert started.status_code == 202, started.text
    wait_for(f"{daemon.url}/api/imaging/loop", lambda s: s["frames_taken"] >= 1)
    stopped = httpx.delete(f"{daemon.url}/api/imaging/loop", timeout=60)
    assert stopped.json()["state"] == "stopped"
    taken = stopped.json()["frames_taken"]
    assert httpx.get(f"{daemon.url}/api/imaging/loop").json()["frames_taken"] == taken
    # The camera is free again.
    assert httpx.post(f"{daemon.url}/api/capture", json={"exposure_s": 0.1}).status_code == 201


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("loop", {"exposure_s": 0}, "exposure_s"),
        ("loop", {"exposure_s": 1, "count": 0}, "count"),
        ("flats", {"source": "moon"}, "source"),
        ("flats", {"target_adu": 70000}, "target_adu"),
        ("flats", {"min_exposure_s": 5, "max_exposure_s": 1}, "min_exposure_s"),
        ("center", {"frame_id": 1, "x": -1, "y": 0}, "x"),
    ],
)
def test_bad_requests_get_422_naming_the_field(
    daemon: RunningDaemon, path: str, body: dict[str, Any], field: str
) -> None:
    reply = httpx.post(f"{daemon.url}/api/imaging/{path}", json=body)
    assert reply.status_code == 422, reply.text
    assert field in [str(part) for part in reply.json()["detail"][0]["loc"]]


def test_a_pixel_outside_the_frame_and_an_unknown_frame_are_refused(
    daemon: RunningDaemon,
) -> None:
    outside = httpx.post(
        f"{daemon.url}/api/imaging/center", json={"frame_id": 1, "x": 5000, "y": 10}
    )
    assert outside.status_code == 422, outside.text
    assert "outside the 2048 x 1536 px frame" in outside.json()["detail"][0]["msg"]
    missing = httpx.post(
        f"{daemon.url}/api/imaging/center", json={"frame_id": 99999, "x": 1, "y": 1}
    )
    assert missing.status_code == 404
    assert httpx.get(f"{daemon.url}/api/frames/99999/histogram").status_code == 404
