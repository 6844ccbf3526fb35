"""The Equipment page in a real headless Chromium against the real daemon: the profile form
refuses a bad address beside its field, saves, connects a device; the horizon is uploaded
and drawn; the page fits a phone's width."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, FilePayload, Page, expect

from daemon.simulator.rig import simulator_profile
from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path, simulator_url: str
) -> Iterator[RunningDaemon]:
    data_dir = tmp_path_factory.mktemp("equipment-ui")
    camera = simulator_profile(simulator_url).camera
    assert camera is not None
    profile = data_dir / "pier.yaml"
    profile.write_text(
        f"name: pier\ncamera: {{url: '{camera.url}', device_number: {camera.device_number}}}\n"
    )
    env = {"NIGHTOWL_EQUIPMENT_PROFILE": str(profile), "NIGHTOWL_CONNECT_ON_START": "false"}
    with running_daemon(data_dir, catalog_cache, **env) as running:
        yield running


def test_a_profile_is_edited_refused_beside_its_field_saved_and_a_device_connected(
    page: Page, daemon: RunningDaemon, simulator_url: str
) -> None:
    focuser = simulator_profile(simulator_url).focuser
    assert focuser is not None
    page.goto("/#/equipment")
    camera = page.locator('.role-card[data-role="camera"]')
    expect(camera.locator('input[name="camera.url"]')).to_have_value(simulator_url)
    card = page.locator('.role-card[data-role="focuser"]')
    expect(card.locator('input[name="focuser.url"]')).to_have_count(0)
    card.locator('input[name="use-focuser"]').check()
    card.locator('input[name="focuser.url"]').fill("ftp://nowhere")
    card.locator('input[name="focuser.move_timeout_s"]').fill("75")
    page.click(".save-profile")
    beside = card.locator('[data-path="focuser.url"] .field-error')
    expect(beside).to_contain_text("must look like http://host:port")
    expect(page.locator(".save-status")).to_contain_text("Not saved")
    assert "focuser" not in yaml.safe_load((daemon.data_dir / "pier.yaml").read_text())

    card.locator('input[name="focuser.url"]').fill(focuser.url)
    page.click(".save-profile")
    expect(page.locator(".save-status")).to_contain_text("Restart the daemon")
    expect(beside).to_be_empty()
    written = yaml.safe_load((daemon.data_dir / "pier.yaml").read_text())
    assert written["focuser"] == {"url": focuser.url, "move_timeout_s": 75}

    card.locator(".test-device").click()
    expect(card.locator(".test-result")).to_contain_text(re.compile(r"^Connected: "))
    # The camera is the daemon's own: tested here, the daemon shows it connected.
    assert httpx.get(f"{daemon.url}/api/equipment").json()["devices"][0]["connected"] is False
    camera.locator(".test-device").click()
    expect(camera.locator(".test-result")).to_contain_text("Connected")
    wait_for(
        f"{daemon.url}/api/equipment",
        lambda e: e["devices"][0]["connected"] is True,  # type: ignore[index]
    )


def test_a_horizon_is_uploaded_drawn_and_a_bad_file_named(page: Page) -> None:
    page.goto("/#/equipment")
    upload = page.locator('input[name="horizon-file"]')
    upload.set_input_files(
        FilePayload(name="bad.hrz", mimeType="text/plain", buffer=b"0 10\nx y z\n")
    )
    expect(page.locator(".horizon-error")).to_contain_text(re.compile(r"^bad\.hrz: .*line 2"))
    text = b"# trees to the east\n0 12\n90 30\n180 8\n270 18\n"
    upload.set_input_files(FilePayload(name="trees.hrz", mimeType="text/plain", buffer=text))
    expect(page.locator(".horizon-status")).to_contain_text("next start")
    expect(page.locator(".horizon-error")).to_be_empty()
    expect(page.locator("svg.horizon-plot circle.horizon-point")).to_have_count(4)
    page.reload()
    expect(page.locator("svg.horizon-plot circle.horizon-point")).to_have_count(4)


def test_the_equipment_page_fits_a_phone(browser: Browser, daemon: RunningDaemon) -> None:
    context = browser.new_context(base_url=daemon.url, viewport={"width": 390, "height": 800})
    try:
        tab = context.new_page()
        tab.goto("/#/equipment")
        expect(
            tab.locator('.role-card[data-role="camera"] input[name="camera.url"]')
        ).to_be_visible()
        width = tab.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390
    finally:
        context.close()
