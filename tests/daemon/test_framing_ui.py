"""Targets and the Framing page on one real daemon (a headless Chromium for the page): names
and coordinates found, the framing chart, the camera field from the simulator's camera and
mount, framings added to a template and a plan over HTTP; on the page, M31 found by name and
by sexagesimal coordinates, framed with a rotated field and a mosaic, added to a template; a
light of ours taken at M31 laid under its chart (over HTTP: its solved corners; on the page:
its preview, placed over the camera field, and hidden by its checkbox)."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from astropy.io import fits
from playwright.sync_api import Page, expect

from daemon.targets import BRIGHT_STARS
from drivers.base import RaDec
from processing.catalog import load_gaia_stars
from processing.solve import ScaleRange, solve
from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for
from tests.daemon.test_api import all_connected
from tests.daemon.test_imaging_ui import SCALE_ARCSEC_PX, point_at_m31, run_to_end

SIMULATED = {"NIGHTOWL_CLOCK": "simulated", "NIGHTOWL_CLOCK_START": "2026-11-22T20:00:00Z"}


M31_RA_H = 0 + 42 / 60 + 44.3 / 3600
M31_DEC = 41 + 16 / 60 + 9 / 3600


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path, simulator_url: str
) -> Iterator[RunningDaemon]:
    env = {
        **SIMULATED,
        "NIGHTOWL_SIMULATOR_URL": simulator_url,
        "NIGHTOWL_PROCESS_AFTER_RUN": "false",
        "NIGHTOWL_LIVE_STACK": "false",
    }
    with running_daemon(tmp_path_factory.mktemp("framing-daemon"), catalog_cache, **env) as d:
        wait_for(f"{d.url}/api/equipment", all_connected)
        example = next(
            e
            for e in httpx.get(f"{d.url}/api/templates/examples").json()
            if e["file"] == "two_targets.json"
        )
        document = example["document"] | {"name": "Autumn galaxies"}
        assert httpx.post(f"{d.url}/api/templates", json={"document": document}).status_code == 201
        yield d


def find(page: Page, text: str) -> None:
    page.fill("#framing-query", text)
    page.click("#framing-query + button")


def test_m31_found_by_name_and_coordinates_framed_rotated_and_added_to_a_template(
    page: Page, daemon: RunningDaemon
) -> None:
    page.goto("/#/framing")
    expect(page.locator("#framing-focal")).to_have_value("600")
    expect(page.locator("#framing-fov")).to_contain_text("1.96° × 1.47°")

    find(page, "Andromeda Galaxy")
    result = page.locator('#framing-results li[data-name="M31"]')
    expect(result).to_contain_text("NGC 224")
    expect(result).to_contain_text("00h42m44.35s +41d16m08.6s")
    expect(page.locator('#framing-chart g[data-object="M31"] path.dso.main')).to_have_count(1)
    assert page.locator("#framing-chart circle.star").count() > 30
    expect(page.locator("#framing-name")).to_have_value("M31")

    find(page, "00 42 44.3 +41 16 09")
    expect(page.locator("#framing-results li")).to_have_count(1)
    expect(page.locator("#framing-results")).to_contain_text("coordinates")
    expect(page.locator("#framing-ra")).to_have_value("00h42m44.30s")
    expect(page.locator("#framing-dec")).to_have_value("+41d16m09.0s")
    expect(page.locator("#framing-centre")).to_contain_text("(0.71231 h)")

    # A typed angle turns the frame; the handle turns it further by dragging.
    page.fill("#framing-angle", "30")
    page.press("#framing-angle", "Tab")
    frame = page.locator("#framing-frame")
    expect(frame).to_have_attribute("data-angle", "30.0")
    handle = page.locator("#framing-rotate").bounding_box()
    centre = page.locator("#framing-frame circle.centre").bounding_box()
    assert handle is not None
    assert centre is not None
    cx, cy = centre["x"] + centre["width"] / 2, centre["y"] + centre["height"] / 2
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(cx - 80, cy, steps=4)  # straight left of the centre: east, 90°
    page.mouse.up()
    expect(frame).to_have_attribute("data-angle", "90.0")
    expect(page.locator("#framing-angle")).to_have_value("90.0")

    # Dragging the frame moves its centre (east, to a larger RA) but keeps its declination.
    page.mouse.move(cx, cy + 20)
    page.mouse.down()
    page.mouse.move(cx - 30, cy + 20, steps=3)
    page.mouse.up()
    expect(page.locator("#framing-ra")).not_to_have_value("00h42m44.30s")
    ra_after = page.locator("#framing-ra").input_value()
    assert ra_after > "00h42m44.30s", ra_after

    page.fill("#framing-name", "M31 framed")
    page.press("#framing-name", "Tab")
    page.select_option("#framing-template", label="Autumn galaxies")
    page.click("#framing-add-template")
    expect(page.locator("#framing-added")).to_contain_text("Added M31 framed to Autumn galaxies")

    templates = httpx.get(f"{daemon.url}/api/templates").json()
    (template,) = [t for t in templates if t["name"] == "Autumn galaxies"]
    added = template["document"]["targets"][-1]
    assert added["target_name"] == "M31 framed"
    assert added["rotation_deg"] == 90.0
    hours = added["coordinates"]["ra_hours"]
    shown = re.match(r"(\d+)h(\d+)m([\d.]+)s", ra_after)
    assert shown is not None
    typed = int(shown[1]) + int(shown[2]) / 60 + float(shown[3]) / 3600
    assert hours == pytest.approx(typed, abs=0.02 / 3600)  # the form's 0.01 s, rounded
    assert added["coordinates"]["dec_deg"] == pytest.approx(41.2692, abs=0.01)


def test_a_mosaic_adds_one_target_per_panel_and_bad_coordinates_are_refused_beside_the_field(
    page: Page, daemon: RunningDaemon
) -> None:
    page.goto("/#/framing")
    expect(page.locator("#framing-focal")).to_have_value("600")
    find(page, "M31")
    expect(page.locator('#framing-chart g[data-object="M31"]')).to_have_count(1)
    page.fill("#framing-cols", "2")
    page.press("#framing-cols", "Tab")
    page.fill("#framing-rows", "2")
    page.press("#framing-rows", "Tab")
    expect(page.locator("#framing-chart path.panel")).to_have_count(4)
    page.select_option("#framing-template", label="Autumn galaxies")
    page.click("#framing-add-template")
    expect(page.locator("#framing-added")).to_contain_text("M31 Panel 4")
    template = next(
        t for t in httpx.get(f"{daemon.url}/api/templates").json() if t["name"] == "Autumn galaxies"
    )
    panels = [
        t for t in template["document"]["targets"] if t["target_name"].startswith("M31 Panel")
    ]
    assert [p["target_name"] for p in panels] == [f"M31 Panel {i}" for i in range(1, 5)]
    decs = sorted(p["coordinates"]["dec_deg"] for p in panels)
    # Rows 1.47° x 90 % apart: the upper two panels lie ~1.32° north of the lower two.
    assert decs[2] - decs[1] == pytest.approx(1.32, abs=0.05)

    page.fill("#framing-dec", "+41 75 00")
    page.press("#framing-dec", "Tab")
    expect(page.locator("#framing-dec-error")).to_contain_text("+41d16m09s")
    expect(page.locator("#framing-ra-error")).to_have_text("")


def test_the_framing_page_fits_a_phone(page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto("/#/framing")
    find(page, "M42")
    expect(page.locator('#framing-chart g[data-object="M42"]')).to_have_count(1)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width


def search(daemon: RunningDaemon, q: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{daemon.url}/api/targets/search", params={"q": q, "limit": 5})
    assert reply.status_code == 200, reply.text
    found: list[dict[str, Any]] = reply.json()
    return found


def test_targets_are_found_by_designation_common_name_star_name_and_coordinates(
    daemon: RunningDaemon,
) -> None:
    for q in ("M31", "m 31", "Messier 31", "NGC 224", "ngc0224", "Andromeda Galaxy", "andromeda"):
        (first, *_) = search(daemon, q)
        assert first["name"] == "M31", q
    m31 = search(daemon, "M31")[0]
    assert m31["kind"] == "galaxy"
    assert "NGC 224" in m31["aliases"]
    assert m31["ra_hms"] == "00h42m44.35s"
    assert m31["dec_dms"] == "+41d16m08.6s"
    assert m31["size_arcmin"] == pytest.approx([177.83, 69.66])
    assert m31["position_angle_deg"] == 35
    assert search(daemon, "Orion Nebula")[0]["name"] == "M42"
    assert search(daemon, "IC 434")[0]["aliases"][0] == "Flame Nebula"
    vega = search(daemon, "vega")[0]
    assert (vega["kind"], vega["name"]) == ("star", "Vega")
    assert search(daemon, "no such object anywhere") == []

    (typed,) = search(daemon, "00 42 44.3 +41 16 09")
    assert typed["kind"] == "coordinates"
    assert typed["ra_hms"] == "00h42m44.30s"
    assert typed["dec_dms"] == "+41d16m09.0s"
    assert typed["ra_hours"] == pytest.approx(M31_RA_H, abs=1e-9)
    assert search(daemon, "0h42m44.3s +41d16m09s")[0]["dec_deg"] == pytest.approx(M31_DEC)


def test_the_chart_holds_the_field_and_refuses_unreadable_coordinates(
    daemon: RunningDaemon,
) -> None:
    params = {"ra": "00:42:44.3", "dec": "+41 16 09", "radius_deg": 1.5, "mag_limit": 9}
    reply = httpx.get(f"{daemon.url}/api/targets/chart", params=params)
    assert reply.status_code == 200, reply.text
    chart = reply.json()
    assert (chart["ra_hms"], chart["dec_dms"]) == ("00h42m44.30s", "+41d16m09.0s")
    assert len(chart["stars"]) > 30
    assert max(s["magnitude"] for s in chart["stars"]) <= 9
    for star in chart["stars"]:
        dra = (star["ra_hours"] - M31_RA_H) * 15 * math.cos(math.radians(M31_DEC))
        assert math.hypot(dra, star["dec_deg"] - M31_DEC) < 1.55  # flat-sky slack at 1.5 deg
    names = [o["name"] for o in chart["objects"]]
    assert names[0] == "M31"  # the largest first
    assert {"M32", "M110"} <= set(names)

    bad = httpx.get(f"{daemon.url}/api/targets/chart", params={"ra": "noon", "dec": "41"})
    assert bad.status_code == 422
    (problem,) = bad.json()["detail"]
    assert problem["loc"] == ["query", "ra"]
    assert "00 42 44.3" in problem["msg"]
    south = httpx.get(f"{daemon.url}/api/targets/chart", params={"ra": "1", "dec": "-95"})
    assert south.status_code == 422
    assert south.json()["detail"][0]["loc"] == ["query", "dec"]


def test_the_camera_field_comes_from_the_camera_and_the_focal_length(
    daemon: RunningDaemon,
) -> None:
    reply = httpx.get(f"{daemon.url}/api/targets/fov")
    assert reply.status_code == 200, reply.text
    fov = reply.json()
    # The simulator: 2048 x 1536 pixels of 10 um behind 600 mm.
    assert (fov["width_px"], fov["height_px"], fov["focal_length_mm"]) == (2048, 1536, 600)
    assert fov["pixel_scale_arcsec"] == pytest.approx(3.438, abs=1e-3)
    assert fov["width_deg"] == pytest.approx(1.9556, abs=1e-3)
    assert fov["height_deg"] == pytest.approx(1.4669, abs=1e-3)


def test_framings_are_added_to_a_template_and_a_plan(daemon: RunningDaemon) -> None:
    api = f"{daemon.url}/api"
    example = next(
        e for e in httpx.get(f"{api}/templates/examples").json() if e["file"] == "two_targets.json"
    )
    document = example["document"] | {"name": "framing target list"}
    # Templates take sexagesimal text too, and store numbers.
    document["targets"][0]["coordinates"] = {"ra_hours": "00 42 44.3", "dec_deg": "+41 16 09"}
    created = httpx.post(f"{api}/templates", json={"document": document})
    assert created.status_code == 201, created.text
    template = created.json()
    kept = template["document"]["targets"][0]["coordinates"]
    assert kept["ra_hours"] == pytest.approx(M31_RA_H)
    before = len(template["document"]["targets"])

    panels = [
        {
            "name": "M31 Panel 1",
            "ra_hours": "0h40m00s",
            "dec_deg": "+41d00m00s",
            "rotation_deg": 35,
        },
        {"name": "M31 Panel 2", "ra_hours": 0.75, "dec_deg": 41.5, "rotation_deg": 35},
    ]
    body = {"template_id": template["id"], "targets": panels}
    added = httpx.post(f"{api}/targets/add-to-template", json=body)
    assert added.status_code == 200, added.text
    assert added.json()["added"] == ["M31 Panel 1", "M31 Panel 2"]
    stored = httpx.get(f"{api}/templates/{template['id']}").json()["document"]["targets"]
    assert len(stored) == before + 2
    first = stored[before]
    assert first["target_name"] == "M31 Panel 1"
    assert first["coordinates"] == {"ra_hours": pytest.approx(40 / 60), "dec_deg": 41.0}
    assert first["rotation_deg"] == 35
    # A copy of the template's first target: same kinds of items, triggers and conditions.
    model = stored[0]
    assert [i["kind"] for i in first["items"]] == [i["kind"] for i in model["items"]]
    assert [t["kind"] for t in first["triggers"]] == [t["kind"] for t in model["triggers"]]

    bad = httpx.post(
        f"{api}/targets/add-to-template",
        json={"template_id": template["id"], "targets": [panels[0] | {"dec_deg": "+41 61 00"}]},
    )
    assert bad.status_code == 422
    (problem,) = bad.json()["detail"]
    assert problem["loc"] == ["body", "targets", 0, "dec_deg"]
    assert "+41d16m09s" in problem["msg"]
    missing = httpx.post(f"{api}/targets/add-to-template", json=body | {"template_id": 99_999})
    assert missing.status_code == 404

    goals = [{"filter_name": "L", "exposure_s": 120, "count": 20}]
    plan = {
        "name": "framing plan",
        "template_id": template["id"],
        "targets": [
            {"name": "M33", "coordinates": {"ra_hours": 1.564, "dec_deg": 30.66}, "goals": goals}
        ],
    }
    plan_row = httpx.post(f"{api}/plans", json={"plan": plan, "enabled": False})
    assert plan_row.status_code == 201, plan_row.text
    plan_id = plan_row.json()["id"]
    added_plan = httpx.post(
        f"{api}/targets/add-to-plan",
        json={"plan_id": plan_id, "targets": [panels[0] | {"name": "M31"}]},
    )
    assert added_plan.status_code == 200, added_plan.text
    targets = httpx.get(f"{api}/plans/{plan_id}").json()["plan"]["targets"]
    assert [t["name"] for t in targets] == ["M33", "M31"]
    assert targets[1]["goals"][0]["count"] == 20  # the plan's first target's goals
    assert targets[1]["rotation_deg"] == 35
    twice = httpx.post(
        f"{api}/targets/add-to-plan",
        json={"plan_id": plan_id, "targets": [panels[1] | {"name": "M31"}]},
    )
    assert twice.status_code == 422
    assert "already has a target named 'M31'" in twice.json()["detail"][0]["msg"]


def test_every_named_star_is_a_bright_star_of_the_catalog() -> None:
    """The star-name table agrees with the Gaia / Hipparcos catalog: a star brighter than
    magnitude 4.5 lies within 2' of each name (2': proper motions between epochs)."""
    stars = load_gaia_stars()
    bright = stars[stars["g_mag"] < 4.5]
    for name, _bayer, ra_h, dec, _mag in BRIGHT_STARS:
        dra = (bright["ra_deg"] - ra_h * 15 + 180) % 360 - 180
        sep = np.hypot(dra * np.cos(np.radians(dec)), bright["dec_deg"] - dec)
        assert sep.min() * 60 < 2.0, f"{name}: nearest bright star {sep.min() * 60:.1f}' away"


@pytest.fixture(scope="module")
def m31_light(daemon: RunningDaemon) -> dict[str, Any]:
    """A light of ours taken at M31 (a short run: unpark, slew, one 1 s exposure)."""
    run_to_end(daemon, point_at_m31(count=1))
    reply = httpx.get(f"{daemon.url}/api/frames/latest", params={"frame_type": "LIGHT"})
    assert reply.status_code == 200, reply.text
    newest: dict[str, Any] = reply.json()
    return newest


def underlay(daemon: RunningDaemon, ra: object, dec: object, radius_deg: float) -> httpx.Response:
    params = {"ra": ra, "dec": dec, "radius_deg": radius_deg}
    return httpx.get(f"{daemon.url}/api/targets/underlay", params=params, timeout=120)


def test_a_light_of_ours_lies_under_the_chart_at_its_solved_corners(
    daemon: RunningDaemon, m31_light: dict[str, Any], catalog_cache: Path
) -> None:
    reply = underlay(daemon, "00 42 44.3", "+41 16 09", 2.0)
    assert reply.status_code == 200, reply.text
    found = reply.json()
    frame_id = m31_light["id"]
    assert found["frame_id"] == frame_id
    assert found["preview_url"] == f"/api/frames/{frame_id}/preview.jpg"
    assert httpx.get(f"{daemon.url}{found['preview_url']}").status_code == 200
    assert (found["width_px"], found["height_px"]) == (2048, 1536)
    assert found["taken_at"][:19] == m31_light["exposure_start_utc"][:19]
    corners = found["corners"]
    assert [(c["x"], c["y"]) for c in corners] == [(0, 0), (2048, 0), (2048, 1536), (0, 1536)]

    # The frame's own solve (the test's, from the stored FITS) agrees with the corners.
    fits_bytes = httpx.get(f"{daemon.url}/api/frames/{frame_id}/fits").content
    data = fits.getdata(io.BytesIO(fits_bytes))
    solved = solve(data, scale=ScaleRange.around(SCALE_ARCSEC_PX), cache_dir=catalog_cache)
    sky = [RaDec(c["ra_hours"], c["dec_deg"]) for c in corners]
    vectors = np.array(
        [
            [
                math.cos(math.radians(p.dec_deg)) * math.cos(math.radians(p.ra_deg)),
                math.cos(math.radians(p.dec_deg)) * math.sin(math.radians(p.ra_deg)),
                math.sin(math.radians(p.dec_deg)),
            ]
            for p in sky
        ]
    ).mean(axis=0)
    middle = RaDec(
        (math.degrees(math.atan2(vectors[1], vectors[0])) / 15.0) % 24.0,
        math.degrees(math.atan2(vectors[2], math.hypot(vectors[0], vectors[1]))),
    )
    centre = RaDec(solved.ra_deg / 15.0, solved.dec_deg)
    assert middle.separation_deg(centre) * 60 < 3.0
    # Top and bottom edges span the camera's width, the sides its height (1.96 x 1.47 deg).
    for a, b, span in ((0, 1, 1.9556), (3, 2, 1.9556), (0, 3, 1.4669), (1, 2, 1.4669)):
        assert sky[a].separation_deg(sky[b]) == pytest.approx(span, rel=0.05), (a, b)

    # Far from any frame of ours: nothing; a centre that does not read: 422 naming it.
    none = underlay(daemon, "12 00 00", "-30 00 00", 2.0)
    assert none.status_code == 404
    assert none.json()["detail"] == "no solved frame of ours near this field"
    bad = underlay(daemon, "noon", "41", 2.0)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "ra"]


def test_the_page_lays_our_frame_under_the_m31_chart_and_hides_it_on_request(
    page: Page, daemon: RunningDaemon, m31_light: dict[str, Any]
) -> None:
    frame_id = m31_light["id"]
    page.goto("/#/framing")
    expect(page.locator("#framing-focal")).to_have_value("600")
    find(page, "M31")
    image = page.locator("#framing-underlay-image")
    expect(image).to_have_attribute("data-frame-id", str(frame_id), timeout=60_000)
    toggle = page.locator("#framing-underlay")
    expect(toggle).to_have_text(f"our frame #{frame_id} under the chart")
    expect(page.locator("#framing-chart-note")).to_contain_text(f"Under it: our frame #{frame_id}")
    # Taken at M31 with the camera unrotated, the picture covers the camera field drawn there.
    picture = image.bounding_box()
    field = page.locator('#framing-frame path.panel[data-panel="1"]').bounding_box()
    assert picture is not None
    assert field is not None
    assert picture["width"] == pytest.approx(field["width"], rel=0.08)
    assert picture["height"] == pytest.approx(field["height"], rel=0.08)
    assert picture["x"] + picture["width"] / 2 == pytest.approx(
        field["x"] + field["width"] / 2, abs=0.04 * field["width"]
    )
    assert picture["y"] + picture["height"] / 2 == pytest.approx(
        field["y"] + field["height"] / 2, abs=0.04 * field["height"]
    )

    page.locator("#framing-underlay-toggle").uncheck()
    expect(image).to_have_count(0)
    expect(page.locator("#framing-chart-note")).not_to_contain_text("Under it")
    page.locator("#framing-underlay-toggle").check()
    expect(image).to_have_count(1)
