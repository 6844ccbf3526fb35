"""The web UI in a real headless Chromium (Debian's, through Playwright) against the real daemon.

Set NIGHTOWL_UI_SCREENSHOT=docs/dashboard.png to keep the dashboard screenshot of the run.
The Processing page's tests stack a small synthetic night in the daemon's worker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from astropy.io import fits
from playwright.sync_api import Browser, FilePayload, Page, expect

from processing import synthetic
from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for
from tests.daemon.test_api import all_connected
from tests.daemon.test_sequences_api import night as sequences_night
from tests.helpers import SMALL_SESSION
from tests.sequences.nina_documents import container, node

SIMULATED = {"NIGHTOWL_CLOCK": "simulated", "NIGHTOWL_CLOCK_START": "2026-11-22T20:00:00Z"}
M31 = {"ra_hours": 0.712306, "dec_deg": 41.2692}
CONTROL_TOKEN = "web-ui-control-token-0123456789"
READ_TOKEN = "web-ui-read-token-0123456789"
FINISHED = ("completed", "aborted", "failed")


def night(count: int, exposure_s: float, target: str = "M31") -> dict[str, Any]:
    """The API tests' short night, pointed at M31 and named after its frames."""
    document = sequences_night(count, exposure_s)
    document["name"] = f"{count} x {exposure_s} s of {target}"
    document["targets"][0] |= {"target_name": target, "coordinates": M31}
    return document


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[RunningDaemon]:
    # No processing after a run: the stacking would compete with the browser for two cores.
    env = {**SIMULATED, "NIGHTOWL_PROCESS_AFTER_RUN": "false"}
    with running_daemon(tmp_path_factory.mktemp("web-daemon"), catalog_cache, **env) as d:
        wait_for(f"{d.url}/api/equipment", all_connected)
        yield d


def idle(daemon: RunningDaemon) -> None:
    """No run is active (one run at a time drives the equipment)."""
    wait_for(
        f"{daemon.url}/api/runs",
        lambda runs: all(r["status"] in (*FINISHED, "interrupted") for r in runs),
        timeout_s=60,
    )


