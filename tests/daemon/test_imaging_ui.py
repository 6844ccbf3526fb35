"""Imaging by hand on one real daemon (embedded simulators), over HTTP and on the Imaging page
in a real headless Chromium: what is refused while a run holds the equipment; a looped exposure
with its histogram, stars and header; a loop stopped on request; autofocus with its V-curve
drawn live; the flats wizard on the flat panel; "center here" on a point of a solved frame.

The tests share the daemon and run in file order: the HTTP tests first (the run that holds the
equipment takes frame 1, which the refused centerings name), then the page's."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from astropy.io import fits
from playwright.sync_api import Page, expect

from drivers.base import RaDec
from processing.solve import ScaleRange, solve
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


SCALE_ARCSEC_PX = 3.44
"""The simulator's optics: 10 um pixels at 0.6 m (daemon/simulator/observatory.yaml)."""


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[RunningDaemon]:
    env = {**SIMULATED, "NIGHTOWL_PROCESS_AFTER_RUN": "false", "NIGHTOWL_LIVE_STACK": "false"}
    with running_daemon(tmp_path_factory.mktemp("imaging-ui"), catalog_cache, **env) as d:
        wait_for(f"{d.url}/api/equipment", all_connected, timeout_s=60)
        run_to_end(d, point_at_m31())
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


def api(daemon: RunningDaemon, path: str) -> Any:
    return httpx.get(f"{daemon.url}{path}", timeout=30).json()


def test_a_looped_exposure_shows_its_frame_stars_and_histogram(
    page: Page, daemon: RunningDaemon
) -> None:
    page.goto("/#/imaging")
    form = page.locator("#imaging-frame")
    exposure = page.locator('#exposure-form [data-field="exposure_s"]')
    exposure.locator("input").fill("0")
    page.locator("#take-one").click()  # refused: the daemon's reason shows beside the field
    expect(exposure.locator(".field-error")).to_contain_text("greater than 0")
    exposure.locator("input").fill("0.5")
    page.locator('#exposure-form [data-field="filter_name"] select').select_option("L")
    page.locator('#exposure-form [data-field="count"] input').fill("2")
    page.locator("#loop-start").click()
    expect(page.locator("#loop-state")).to_have_attribute("data-state", "done", timeout=30_000)
    expect(page.locator("#loop-state")).to_contain_text("done: 2 frame(s) of 2")
    loop = api(daemon, "/api/imaging/loop")
    frame_id = loop["last_frame"]["id"]
    expect(form).to_have_attribute("data-frame-id", str(frame_id))

    histogram = api(daemon, f"/api/frames/{frame_id}/histogram")
    expect(page.locator("#histogram-median")).to_have_text(f"{histogram['median_adu']:.0f} ADU")
    expect(page.locator("#stf-shadows")).to_contain_text(f"{histogram['shadows']:.5f}")
    # The bars cover the frame's own range (0 to a bit past its brightest 0.1 %), finely.
    expect(page.locator("svg.histogram rect.bar")).to_have_count(256)
    upper = float(page.locator("svg.histogram").get_attribute("data-upper") or "nan")
    assert histogram["median_adu"] < upper < 65535 / 4
    expect(page.locator("svg.histogram line.handle")).to_have_count(3)

    stars = api(daemon, f"/api/frames/{frame_id}/stars")
    expect(page.locator("#star-count")).to_have_text(f"{stars['star_count']} stars")
    expect(page.locator("#star-overlay circle.star")).to_have_count(len(stars["stars"]))
    expect(page.locator("#fits-header")).to_contain_text("IMAGETYP")

    # 100 %: one screen pixel per frame pixel, scrolled inside the card; fit: the card's width.
    page.locator("#zoom-100").click()
    assert page.locator("#imaging-image").bounding_box()["width"] == pytest.approx(2048, abs=1)
    page.locator("#zoom-fit").click()
    assert page.locator("#imaging-image").bounding_box()["width"] < 1400


def test_autofocus_draws_its_v_curve_as_the_samples_come(page: Page, daemon: RunningDaemon) -> None:
    page.goto("/#/imaging")
    page.locator('#focus-form [data-field="steps_out"] input').fill("3")
    page.locator('#focus-form [data-field="exposure_s"] input').fill("0.5")
    page.locator("#autofocus-run").click()
    chart = page.locator("#v-curve")
    # A sample is drawn while the autofocus still runs (its POST has not answered yet).
    expect(chart).to_have_attribute("data-points", re.compile(r"^[1-6]$"), timeout=30_000)
    expect(page.locator("#focus-state")).to_have_text("Running…")
    expect(page.locator("#focus-state")).to_contain_text("Focused at", timeout=60_000)
    report = httpx.get(f"{daemon.url}/api/autofocus").json()[0]["report"]
    expect(chart.locator("circle.sample")).to_have_count(len(report["points"]))
    expect(chart.locator("path.fit")).to_have_count(1)


