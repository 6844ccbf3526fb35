"""The Imaging page in a real headless Chromium against the real daemon (embedded simulators):
a looped exposure with its histogram and stars, autofocus with its V-curve drawn live, the
flats wizard on the flat panel, and "center here" on a point of a solved frame."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from astropy.io import fits
from playwright.sync_api import Page, expect

from drivers.base import RaDec
from processing.solve import ScaleRange, solve
from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for
from tests.daemon.test_api import all_connected
from tests.daemon.test_imaging_api import SIMULATED, point_at_m31, run_to_end

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
