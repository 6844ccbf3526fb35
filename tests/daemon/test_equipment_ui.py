"""The profile API and the Equipment page on one real daemon (a headless Chromium for the
page): the profile read, refused by field and saved as YAML (atomic, the old file kept); the
site kept in the profile (sexagesimal accepted), used until the mount reports its own, and a
warning when the two differ; devices connected; the custom horizon uploaded, read back and
drawn; the page fits a phone's width.

The tests share the daemon and run in file order: the API saves a filter wheel, the page a
focuser and the mount's site."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, FilePayload, Page, expect

from daemon.simulator.rig import simulator_profile
from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for

SITE = {"latitude_deg": 47.375, "longitude_deg": 8.0, "elevation_m": 450.0}
"""The site the daemon starts with (its file gives the latitude as +47 22 30); the simulated
mount reports 47.0, 8.0, 450 m."""


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path, simulator_url: str
) -> Iterator[RunningDaemon]:
    data_dir = tmp_path_factory.mktemp("equipment-ui")
    simulated = simulator_profile(simulator_url)
    camera, mount = simulated.camera, simulated.mount
    assert camera is not None
    assert mount is not None
    profile = data_dir / "pier.yaml"
    profile.write_text(
        "# the pier's camera\nname: pier\n"
        f"camera: {{url: '{camera.url}', device_number: {camera.device_number}}}\n"
        f"mount: {{url: '{mount.url}', device_number: {mount.device_number}}}\n"
        "site: {latitude_deg: '+47 22 30', longitude_deg: 8, elevation_m: 450}\n"
    )
    env = {"NIGHTOWL_EQUIPMENT_PROFILE": str(profile), "NIGHTOWL_CONNECT_ON_START": "false"}
    with running_daemon(data_dir, catalog_cache, **env) as running:
        yield running


def test_a_profile_is_refused_by_field_then_saved_with_a_backup(
    daemon: RunningDaemon, simulator_url: str
) -> None:
    url = f"{daemon.url}/api/profile"
    read = httpx.get(url).json()
    path = Path(read["path"])
    assert path == daemon.data_dir / "pier.yaml"
    assert (read["embedded"], read["in_use"], read["file_exists"]) == (False, True, True)
    assert read["profile"]["name"] == "pier"
    assert read["profile"]["camera"]["url"] == simulator_url
    # No mount connected yet: the profile's site is the one in use.
    assert read["profile"]["site"] == SITE
    assert (read["site"], read["site_source"]) == (SITE, "profile")
    assert (read["mount_site"], read["site_warning"]) == (None, None)
    schema = httpx.get(f"{url}/schema").json()
    assert "focuser" in schema["properties"]
    latitude = schema["$defs"]["ObservingSite"]["properties"]["latitude_deg"]
    assert {option["type"] for option in latitude["anyOf"]} == {"number", "string"}

    edited: dict[str, Any] = {**read["profile"], "focuser": {"url": "ftp://nowhere"}}
    refused = httpx.put(url, json=edited)
    assert refused.status_code == 422
    (problem,) = refused.json()["detail"]
    assert problem["loc"] == ["body", "focuser", "url"]
    assert "http://host:port" in problem["msg"]
    del edited["focuser"]
    for latitude_text, why in (("north", "+47 22 30"), ("91 00 00", "less than or equal to 90")):
        edited["site"] = {**SITE, "latitude_deg": latitude_text}
        refused = httpx.put(url, json=edited)
        assert refused.status_code == 422
        (problem,) = refused.json()["detail"]
        assert problem["loc"] == ["body", "site", "latitude_deg"]
        assert why in problem["msg"]
    assert path.read_text().startswith("# the pier's camera")  # untouched

    wheel = simulator_profile(simulator_url).filter_wheel
    assert wheel is not None
    assert wheel.device_number == 0
    edited["filter_wheel"] = {"url": wheel.url, "device_number": wheel.device_number}
    edited["filter_wheel"]["move_timeout_s"] = 75
    edited["site"] = {"latitude_deg": "47:22:30", "longitude_deg": "8d00m00s", "elevation_m": 450}
    saved = httpx.put(url, json=edited)
    assert saved.status_code == 200, saved.text
    answer = saved.json()
    assert answer["restart_needed"] is True
    assert "Restart the daemon" in answer["message"]
    assert answer["site_warning"] is None  # the mount is not connected
    assert Path(answer["backup"]).read_text().startswith("# the pier's camera")
    written = yaml.safe_load(path.read_text())
    # Defaults are left out of the file (device number 0, the native guider).
    assert written["filter_wheel"] == {"url": wheel.url, "move_timeout_s": 75}
    assert "guider" not in written
    assert written["site"] == SITE  # sexagesimal text is saved as decimal degrees
    assert httpx.get(url).json()["profile"]["filter_wheel"]["move_timeout_s"] == 75


def test_a_profile_is_edited_refused_beside_its_field_saved_and_a_device_connected(
    page: Page, daemon: RunningDaemon, simulator_url: str
) -> None:
    focuser = simulator_profile(simulator_url).focuser
    assert focuser is not None
    page.goto("/#/equipment")
    camera = page.locator('.role-card[data-role="camera"]')
    expect(camera.locator('input[name="camera.url"]')).to_have_value(simulator_url)
    site_card = page.locator("#site-card")
    expect(site_card.locator(".site-source")).to_contain_text("the profile's")
    expect(site_card.locator(".latitude")).to_have_text("47.37500°")
    latitude = page.locator('[data-path="site.latitude_deg"]')
    expect(latitude.locator("input")).to_have_value("47.375")
    expect(latitude.locator(".angle-echo")).to_have_text("= +47d22m30.0s")
    card = page.locator('.role-card[data-role="focuser"]')
    expect(card.locator('input[name="focuser.url"]')).to_have_count(0)
    card.locator('input[name="use-focuser"]').check()
    card.locator('input[name="focuser.url"]').fill("ftp://nowhere")
    card.locator('input[name="focuser.move_timeout_s"]').fill("75")
    latitude.locator("input").fill("95")
    page.click(".save-profile")
    beside = card.locator('[data-path="focuser.url"] .field-error')
    expect(beside).to_contain_text("must look like http://host:port")
    expect(latitude.locator(".field-error")).to_contain_text("less than or equal to 90")
    expect(page.locator(".save-status")).to_contain_text("Not saved")
    assert "focuser" not in yaml.safe_load((daemon.data_dir / "pier.yaml").read_text())

    card.locator('input[name="focuser.url"]').fill(focuser.url)
    latitude.locator("input").fill("+47 10 00")
    expect(latitude.locator(".angle-echo")).to_have_text("= 47.16667°")
    page.click(".save-profile")
    expect(page.locator(".save-status")).to_contain_text("Restart the daemon")
    expect(beside).to_be_empty()
    expect(latitude.locator(".field-error")).to_be_empty()
    written = yaml.safe_load((daemon.data_dir / "pier.yaml").read_text())
    assert written["focuser"] == {"url": focuser.url, "move_timeout_s": 75}
    assert written["site"]["latitude_deg"] == pytest.approx(47 + 10 / 60, abs=1e-9)

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

    # The mount connected reports its own site: it is used, and the profile's differs.
    mount = page.locator('.role-card[data-role="mount"]')
    mount.locator(".test-device").click()
    expect(mount.locator(".test-result")).to_contain_text("Connected")
    page.reload()
    expect(site_card.locator(".site-source")).to_contain_text("as the mount reports it")
    expect(site_card.locator(".latitude")).to_have_text("47.00000°")
    expect(site_card.locator(".site-warning")).to_contain_text("latitude by 10.0′")
    site_card.locator(".use-mount-site").click()
    expect(latitude.locator("input")).to_have_value("47")
    page.click(".save-profile")
    expect(page.locator(".save-status")).to_contain_text("Restart the daemon")
    expect(site_card.locator(".site-warning")).to_have_count(0)
    assert yaml.safe_load((daemon.data_dir / "pier.yaml").read_text())["site"] == {
        "latitude_deg": 47.0,
        "longitude_deg": 8.0,
        "elevation_m": 450.0,
    }


def test_a_device_of_the_profile_is_connected_and_a_missing_one_named(
    daemon: RunningDaemon,
) -> None:
    reply = httpx.post(f"{daemon.url}/api/profile/test/camera", timeout=30)
    assert reply.status_code == 200, reply.text
    tested = reply.json()
    assert tested["ok"] is True, tested["error"]
    assert tested["name"]
    assert tested["daemons_own"] is True
    wait_for(
        f"{daemon.url}/api/equipment",
        lambda e: e["devices"][0]["connected"] is True,  # type: ignore[index]
    )
    missing = httpx.post(f"{daemon.url}/api/profile/test/rotator")
    assert missing.status_code == 404
    assert "rotator" in missing.json()["detail"]
    assert httpx.post(f"{daemon.url}/api/profile/test/toaster").status_code == 422

    mount = httpx.post(f"{daemon.url}/api/profile/test/mount", timeout=30).json()
    assert (mount["ok"], mount["daemons_own"]) == (True, True)
    url = f"{daemon.url}/api/profile"
    read = httpx.get(url).json()
    assert read["site_source"] == "mount"
    assert read["site"] == read["mount_site"] == {**SITE, "latitude_deg": 47.0}
    document = {**read["profile"], "site": {**SITE, "latitude_deg": "+47 22 30"}}
    saved = httpx.put(url, json=document).json()
    assert "latitude by 22.5′" in saved["site_warning"]
    assert "longitude" not in saved["site_warning"]  # within 1′ and 10 m
    assert httpx.get(url).json()["site_warning"] == saved["site_warning"]


def test_a_horizon_is_checked_stored_and_read_back(daemon: RunningDaemon) -> None:
    url = f"{daemon.url}/api/profile/horizon"
    assert httpx.get(url).json()["points"] == []
    refused = httpx.post(url, json={"text": "0 10\n90 high\n"})
    assert refused.status_code == 422
    (problem,) = refused.json()["detail"]
    assert problem["loc"] == ["body", "text"]
    assert "line 2" in problem["msg"]
    stored = httpx.post(url, json={"text": "# trees\n0 10\n90 25\n180 5\n270 15\n"})
    assert stored.status_code == 200, stored.text
    answer = stored.json()
    assert answer["points"] == [[0, 10], [90, 25], [180, 5], [270, 15]]
    assert answer["in_use"] is False
    assert "next start" in answer["message"]
    assert Path(answer["path"]) == daemon.data_dir / "horizon.hrz"
    assert httpx.get(url).json()["points"] == answer["points"]


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
        expect(tab.locator('[data-path="site.latitude_deg"] input')).to_be_visible()
        width = tab.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390
    finally:
        context.close()