def test_the_flats_wizard_finds_the_exposure_and_shoots_each_filter_on_the_panel(
    page: Page, daemon: RunningDaemon
) -> None:
    page.goto("/#/imaging")
    for name in ("R", "G"):
        page.locator(f'.filter-choices input[value="{name}"]').check()
    page.locator('#flats-form [data-field="count"] input').fill("2")
    page.locator('#flats-form [data-field="source"] select').select_option("panel")
    page.locator('#flats-form [data-field="target_adu"] input').fill("16000")
    page.locator("#flats-start").click()
    state = page.locator("#flats-state")
    expect(state).to_have_attribute("data-state", "done", timeout=60_000)
    for name in ("R", "G"):
        expect(state.locator(f'tr[data-filter="{name}"] td.taken')).to_have_text("2 / 2")
    job = api(daemon, "/api/imaging/flats")
    for filter_flats in job["filters"]:
        assert len(filter_flats["frame_ids"]) == 2
        for frame_id in filter_flats["frame_ids"]:
            frame = api(daemon, f"/api/frames/{frame_id}")
            assert (frame["frame_type"], frame["filter_name"]) == (
                "FLAT",
                filter_flats["filter_name"],
            )
            median = api(daemon, f"/api/frames/{frame_id}/histogram")["median_adu"]
            assert abs(median - 16_000) <= 0.1 * 16_000, median
    # The panel is off again and the cover open, as before the wizard.
    wait_for(
        f"{daemon.url}/api/equipment",
        lambda eq: any(
            d["role"] == "cover_calibrator"
            and (d["status"]["cover"], d["status"]["calibrator"]) == ("OPEN", "OFF")
            for d in eq["devices"]
        ),
    )


def test_center_here_slews_the_mount_to_the_clicked_point_of_a_solved_frame(
    page: Page, daemon: RunningDaemon, catalog_cache: Path
) -> None:
    reply = httpx.post(f"{daemon.url}/api/imaging/loop", json={"exposure_s": 1.0, "count": 1})
    assert reply.status_code == 202, reply.text
    loop = wait_for(f"{daemon.url}/api/imaging/loop", lambda s: s["state"] != "running")
    frame_id = loop["last_frame"]["id"]
    page.goto("/#/imaging")
    expect(page.locator("#imaging-frame")).to_have_attribute("data-frame-id", str(frame_id))
    page.locator("#center-here").click()
    box = page.locator("#imaging-image").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 0.7 * box["width"], box["y"] + 0.3 * box["height"])
    result = page.locator("#center-result")
    expect(result).to_have_class(re.compile(r"\bgood\b"), timeout=90_000)
    x, y = (
        float(result.get_attribute("data-x") or "nan"),
        float(result.get_attribute("data-y") or "nan"),
    )
    assert x == pytest.approx(0.7 * 2048, abs=4)
    assert y == pytest.approx(0.3 * 1536, abs=4)

    # The clicked pixel's sky position, from our own solve of the frame as stored.
    data = fits.getdata(io.BytesIO(httpx.get(f"{daemon.url}/api/frames/{frame_id}/fits").content))
    wcs = solve(data, scale=ScaleRange.around(SCALE_ARCSEC_PX), cache_dir=catalog_cache).wcs
    ra_deg, dec_deg = (float(v) for v in wcs.pixel_to_world_values(x, y))
    clicked = RaDec(ra_deg / 15.0, dec_deg)

    def mount_there(equipment: dict[str, Any]) -> bool:
        (mount,) = [d for d in equipment["devices"] if d["role"] == "mount"]
        position = mount["status"]["position"]
        here = RaDec(position["ra_hours"], position["dec_deg"])
        # The centering's tolerance is 1'; the mount reports where it points within it.
        return bool(here.separation_deg(clicked) * 60 < 1.5 and not mount["status"]["slewing"])

    wait_for(f"{daemon.url}/api/equipment", mount_there, timeout_s=15)
    # The point lies ~0.6 deg from where the frame was taken: the mount really moved.
    frame = api(daemon, f"/api/frames/{frame_id}")
    taken_at = RaDec(frame["ra_deg"] / 15.0, frame["dec_deg"])
    assert taken_at.separation_deg(clicked) > 0.3
