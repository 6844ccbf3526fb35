"""The Framing page in a real headless Chromium against the real daemon: M31 found by name and
by sexagesimal coordinates, framed with a rotated field and a mosaic, added to a template."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for
from tests.daemon.test_api import all_connected

SIMULATED = {"NIGHTOWL_CLOCK": "simulated", "NIGHTOWL_CLOCK_START": "2026-11-22T20:00:00Z"}


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path, simulator_url: str
) -> Iterator[RunningDaemon]:
    env = {
        **SIMULATED,
        "NIGHTOWL_SIMULATOR_URL": simulator_url,
        "NIGHTOWL_PROCESS_AFTER_RUN": "false",
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
