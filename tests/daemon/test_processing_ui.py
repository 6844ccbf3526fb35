"""The Processing page's job form and a job's result in a real headless Chromium against the
real daemon (no devices): a small synthetic night with a copied light is queued from the
page, a refused option is named beside its field, and the result shows every light's verdict
and weight, the duplicate marked, the stack zoomed to 100 % and its downloads."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from processing import synthetic
from tests.daemon.conftest import RunningDaemon, bare_daemon
from tests.helpers import SMALL_SESSION

SIMULATED = {"NIGHTOWL_CLOCK": "simulated", "NIGHTOWL_CLOCK_START": "2026-11-22T20:00:00Z"}


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[RunningDaemon]:
    yield from bare_daemon(tmp_path_factory, catalog_cache, "processing-ui", **SIMULATED)


def test_a_job_is_queued_from_the_page_and_its_lights_verdicts_shown(
    page: Page, daemon: RunningDaemon
) -> None:
    folder = daemon.data_dir / "night"
    synthetic.write_session(folder, SMALL_SESSION, target="M 42")
    lights = sorted((folder / "lights").iterdir())
    copy = folder / "lights" / "copy_of_first.fit"
    shutil.copyfile(lights[0], copy)

    page.goto("/#/processing")
    form = page.locator("#queue-job")
    form.locator('select[name="source"]').select_option("folder")
    form.locator('input[name="folder"]').fill(str(folder))
    form.locator('input[name="linear_only"]').check()
    form.locator(".job-options summary").click()
    form.locator('input[name="options.threads"]').fill("0")
    form.locator(".queue-job").click()
    beside = form.locator('[data-path="options.threads"] .field-error')
    expect(beside).to_contain_text("greater than or equal to 1")
    expect(form.locator(".queue-status")).to_contain_text("Not queued")
    assert httpx.get(f"{daemon.url}/api/processing/jobs").json() == []

    form.locator('input[name="options.threads"]').fill("1")
    with page.expect_response(lambda r: r.url.endswith("/api/processing/jobs")) as answer:
        form.locator(".queue-job").click()
    assert answer.value.status == 201
    job_id = answer.value.json()["id"]
    assert answer.value.request.post_data_json == {
        "options": {"threads": 1},
        "linear_only": True,
        "folder": str(folder),
    }
    expect(beside).to_be_empty()

    result = page.locator("#job-result")
    expect(result).to_have_attribute("data-job-id", str(job_id), timeout=90_000)
    job = httpx.get(f"{daemon.url}/api/processing/jobs/{job_id}").json()
    (group,) = job["outputs"]["groups"]
    frames = group["frames"]
    table = result.locator("table.lights tbody tr")
    expect(table).to_have_count(len(frames))
    (duplicate,) = [f for f in frames if f["duplicate_of"]]
    copied = {Path(duplicate["path"]).name, Path(duplicate["duplicate_of"]).name}
    assert copied == {copy.name, lights[0].name}
    row = result.locator("tr.duplicate")
    expect(row).to_have_count(1)
    expect(row.locator("td.reason")).to_contain_text(
        f"a copy of {Path(duplicate['duplicate_of']).name}"
    )
    rejected = [f for f in frames if not f["accepted"] and not f["duplicate_of"]]
    expect(result.locator("tr.rejected")).to_have_count(len(rejected))
    kept = next(f for f in frames if f["accepted"])
    kept_row = result.locator(f'tr.accepted:has(td[title="{kept["path"]}"])')
    expect(kept_row.locator("td.num").first).to_have_text(f"{kept['weight']:.3f}")
    expect(result.locator(".job-group h3")).to_contain_text(
        f"{group['integrated']} of {len(frames)} lights stacked"
    )

    for label in ("FITS", "XISF", "JPEG"):
        link = result.get_by_role("link", name=label, exact=True)
        href = link.get_attribute("href")
        assert href is not None
        assert httpx.get(f"{daemon.url}{href}").status_code == 200

    picture = result.locator("img.group-picture")
    page.wait_for_function(
        "() => { const i = document.querySelector('#job-result img.group-picture');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    natural = picture.evaluate("i => i.naturalWidth")
    result.locator(".zoom-100").click()
    expect(result.locator(".zoom-box")).to_have_class("zoom-box actual")
    # 100 %: one image pixel per CSS pixel (the content box, without the frame's border).
    assert picture.evaluate("i => i.clientWidth") == natural
    result.locator(".zoom-fit").click()
    expect(result.locator(".zoom-box")).to_have_class("zoom-box fit")
