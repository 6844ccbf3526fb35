"""The Plans page (the form editor, tonight's chart, start and stop, edit and delete) and the
Logs page (filters and downloads) in a real headless Chromium against the real daemon, and the
routes behind them: GET /api/plans/{id}/altitudes and GET /api/events/export."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for
from tests.daemon.test_api import all_connected
from tests.daemon.test_sequences_api import M31, SIMULATED, night

FINISHED = ("completed", "aborted", "failed", "interrupted")
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[RunningDaemon]:
    env = {**SIMULATED, "NIGHTOWL_PROCESS_AFTER_RUN": "false", "NIGHTOWL_TIMEZONE": "Europe/Berlin"}
    with running_daemon(tmp_path_factory.mktemp("plans-ui"), catalog_cache, **env) as d:
        wait_for(f"{d.url}/api/equipment", all_connected)
        yield d


def idle(daemon: RunningDaemon) -> None:
    wait_for(
        f"{daemon.url}/api/runs",
        lambda runs: all(r["status"] in FINISHED for r in runs),
        timeout_s=60,
    )


def test_a_plan_is_made_with_the_form_refused_beside_its_field_run_edited_and_deleted(
    page: Page, daemon: RunningDaemon
) -> None:
    idle(daemon)
    template = httpx.post(
        f"{daemon.url}/api/templates", json={"document": {**night(1, 1.0), "name": "for plans"}}
    ).json()
    page.goto("/#/plans")
    expect(page.locator("#safety .badge")).to_have_text("safe")
    page.click("#plan-new")
    form = page.locator("#plan-form")
    form.locator("#plan-name-input").fill("browser plan")
    form.locator("#plan-template").select_option(str(template["id"]))
    target = form.locator(".target-card").first
    target.locator(".target-name").fill("M31")
    target.locator(".target-dec").fill(str(M31["dec_deg"]))
    target.locator(".target-priority").fill("0")
    target.locator(".goal-filter").fill("L")
    target.locator(".goal-exposure").fill("1")
    target.locator(".goal-count").fill("30")

    # Refused: each of the daemon's messages beside the field it names.
    page.click("#plan-save")
    ra_error = form.locator('[data-path="targets[0].coordinates.ra_hours"] .field-error')
    expect(ra_error).to_have_text("Field required (add this field)")
    priority_error = form.locator('[data-path="targets[0].priority"] .field-error')
    expect(priority_error).to_contain_text("greater than or equal to 1")
    expect(form).not_to_contain_text("undefined")

    # Found by name: the pick fills the name, RA and Dec.
    target.locator(".target-search").fill("M31")
    target.locator(".target-search-go").click()
    expect(target.locator(".search-hit").first).to_contain_text("M31")
    target.locator(".search-hit").first.click()
    target = form.locator(".target-card").first
    expect(target.locator(".target-name")).to_have_value("M31")
    expect(target.locator(".target-ra")).to_have_value(re.compile(r"^0\.71"))
    expect(target.locator(".coord-hint")).to_contain_text("00:42:")
    target.locator(".target-priority").fill("1")
    page.click("#plan-save")
    expect(page).to_have_url(re.compile(r"#/plans/\d+$"))
    plan_id = int(page.url.rsplit("/", 1)[1])
    saved = httpx.get(f"{daemon.url}/api/plans/{plan_id}").json()["plan"]
    (goal,) = saved["targets"][0]["goals"]
    assert (goal["filter_name"], goal["exposure_s"], goal["count"]) == ("L", 1, 30)
    assert abs(saved["targets"][0]["coordinates"]["ra_hours"] - M31["ra_hours"]) < 0.01

    # Tonight: the table and the chart of the altitude curve, the planned slot and the sky.
    expect(page.locator("#tonight tbody tr").first).to_contain_text("M31")
    chart = page.locator("#tonight-chart")
    expect(chart.locator('path.altitude-line[data-target="M31"]')).to_have_count(1)
    expect(chart.locator('.slot[data-target="M31"]').first).to_be_attached()
    expect(chart.locator(".sky-band.sky-night")).to_have_count(1)
    expect(chart.locator(".tick-utc").first).to_be_attached()
    expect(page.locator(".chart-legend")).to_contain_text("Europe/Berlin (UTC+01:00)")

    # Started from the page and stopped from it.
    page.click("#plan-start")
    wait_for(
        f"{daemon.url}/api/plans/{plan_id}/progress",
        lambda p: p[0]["goals"][0]["done"] >= 1,  # type: ignore[index]
        timeout_s=60,
    )
    expect(page.locator("#plan-stop")).to_be_enabled(timeout=10_000)
    page.click("#plan-stop")
    nights = wait_for(
        f"{daemon.url}/api/plans/{plan_id}/nights",
        lambda ns: ns[0]["state"] == "stopped",  # type: ignore[index]
        timeout_s=60,
    )
    assert nights[0]["reason"] == "stopped over the API"  # type: ignore[index]
    idle(daemon)

    # Edited: a second goal, more frames of the first; what the form does not show is kept.
    httpx.put(
        f"{daemon.url}/api/plans/{plan_id}",
        json={"plan": {**saved, "targets": [{**saved["targets"][0], "rotation_deg": 90.0}]}},
    ).raise_for_status()
    page.reload()
    page.click("#plan-edit")
    target = page.locator("#plan-form .target-card").first
    target.locator(".goal-count").fill("40")
    target.locator(".goal-add").click()
    second = page.locator("#plan-form .target-card").first.locator(".goal-row").nth(1)
    second.locator(".goal-filter").fill("Zz")  # a filter the wheel lacks
    second.locator(".goal-exposure").fill("2")
    second.locator(".goal-count").fill("abc")
    page.click("#plan-save")
    expect(second.locator('[data-path="targets[0].goals[1].count"] .field-error')).to_contain_text(
        "valid integer"
    )
    second.locator(".goal-count").fill("5")
    page.click("#plan-save")
    expect(page.locator("#plan-editor-card")).to_be_hidden()
    expect(page.locator("#plan-detail")).to_contain_text("Zz 2 s bin 1")
    expect(page.locator("#tonight-issues")).to_contain_text("Zz")
    edited = httpx.get(f"{daemon.url}/api/plans/{plan_id}").json()["plan"]["targets"][0]
    assert [(g["filter_name"], g["count"]) for g in edited["goals"]] == [("L", 40), ("Zz", 5)]
    assert edited["rotation_deg"] == 90.0

    # Deleted, after asking once more.
    page.click("#plan-delete")
    expect(page.locator("#plan-delete")).to_have_text("Really delete?")
    page.click("#plan-delete")
    expect(page).to_have_url(re.compile(r"#/plans$"))
    expect(page.locator("#plans-empty")).to_be_visible()
    assert httpx.get(f"{daemon.url}/api/plans/{plan_id}").status_code == 404


def test_tonight_s_altitudes_carry_curves_limits_and_twilight(daemon: RunningDaemon) -> None:
    api = f"{daemon.url}/api"
    template = httpx.post(
        f"{api}/templates", json={"document": {**night(1, 1.0), "name": "for altitudes"}}
    ).json()
    plan = {
        "name": "altitudes",
        "template_id": template["id"],
        "above": {"altitude_deg": 25},
        "targets": [
            {"name": "M31", "coordinates": M31, "goals": [{"exposure_s": 60, "count": 5}]},
            {
                "name": "south",
                "coordinates": {"ra_hours": 1.0, "dec_deg": -80.0},
                "above": {"altitude_deg": 10},
                "goals": [{"exposure_s": 60, "count": 5}],
            },
        ],
    }
    created = httpx.post(f"{api}/plans", json={"plan": plan, "enabled": False})
    assert created.status_code == 201, created.text
    plan_id = created.json()["id"]
    try:
        sky = httpx.get(f"{api}/plans/{plan_id}/altitudes").json()
        times = [datetime.fromisoformat(t) for t in sky["times"]]
        dusk, dawn = datetime.fromisoformat(sky["dusk"]), datetime.fromisoformat(sky["dawn"])
        assert sky["step_min"] == 10
        assert all((b - a).total_seconds() == 600 for a, b in itertools.pairwise(times))
        # An hour either side of the night, to within one step.
        assert abs((dusk - times[0]).total_seconds() - 3600) <= 600
        assert abs((times[-1] - dawn).total_seconds() - 3600) <= 600
        assert sky["timezone"] == "Europe/Berlin"
        assert sky["utc_offset_min"] == 60
        m31, south = sky["targets"]
        assert (m31["target"], south["target"]) == ("M31", "south")
        assert set(m31["limit_deg"]) == {25.0}
        assert set(south["limit_deg"]) == {10.0}
        assert len(m31["altitude_deg"]) == len(times) == len(sky["sun_altitude_deg"])
        assert max(south["altitude_deg"]) < 0  # dec -80 never rises at a northern site
        # The bands tile the chart without gaps; the sun is below -18 deg in "night".
        bands = sky["bands"]
        assert bands[0]["start"] == sky["times"][0]
        assert [b["start"] for b in bands[1:]] == [b["end"] for b in bands[:-1]]
        assert "night" in {b["kind"] for b in bands}
        night_band = next(b for b in bands if b["kind"] == "night")
        dark = (
            datetime.fromisoformat(night_band["start"]),
            datetime.fromisoformat(night_band["end"]),
        )
        inside = [
            sun
            for t, sun in zip(times, sky["sun_altitude_deg"], strict=True)
            if dark[0] < t < dark[1]
        ]
        assert inside
        assert max(inside) < -18
        assert httpx.get(f"{api}/plans/99999/altitudes").status_code == 404
    finally:
        httpx.delete(f"{api}/plans/{plan_id}")


def test_the_event_log_downloads_what_its_filters_keep(daemon: RunningDaemon) -> None:
    url = f"{daemon.url}/api/events"
    everything = httpx.get(url, params={"limit": 1000}).json()
    level, source = Counter((e["level"], e["source"]) for e in everything).most_common(1)[0][0]
    kept = httpx.get(url, params={"level": level, "source": source, "limit": 1000}).json()
    assert kept
    assert len(kept) < len(everything)

    reply = httpx.get(f"{url}/export", params={"format": "csv", "level": level, "source": source})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/csv")
    assert re.match(
        r'attachment; filename="nightowl-events-\d{8}-\d{6}\.csv"',
        reply.headers["content-disposition"],
    )
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert [int(r["id"]) for r in rows] == [e["id"] for e in kept]
    assert {(r["level"], r["source"]) for r in rows} == {(level, source)}

    word = kept[0]["message"].split()[0]
    lines = httpx.get(f"{url}/export", params={"format": "jsonl", "q": word.upper()}).text
    exported = [json.loads(line) for line in lines.splitlines()]
    assert exported
    assert all(word.lower() in e["message"].lower() for e in exported)
    assert len(exported) == len(httpx.get(url, params={"q": word, "limit": 1000}).json())

    middle = everything[len(everything) // 2]["time"]
    early = httpx.get(f"{url}/export", params={"format": "jsonl", "until": middle}).text
    assert all(json.loads(line)["time"] < middle for line in early.splitlines())
    assert httpx.get(f"{url}/export", params={"since": "2026-01-01T00:00:00"}).status_code == 422
    assert httpx.get(f"{url}/export", params={"format": "xml"}).status_code == 422
    assert source in httpx.get(f"{url}/sources").json()


def test_the_logs_page_filters_by_level_and_source_and_downloads_the_match(
    page: Page, daemon: RunningDaemon, tmp_path: Path
) -> None:
    url = f"{daemon.url}/api/events"
    everything = httpx.get(url, params={"limit": 1000}).json()
    level, source = Counter((e["level"], e["source"]) for e in everything).most_common(1)[0][0]
    kept = httpx.get(url, params={"level": level, "source": source, "limit": 1000}).json()

    page.set_viewport_size(PHONE)
    page.goto("/#/logs")
    expect(page.locator("#log-table tbody tr").first).to_be_attached()
    for other in {"debug", "info", "warning", "error", "alert"} - {level}:
        page.locator(f'input[data-level="{other}"]').uncheck()
    page.select_option("#log-source", source)
    rows = page.locator("#log-table tbody tr")
    expect(rows).to_have_count(min(len(kept), 500))
    shown = rows.evaluate_all("rs => rs.map(r => r.dataset.level + ' ' + r.dataset.source)")
    assert set(shown) == {f"{level} {source}"}
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    with page.expect_download() as download:
        page.click("#log-csv")
    path = tmp_path / "events.csv"
    download.value.save_as(path)
    with path.open(encoding="utf-8", newline="") as f:
        downloaded = list(csv.DictReader(f))
    assert [int(r["id"]) for r in downloaded] == [e["id"] for e in kept]
    assert {(r["level"], r["source"]) for r in downloaded} == {(level, source)}

    page.fill("#log-text", "no event says this 7f3a")
    expect(rows).to_have_count(0)
    expect(page.locator("#log-status")).to_have_text("0 events match, newest first.")