def test_the_dashboard_shows_the_equipment_and_follows_a_run_live(
    page: Page, daemon: RunningDaemon, tmp_path: Path
) -> None:
    page.goto("/")
    camera = page.locator('.device[data-role="camera"]')
    expect(camera.locator(".badge")).to_have_text("connected")
    expect(camera).to_contain_text("Cooler")
    mount = page.locator('.device[data-role="mount"]')
    expect(mount).to_contain_text("Pier side")
    expect(mount).to_contain_text("Parked")
    expect(page.locator("#frame-preview")).to_have_count(0)
    page.evaluate("window.notReloaded = true")

    started = httpx.post(f"{daemon.url}/api/runs", json={"document": night(6, 1.0)})
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]

    # The page follows on its own: the run's tree, then frames as they are saved.
    expect(page.locator("#run")).to_have_attribute("data-run-id", str(run_id))
    preview = page.locator("#frame-preview")
    expect(preview).to_have_attribute("data-frame-id", re.compile(r"^\d+$"), timeout=40_000)
    page.wait_for_function(
        "() => { const i = document.querySelector('#frame-preview');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    expect(page.locator("#frame-stars")).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("#frame-hfr")).to_have_text(re.compile(r"^\d+\.\d+ px"))
    expect(page.locator("#log")).to_contain_text("saved as")
    progress = page.locator('#run li[data-path="targets[0].items[1]"]')
    expect(progress).to_contain_text(re.compile(r"[1-6]/6"))
    expect(page.locator("#charts svg circle").first).to_be_visible()
    assert page.evaluate("window.notReloaded") is True

    shown = int(preview.get_attribute("data-frame-id") or 0)
    frame = httpx.get(f"{daemon.url}/api/frames/{shown}").json()
    assert frame["run_id"] == run_id
    assert frame["frame_type"] == "LIGHT"

    expect(progress).to_contain_text(re.compile(r"[3-6]/6"), timeout=30_000)
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    keep = os.environ.get("NIGHTOWL_UI_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)

    expect(page.locator("#run-status")).to_have_text("completed", timeout=40_000)
    done = httpx.get(f"{daemon.url}/api/runs/{run_id}").json()
    assert done["status"] == "completed"
    # The finished run's tree keeps each node's final state and count.
    expect(progress).to_contain_text("6/6")
    expect(progress).to_have_attribute("data-status", "succeeded")
    expect(progress.locator(".node span").first).to_have_attribute("title", "targets[0].items[1]")
    expect(page.locator("#log > div").first).to_contain_text(" UTC")  # times say their zone
    latest = httpx.get(f"{daemon.url}/api/frames/latest").json()
    expect(preview).to_have_attribute("data-frame-id", str(latest["id"]))


def test_the_roof_opens_and_closes_from_the_observatory_card(
    page: Page, daemon: RunningDaemon
) -> None:
    """The simulated roll-off roof takes a few seconds each way; the mount is parked (the
    runs above end by parking it), so the roof may move."""
    idle(daemon)
    wait_for(f"{daemon.url}/api/equipment", mount_parked)
    page.goto("/")
    roof = page.locator('.device[data-role="dome"]')
    shutter = roof.locator(".shutter")
    expect(shutter).to_have_text("closed")
    expect(page.locator('.device[data-role="cover_calibrator"] .cover-state')).to_have_text("open")
    weather = page.locator('.device[data-role="weather"]')
    expect(weather).to_contain_text("Humidity")
    expect(weather.locator(".age")).to_have_text(re.compile(r"^read \d+ s ago$"))
    expect(page.locator('.device[data-role="switch"]')).to_contain_text("Dew heater")

    page.click("#roof-open")
    expect(shutter).to_have_text("open", timeout=60_000)
    expect(page.locator("#roof-open")).to_be_disabled()
    page.click("#roof-close")
    expect(shutter).to_have_text("closed", timeout=60_000)
    events = httpx.get(f"{daemon.url}/api/events", params={"source": "observatory"}).json()
    assert [e["message"] for e in events][-2:] == [
        "roof opened over the API",
        "roof closed over the API",
    ]


def mount_parked(body: dict[str, Any]) -> bool:
    (mount,) = [d for d in body["devices"] if d["role"] == "mount"]
    return bool(mount["status"] and mount["status"]["at_park"])


def test_a_template_from_an_example_is_edited_and_a_bad_value_is_named_beside_its_field(
    page: Page, daemon: RunningDaemon
) -> None:
    page.goto("/#/templates")
    page.select_option("#example-select", "two_targets.json")
    expect(page.locator("#example-about")).to_contain_text("dawn")
    page.click("#example-create")
    page.wait_for_url(re.compile(r"#/templates/\d+$"))
    template_id = int(page.url.rsplit("/", 1)[1])

    lights = page.locator('[data-field-path="targets[0].items[3]"]')
    expect(lights).to_have_attribute("data-kind", "take_exposures")
    lights.locator('[data-field-path="targets[0].items[3].count"] input').fill("7")
    target = page.locator('[data-field-path="targets[0]"]')
    adder = target.locator(':scope > .section[data-part="items"] > .adder')
    adder.locator("select").select_option("annotation")
    adder.locator("button").click()
    added = page.locator('[data-field-path="targets[0].items[7]"]')
    expect(added).to_have_attribute("data-kind", "annotation")
    added.locator('button[title="move up"]').click()  # now before the last lights
    moved = page.locator('[data-field-path="targets[0].items[6]"]')
    expect(moved).to_have_attribute("data-kind", "annotation")
    moved.locator('[data-field-path="targets[0].items[6].text"] textarea').fill("B next")
    flip = page.locator('[data-field-path="targets[0].triggers[1]"]')
    expect(flip).to_have_attribute("data-kind", "meridian_flip")
    flip.locator('button[title="remove"]').first.click()
    # Coordinates take sexagesimal text, and the other form is echoed beside them.
    ra = page.locator('[data-field-path="targets[0].coordinates.ra_hours"]')
    expect(ra.locator(".angle-echo")).to_have_text("= 00h42m44.30s")
    ra.locator("input").fill("00 42 50")
    expect(ra.locator(".angle-echo")).to_have_text("= 0.71389 h")
    page.click("#save")
    expect(page.locator("#save-status")).to_have_text("saved")
    expect(ra.locator(".angle-echo")).to_have_text("= 00h42m50.00s")

    saved = httpx.get(f"{daemon.url}/api/templates/{template_id}").json()["document"]
    items = saved["targets"][0]["items"]
    assert items[3]["count"] == 7
    assert items[6] == {**items[6], "kind": "annotation", "text": "B next"}
    assert items[7]["filter_name"] == "B"
    triggers = saved["targets"][0]["triggers"]
    assert [t["kind"] for t in triggers] == [
        "dither_after_exposures",
        "autofocus_after_filter_change",
    ]
    assert saved["targets"][0]["coordinates"]["ra_hours"] == pytest.approx(0.7138889, abs=1e-7)

    exposure = page.locator('[data-field-path="targets[0].items[3].exposure_s"]')
    exposure.locator("input").fill("-5")
    ra.locator("input").fill("25 00 00")
    page.click("#save")
    message = exposure.locator(".field-error")
    expect(message).to_contain_text("greater than 0")
    expect(exposure).to_have_class(re.compile(r"\binvalid\b"))
    expect(ra.locator(".field-error")).to_contain_text("as a right ascension")
    expect(page.locator("#save-status")).to_contain_text("422")
    kept = httpx.get(f"{daemon.url}/api/templates/{template_id}").json()["document"]
    assert kept["targets"][0]["items"][3]["exposure_s"] == 120.0


def test_a_nina_file_is_imported_on_the_sequences_page_with_its_report(
    page: Page, daemon: RunningDaemon
) -> None:
    plugin = {"$id": "900", "$type": "WhenPlugin.When.TemplateByReference, WhenPlugin"}
    nina = container(
        "NINA.Sequencer.Container.SequentialContainer",
        node("NINA.Sequencer.SequenceItem.Telescope.UnparkScope"),
        container("NINA.Sequencer.Container.SequentialContainer", plugin),
        Name="Open up from NINA",
    )

    def nina_file(content: bytes) -> FilePayload:
        return {"name": "Open up.template.json", "mimeType": "application/json", "buffer": content}

    page.goto("/#/templates")
    expect(page.locator("#nina-file")).to_be_enabled()
    page.set_input_files("#nina-file", nina_file(json.dumps(nina).encode()))

    report = page.locator("#nina-report")
    expect(report).to_contain_text("Open up.template.json → Open up from NINA: ")
    expect(report).to_contain_text("3 mapped, 0 approximated, 1 not mapped")
    (row,) = page.locator("#nina-report-table tbody tr.not_mapped").all()
    expect(row.locator("td").nth(1)).to_have_text("Items[1].Items[0]")
    expect(row.locator("td").nth(2)).to_have_text("TemplateByReference")
    expect(row.locator("td").nth(3)).to_contain_text("plugin")
    link = report.locator("a")
    template_id = int((link.get_attribute("href") or "").rsplit("/", 1)[1])
    listed = page.locator(f'#template-table tr[data-id="{template_id}"]')
    expect(listed).to_contain_text("Open up from NINA")

    # The same file again: a second template under a free name.
    page.set_input_files("#nina-file", nina_file(json.dumps(nina).encode()))
    expect(report.locator("a")).to_have_text("Open up from NINA (2)")
    expect(page.locator("#template-table")).to_contain_text("Open up from NINA (2)")

    # A JSON file that is not NINA's: the daemon's reason, nothing added.
    page.set_input_files("#nina-file", nina_file(b'{"name": "ours"}'))
    expect(report.locator(".error")).to_contain_text('"$type"')
    names = [t["name"] for t in httpx.get(f"{daemon.url}/api/templates").json()]
    assert names.count("Open up from NINA") == names.count("Open up from NINA (2)") == 1


def test_a_run_is_started_from_a_template_and_paused_from_the_page(
    page: Page, daemon: RunningDaemon
) -> None:
    idle(daemon)
    document = night(30, 1.0, target="placeholder")
    document["targets"][0]["coordinates"] = {"ra_hours": 1.0, "dec_deg": 10.0}
    made = httpx.post(f"{daemon.url}/api/templates", json={"document": document})
    assert made.status_code == 201, made.text
    template_id = made.json()["id"]

    page.goto(f"/#/templates/{template_id}")
    row = page.locator("#run-targets tr").first
    row.locator("[name=target-name]").fill("M31")
    row.locator("[name=target-ra]").fill("00 42 44.3")  # M31, typed as imagers write it
    expect(row.locator(".angle-echo").first).to_have_text("= 0.71231 h")
    row.locator("[name=target-dec]").fill("-80")  # never up from the simulated site
    page.click("#run-start")
    refused = page.locator("#run-result")
    expect(refused).to_contain_text("targets[0].coordinates")
    expect(refused).to_contain_text("does not rise")
    expect(page.locator("#run-start-anyway")).to_be_visible()
    assert all(r["status"] in FINISHED for r in httpx.get(f"{daemon.url}/api/runs").json())
    row.locator("[name=target-dec]").fill("+41 16 09")
    page.click("#run-start")
    page.wait_for_url(re.compile(r"#/dashboard$"))

    runs = httpx.get(f"{daemon.url}/api/runs").json()
    run = runs[0]
    assert run["template_id"] == template_id
    url = f"{daemon.url}/api/runs/{run['id']}"
    target = httpx.get(url).json()["document"]["targets"][0]
    assert target["target_name"] == "M31"
    # 0.1 s of RA and 1" of Dec: the typed text, read as numbers by the daemon.
    assert abs(target["coordinates"]["ra_hours"] - (44.3 / 60 + 42) / 60) < 0.1 / 3600
    assert abs(target["coordinates"]["dec_deg"] - (41 + 16 / 60 + 9 / 3600)) < 1 / 3600
    expect(page.locator("#run")).to_have_attribute("data-run-id", str(run["id"]))
    expect(page.locator("#run-pause")).to_be_enabled()
    page.click("#run-pause")
    paused = wait_for(url, lambda r: r["status"] == "paused")
    assert paused["status"] == "paused"
    expect(page.locator("#run-status")).to_have_text("paused")
    expect(page.locator("#run-resume")).to_be_enabled()
    assert httpx.post(f"{url}/abort").status_code == 200
    wait_for(url, lambda r: r["status"] in FINISHED, timeout_s=60)
    expect(page.locator("#run-status")).to_have_text("aborted")
    # The tree shows where the abort stopped the run, not nodes still "running".
    expect(page.locator('#run li[data-path="targets[0]"]')).to_have_attribute(
        "data-status", "cancelled"
    )
    lights = page.locator('#run li[data-path="targets[0].items[1]"]')
    expect(lights).to_have_attribute("data-status", re.compile(r"^(cancelled|pending)$"))
    if lights.get_attribute("data-status") == "pending":  # paused before the lights began
        expect(lights.locator(".badge").first).to_have_text("not run")


def tail(url: str, headers: dict[str, str], count: int) -> list[dict[str, Any]]:
    """The first `count` events of a server-sent event stream."""
    received: list[dict[str, Any]] = []
    with httpx.stream("GET", url, headers=headers, timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                received.append(json.loads(line[6:]))
                if len(received) == count:
                    break
    return received


def test_the_event_log_pages_filters_and_streams(daemon: RunningDaemon) -> None:
    url = f"{daemon.url}/api/events"
    everything = httpx.get(url, params={"limit": 1000}).json()
    assert len(everything) >= 10  # the runs above
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids)
    page = httpx.get(url, params={"after_id": ids[2], "limit": 2}).json()
    assert [e["id"] for e in page] == ids[3:5]
    newest = httpx.get(url, params={"newest": "true", "limit": 3}).json()
    assert [e["id"] for e in newest] == ids[-3:]
    captures = httpx.get(url, params={"source": "capture", "limit": 1000}).json()
    assert captures
    assert {e["source"] for e in captures} == {"capture"}
    assert all(isinstance(e["data"]["frame_id"], int) for e in captures)
    refused = httpx.get(url, params={"level": "nonsense"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"][:2] == ["query", "level"]

    # From `after_id`, and as a reconnecting browser asks, from `Last-Event-ID`.
    assert [e["id"] for e in tail(f"{url}/stream?after_id={ids[-3]}", {}, 2)] == ids[-2:]
    assert [e["id"] for e in tail(f"{url}/stream", {"Last-Event-ID": str(ids[-4])}, 3)] == ids[-3:]

    examples = httpx.get(f"{daemon.url}/api/templates/examples").json()
    assert {e["file"] for e in examples} >= {"seed_night.json", "two_targets.json"}
    schema = httpx.get(f"{daemon.url}/api/templates/schema").json()
    assert "take_exposures" in json.dumps(schema["$defs"]["TakeExposures"])
    script = httpx.get(f"{daemon.url}/static/app.js")
    assert script.headers["content-type"].startswith("text/javascript")


def test_a_read_only_login_hides_control_and_a_401_asks_for_the_token(
    browser: Browser, tmp_path: Path, catalog_cache: Path
) -> None:
    """Against a daemon that requires tokens (a bare profile: no devices, up in seconds)."""
    profile = tmp_path / "bare.yaml"
    profile.write_text("name: bare-pier\n")
    with running_daemon(
        tmp_path / "data",
        catalog_cache,
        NIGHTOWL_CONTROL_TOKEN=CONTROL_TOKEN,
        NIGHTOWL_READ_TOKEN=READ_TOKEN,
        NIGHTOWL_EQUIPMENT_PROFILE=str(profile),
        NIGHTOWL_CONNECT_ON_START="false",
    ) as secured:
        created = httpx.post(
            f"{secured.url}/api/templates",
            json={"document": night(2, 1.0)},
            headers={"Authorization": f"Bearer {CONTROL_TOKEN}"},
        )
        assert created.status_code == 201, created.text
        for path, role in (
            ("roof/open", "dome"),
            ("dome/park", "dome"),
            ("cover/close", "cover_calibrator"),
            ("calibrator/off", "cover_calibrator"),
        ):
            missing = httpx.post(
                f"{secured.url}/api/equipment/{path}",
                headers={"Authorization": f"Bearer {CONTROL_TOKEN}"},
            )
            assert missing.status_code == 404, missing.text  # the profile has no such device
            assert f"has no {role}" in missing.json()["detail"]
        context = browser.new_context(base_url=secured.url)
        context.set_default_timeout(20_000)
        page = context.new_page()
        try:
            page.goto("/#/templates")
            form = page.locator("#login-form")
            expect(form).to_be_visible()  # the daemon answered 401
            form.locator("input[name=token]").fill("not-the-token-at-all")
            form.locator("button[type=submit]").click()
            expect(page.locator("#login-error")).to_have_text("Wrong token.")

            form.locator("input[name=token]").fill(READ_TOKEN)
            form.locator("button[type=submit]").click()
            expect(page.locator("#role")).to_have_text("role: read")
            expect(page.locator("#logout")).to_be_visible()
            expect(page.locator("#example-create")).to_be_hidden()
            page.goto(f"/#/templates/{created.json()['id']}")
            expect(page.locator('[data-field-path="name"] input')).to_be_disabled()
            expect(page.locator("#save")).to_be_hidden()
            expect(page.locator("#run-start")).to_be_hidden()

            page.click("#logout")
            expect(page.locator("#login-form")).to_be_visible()
        finally:
            context.close()


@pytest.fixture(scope="module")
def finished_job(daemon: RunningDaemon) -> dict[str, Any]:
    """A folder job (8 small mono lights, one worker thread) stacked and finished with the
    default recipe: about 9 s."""
    folder = daemon.data_dir / "processing-night"
    synthetic.write_session(folder, SMALL_SESSION, target="M 42")
    body = {"folder": str(folder), "options": {"threads": 1}}
    reply = httpx.post(f"{daemon.url}/api/processing/jobs", json=body)
    assert reply.status_code == 201, reply.text
    return done_job(daemon, reply.json()["id"])


def done_job(daemon: RunningDaemon, job_id: int) -> dict[str, Any]:
    job = wait_for(
        f"{daemon.url}/api/processing/jobs/{job_id}",
        lambda j: j["state"] in ("done", "failed"),
        timeout_s=120,
    )
    assert job["state"] == "done", job["error"]
    return job


def noted_stf(entry: dict[str, Any]) -> tuple[float, float]:
    """The shadows and midtones the job's linked auto-STF step wrote in its notes."""
    (step,) = [s for s in entry["steps"] if s["kind"] == "stretch_stf"]
    found = re.search(r"STF linked: shadows ([\d.]+), midtones ([\d.]+)", " ".join(step["notes"]))
    assert found, step["notes"]
    return float(found[1]), float(found[2])


def test_the_histogram_of_a_finished_picture_starts_from_the_jobs_stretch(
    daemon: RunningDaemon, finished_job: dict[str, Any]
) -> None:
    (entry,) = finished_job["outputs"]["finished"]
    url = f"{daemon.url}/api/processing/jobs/{finished_job['id']}/histogram"
    reply = httpx.get(url, params={"name": entry["name"]})
    assert reply.status_code == 200, reply.text
    histogram = reply.json()
    assert histogram["channels"] == ["L"]
    (counts,) = histogram["bins"]
    assert len(counts) == 512
    low, upper = histogram["range"]
    assert low == 0.0
    assert 0.0 < upper <= 1.0
    # Known truth: every proxy pixel within the range is counted once (np.histogram's last
    # bin includes its upper edge), none outside.
    proxy = fits.getdata(entry["outputs"]["proxy"]).astype(np.float64)
    assert sum(counts) == np.count_nonzero((proxy >= 0.0) & (proxy <= upper))

    stf = histogram["stf"]
    assert stf["source"] == "job"
    assert (stf["shadows"], stf["midtones"]) == noted_stf(entry)
    assert stf["highlights"] == 1.0
    midtones_level = stf["shadows"] + stf["midtones"] * (1.0 - stf["shadows"])
    # The auto-STF clips below the sky and maps the sky (the median) to 0.15 < 0.5: the
    # median lies between the shadows and the level that turns mid-grey, inside the range.
    assert 0.0 <= stf["shadows"] < float(np.median(proxy)) < midtones_level < upper

    assert httpx.get(url, params={"name": "no such picture"}).status_code == 404
    assert httpx.get(url, params={"upper": 0}).status_code == 422
    whole = httpx.get(url, params={"upper": 1, "bins": 64}).json()
    assert whole["range"] == [0.0, 1.0]
    assert sum(whole["bins"][0]) == np.count_nonzero((proxy >= 0.0) & (proxy <= 1.0))


def drag(page: Page, selector: str, dx_px: float) -> None:
    box = page.locator(selector).bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx_px, y, steps=5)
    page.mouse.up()


def loaded(page: Page, selector: str) -> None:
    page.wait_for_function(
        "(s) => { const i = document.querySelector(s);"
        " return i && i.complete && i.naturalWidth > 0; }",
        arg=selector,
    )


def test_the_processing_page_shows_the_finished_picture_and_edits_its_stretch_live(
    page: Page, daemon: RunningDaemon, finished_job: dict[str, Any]
) -> None:
    (entry,) = finished_job["outputs"]["finished"]
    job_id = finished_job["id"]
    page.goto("/#/processing")
    pictures = page.locator("#job-pictures")
    expect(pictures).to_have_attribute("data-job-id", str(job_id))
    article = f'#job-pictures article.picture[data-name="{entry["name"]}"]'
    picture = f"{article} img.picture"
    loaded(page, picture)
    original = page.locator(picture).get_attribute("src")
    assert original is not None
    assert original.endswith(f"/finished/{entry['name']}_web.jpg"), original
    expect(page.locator(f"{article} .notes")).to_contain_text("STF linked")

    previews = [s for s in entry["steps"] if s["preview"]]
    thumbs = page.locator(f"{article} .step-thumb")
    expect(thumbs).to_have_count(len(previews))
    expect(thumbs.nth(2)).to_contain_text(previews[2]["kind"])
    thumbs.nth(2).click()
    lightbox = page.locator("#lightbox")
    expect(lightbox).to_be_visible()
    expect(lightbox.locator("img")).to_have_attribute(
        "src", re.compile(re.escape(Path(previews[2]["preview"]).name) + "$")
    )
    loaded(page, "#lightbox img")
    page.keyboard.press("Escape")
    expect(lightbox).to_be_hidden()

    shadows, midtones = noted_stf(entry)
    handle = f'{article} .hist-handle[data-handle="midtones"]'
    expect(page.locator(handle)).to_have_attribute("aria-valuenow", str(midtones))
    with page.expect_response(
        lambda r: r.url.endswith(f"/jobs/{job_id}/preview") and r.request.method == "POST"
    ) as answer:
        drag(page, handle, 60)
    assert answer.value.status == 200
    sent: dict[str, Any] = answer.value.request.post_data_json or {}
    assert sent["name"] == entry["name"]
    steps = sent["recipe"]["steps"]
    kinds = [s["kind"] for s in finished_job["config"]["recipe"]["steps"]]
    (edited,) = [s for s in steps if s["kind"] == "histogram"]
    assert steps.index(edited) == kinds.index("stretch_stf")  # the first stretch, replaced
    assert "stretch_stf" not in [s["kind"] for s in steps]
    assert edited["shadows"] == shadows
    assert edited["highlights"] == 1
    assert edited["midtones"] > midtones  # moved right: a higher level turns mid-grey
    expect(page.locator(picture)).to_have_attribute("src", re.compile(r"^blob:"))
    loaded(page, picture)

    # A name the recipe rules refuse: the daemon's 422 is shown with the problem's path.
    page.once("dialog", lambda dialog: dialog.accept(""))
    page.click(f"{article} .save-recipe")
    issues = page.locator(f"{article} .editor-issues")
    expect(issues).to_contain_text(re.compile(r"^name: .*at least 1 character"))
    page.once("dialog", lambda dialog: dialog.accept("stretched in the browser"))
    page.click(f"{article} .save-recipe")
    expect(page.locator(f"{article} .editor-status")).to_contain_text("Saved as the recipe")
    saved = {r["name"]: r for r in httpx.get(f"{daemon.url}/api/recipes").json()}
    assert edited in saved["stretched in the browser"]["document"]["steps"]

    with page.expect_response(lambda r: r.url.endswith(f"/jobs/{job_id}/finish")) as queued:
        page.click(f"{article} .finish-again")
    assert queued.value.status == 201
    again = queued.value.json()
    assert again["config"] == {"finish_of": job_id, "recipe": sent["recipe"]}
    expect(page.locator(f'.device[data-job-id="{again["id"]}"]')).to_be_visible()
    # Once done, the page shows the new job's picture, whose histogram starts from the edit.
    done_job(daemon, again["id"])
    expect(pictures).to_have_attribute("data-job-id", str(again["id"]), timeout=15_000)
    loaded(page, picture)
    url = f"{daemon.url}/api/processing/jobs/{again['id']}/histogram"
    levels = {k: edited[k] for k in ("shadows", "midtones", "highlights")}
    assert httpx.get(url).json()["stf"] == {**levels, "source": "recipe"}


def test_the_background_step_shows_its_samples_over_its_preview(
    page: Page, finished_job: dict[str, Any]
) -> None:
    (entry,) = finished_job["outputs"]["finished"]
    (step,) = [s for s in entry["steps"] if s["kind"] == "background"]
    samples = json.loads(Path(step["products"]["background_samples"]).read_text())
    kept = [s for s in samples if s["rejected"] is None]
    reasons = sorted(s["rejected"] for s in samples if s["rejected"] is not None)
    (crop,) = [s for s in entry["steps"] if s["kind"] == "crop"]
    found = re.search(r"rows (\d+):(\d+), columns (\d+):(\d+)", " ".join(crop["notes"]))
    assert found, crop["notes"]
    height, width = int(found[2]) - int(found[1]), int(found[4]) - int(found[3])

    page.goto("/#/processing")
    article = f'#job-pictures article.picture[data-name="{entry["name"]}"]'
    page.locator(f'{article} .step-thumb[data-kind="background"]').click()
    loaded(page, "#lightbox img")
    marks = page.locator("#lightbox svg.samples")
    expect(marks.locator("rect.kept")).to_have_count(len(kept))
    expect(marks.locator("rect.rejected")).to_have_count(len(reasons))
    titles = marks.locator("rect.rejected title").all_text_contents()
    assert sorted(titles) == reasons
    legend = page.locator("#lightbox .samples-legend")
    expect(legend).to_contain_text(f"{len(kept)} of {len(samples)} samples kept")

    # Known truth of the placement: the preview is the mean of k x k blocks of the cropped
    # image (processing.export.downscale), shown with object-fit: contain; a whole box's
    # centre lands on (index + 0.5) / k preview pixels. 1 px: layout rounds to device pixels.
    natural = page.evaluate(
        "() => { const i = document.querySelector('#lightbox img');"
        " return [i.naturalWidth, i.naturalHeight]; }"
    )
    k = -(-max(height, width) // 480)
    assert natural == [width // k, height // k]
    box = page.locator("#lightbox img").bounding_box()
    assert box is not None
    scale = min(box["width"] / natural[0], box["height"] / natural[1])
    left = box["x"] + (box["width"] - natural[0] * scale) / 2
    top = box["y"] + (box["height"] - natural[1] * scale) / 2
    half = kept[0]["size_px"] / 2
    inner = [
        i
        for i, s in enumerate(samples)
        if half <= s["x"] <= width - 1 - half and half <= s["y"] <= height - 1 - half
    ]
    assert inner
    sample = samples[inner[0]]
    drawn = marks.locator("rect").nth(inner[0]).bounding_box()
    assert drawn is not None
    assert abs(drawn["x"] + drawn["width"] / 2 - (left + (sample["x"] + 0.5) / k * scale)) < 1.0
    assert abs(drawn["y"] + drawn["height"] / 2 - (top + (sample["y"] + 0.5) / k * scale)) < 1.0
    # The bounding box holds the 1.5 px outline too (half of it on each side).
    assert abs(drawn["width"] - 1.5 - sample["size_px"] / k * scale) < 1.0

    # Another step shows no samples; a 24 Mpx frame's preview is 13 x 13 blocks, found from
    # the crop's size or, without a crop, from the samples' extent.
    page.keyboard.press("ArrowRight")
    expect(legend).to_be_hidden()
    expect(marks.locator("rect")).to_have_count(0)
    factors = page.evaluate(
        "async () => { const m = await import('/static/processing.js');"
        " const edge = [{ x: 5990, y: 3990, size_px: 25 }];"
        " return [m.blockFactors([4000, 6000], [], 461, 307),"
        " m.blockFactors(null, edge, 461, 307)]; }"
    )
    assert factors == [[13, 13], [13, 13]]
