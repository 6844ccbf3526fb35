"""Templates and runs over the REST API of the real daemon (uvicorn, embedded simulators)."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for
from tests.daemon.test_frames_api import all_connected
from tests.daemon.test_notifications import webhook_receiver

M31 = {"ra_hours": 0.712306, "dec_deg": 41.2692}
SIMULATED = {"NIGHTOWL_CLOCK": "simulated", "NIGHTOWL_CLOCK_START": "2026-11-22T20:00:00Z"}


def night(count: int, exposure_s: float = 0.5) -> dict[str, Any]:
    return {
        "name": f"{count} lights",
        "start": {"items": [{"kind": "unpark"}]},
        "targets": [
            {
                "kind": "target",
                "target_name": "placeholder",
                "coordinates": {"ra_hours": 1.0, "dec_deg": 10.0},
                "items": [
                    {"kind": "slew"},
                    {"kind": "take_exposures", "count": count, "exposure_s": exposure_s},
                ],
            }
        ],
        "end": {"items": [{"kind": "park"}]},
    }


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[RunningDaemon]:
    with running_daemon(tmp_path_factory.mktemp("runs-daemon"), catalog_cache, **SIMULATED) as d:
        wait_for(f"{d.url}/api/equipment", all_connected)
        yield d


def test_a_bad_template_is_refused_with_the_node_path_and_the_fix(daemon: RunningDaemon) -> None:
    document = night(3)
    document["targets"][0]["items"][1]["exposure_s"] = -2
    document["targets"][0]["items"].append({"kind": "take_a_selfie"})
    reply = httpx.post(f"{daemon.url}/api/templates", json={"document": document})
    assert reply.status_code == 422
    problems = {p["path"]: p for p in reply.json()["detail"]}
    assert "targets[0].items[1].exposure_s" in problems
    assert "greater than 0" in problems["targets[0].items[1].exposure_s"]["msg"]
    assert "targets[0].items[2]" in problems
    assert "take_exposures" in problems["targets[0].items[2]"]["fix"]
    assert httpx.get(f"{daemon.url}/api/templates").json() == []


def test_templates_are_saved_edited_checked_and_deleted(daemon: RunningDaemon) -> None:
    created = httpx.post(f"{daemon.url}/api/templates", json={"document": night(2)})
    assert created.status_code == 201, created.text
    template = created.json()
    edited = night(4)
    edited["targets"][0]["items"][1]["filter_name"] = "Z"  # not in the wheel
    replaced = httpx.put(f"{daemon.url}/api/templates/{template['id']}", json={"document": edited})
    assert replaced.status_code == 200
    assert replaced.json()["document"]["targets"][0]["items"][1]["count"] == 4
    issues = httpx.get(f"{daemon.url}/api/templates/{template['id']}/issues").json()
    assert [i["path"] for i in issues] == ["targets[0].items[1].filter_name"]
    assert "L" in issues[0]["fix"]
    refused = httpx.post(f"{daemon.url}/api/runs", json={"template_id": template["id"]})
    assert refused.status_code == 409
    assert refused.json()["detail"]["issues"][0]["path"] == "targets[0].items[1].filter_name"
    assert httpx.delete(f"{daemon.url}/api/templates/{template['id']}").status_code == 204
    assert httpx.get(f"{daemon.url}/api/templates/{template['id']}").status_code == 404


def test_template_issues_say_when_a_target_below_its_limit_rises(daemon: RunningDaemon) -> None:
    document = night(2)
    document["targets"][0]["coordinates"] = {"ra_hours": 12.0, "dec_deg": 0.0}  # rises ~01 UTC
    made = httpx.post(f"{daemon.url}/api/templates", json={"document": document}).json()
    url = f"{daemon.url}/api/templates/{made['id']}"
    (issue,) = httpx.get(f"{url}/issues").json()  # no longer "ready to run"
    assert issue["path"] == "targets[0].coordinates"
    assert "is below its limit (0 deg) at the planned start" in issue["message"]
    assert "rises above it in 5." in issue["message"]
    assert "wait_for_altitude" in issue["fix"]
    document["targets"][0]["items"].insert(0, {"kind": "wait_for_altitude"})
    assert httpx.put(url, json={"document": document}).status_code == 200
    assert httpx.get(f"{url}/issues").json() == []
    assert httpx.delete(url).status_code == 204


def test_a_run_from_a_template_with_a_dropped_target_streams_and_records(
    daemon: RunningDaemon,
) -> None:
    template = httpx.post(f"{daemon.url}/api/templates", json={"document": night(3)}).json()
    reply = httpx.post(
        f"{daemon.url}/api/runs",
        json={"template_id": template["id"], "targets": [{"name": "M31", **M31}]},
    )
    assert reply.status_code == 201, reply.text
    run = reply.json()
    assert run["document"]["targets"][0]["target_name"] == "M31"
    streamed: list[dict[str, Any]] = []
    with httpx.stream("GET", f"{daemon.url}/api/runs/{run['id']}/stream", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                streamed.append(json.loads(line[6:]))
                if streamed[-1]["message"].startswith("run completed"):
                    break
    done = wait_for(f"{daemon.url}/api/runs/{run['id']}", lambda r: r["status"] == "completed")
    assert done["nodes"]["targets[0].items[1]"]["counters"]["done"] == 3
    events = httpx.get(f"{daemon.url}/api/runs/{run['id']}/events").json()
    assert [e["message"] for e in events][-len(streamed) :] == [e["message"] for e in streamed]
    page = httpx.get(f"{daemon.url}/api/runs/{run['id']}/events?after_id={events[2]['id']}&limit=2")
    assert [e["id"] for e in page.json()] == [events[3]["id"], events[4]["id"]]
    with sqlite3.connect(daemon.data_dir / "nightowl.db") as db:
        (frames,) = db.execute(
            "SELECT count(*) FROM frame WHERE run_id = ? AND node_path = ?",
            (run["id"], "targets[0].items[1]"),
        ).fetchone()
    assert frames == 3


def test_pause_resume_and_abort_from_the_api(daemon: RunningDaemon) -> None:
    document = night(30, 1.0)
    document["targets"][0]["coordinates"] = M31
    run = httpx.post(f"{daemon.url}/api/runs", json={"document": document}).json()
    url = f"{daemon.url}/api/runs/{run['id']}"
    wait_for(
        url, lambda r: (r["nodes"].get("targets[0].items[1]") or {}).get("status") == "running"
    )
    asked = httpx.post(f"{url}/pause")
    assert asked.status_code == 200
    # Until the exposure ends, the run says the pause is on its way.
    assert asked.json()["status"] == "paused" or (
        asked.json()["pause_requested"]
        and asked.json()["status_text"] == "paused (takes effect after the current step)"
    ), asked.json()
    paused = wait_for(url, lambda r: r["status"] == "paused")
    assert not paused["pause_requested"]
    count = paused["nodes"]["targets[0].items[1]"]["counters"].get("done", 0)
    again = wait_for(url, lambda r: r["status"] == "paused")  # no frame is taken while paused
    assert again["nodes"]["targets[0].items[1]"]["counters"].get("done", 0) == count
    assert httpx.post(f"{url}/resume").status_code == 200
    wait_for(url, lambda r: r["nodes"]["targets[0].items[1]"]["counters"].get("done", 0) > count)
    assert httpx.post(f"{url}/abort").status_code == 200
    aborted = wait_for(url, lambda r: r["status"] == "aborted")
    assert aborted["nodes"]["end.items[0]"]["status"] == "succeeded"  # parked all the same
    assert aborted["nodes"]["targets[0].items[1]"]["status"] == "cancelled"  # not "running"
    assert httpx.post(f"{url}/pause").status_code == 409


def test_a_finished_run_shows_every_node_s_final_state(daemon: RunningDaemon) -> None:
    """A looping container's nodes keep their last pass's state and counts once it ends."""
    document = night(2)
    document["targets"][0]["coordinates"] = M31
    document["targets"][0]["items"][1] = {
        "kind": "sequential",
        "name": "Lights",
        "conditions": [{"kind": "loop_count", "count": 1}],
        "items": [{"kind": "take_exposures", "count": 2, "exposure_s": 0.5}],
    }
    run = httpx.post(f"{daemon.url}/api/runs", json={"document": document}).json()
    done = wait_for(f"{daemon.url}/api/runs/{run['id']}", lambda r: r["status"] == "completed")
    lights = done["nodes"]["targets[0].items[1].items[0]"]
    assert (lights["status"], lights["counters"]["done"]) == ("succeeded", 2)
    assert done["nodes"]["targets[0].items[1]"]["status"] == "succeeded"
    events = httpx.get(f"{daemon.url}/api/runs/{run['id']}/events").json()
    named = [e for e in events if e["path"] == "targets[0].items[1].items[0]"]
    assert named
    assert all(e["data"]["node"] == "take_exposures" for e in named)


def test_a_killed_daemon_resumes_its_run_with_exactly_the_missing_frames(
    tmp_path: Path, catalog_cache: Path, simulator_url: str
) -> None:
    # The session's simulators, not an embedded rig: a killed daemon cannot stop its rig.
    env = {"NIGHTOWL_SIMULATOR_URL": simulator_url, **SIMULATED}
    data = tmp_path / "crash"
    document = night(6, 1.0)
    document["targets"][0]["coordinates"] = M31
    with running_daemon(data, catalog_cache, **env) as first:
        wait_for(f"{first.url}/api/equipment", all_connected)
        run = httpx.post(f"{first.url}/api/runs", json={"document": document}).json()
        wait_for(
            f"{first.url}/api/runs/{run['id']}",
            lambda r: (
                (r["nodes"].get("targets[0].items[1]") or {}).get("counters", {}).get("done", 0)
                >= 2
            ),
        )
        first.process.send_signal(signal.SIGKILL)  # a crash: no shutdown at all
        first.process.wait()
    with (
        webhook_receiver() as receiver,
        running_daemon(
            data,
            catalog_cache,
            NIGHTOWL_RESUME_RUNS="true",
            NIGHTOWL_WEBHOOK_URLS=receiver.url,
            **env,
        ) as second,
    ):
        done = wait_for(
            f"{second.url}/api/runs/{run['id']}",
            lambda r: r["status"] in ("completed", "failed", "aborted"),
            timeout_s=90,
        )
        assert done["status"] == "completed", second.log()
        # The finished run closed its night and handed the lights to the processing worker.
        jobs = wait_for(
            f"{second.url}/api/processing/jobs",
            lambda js: bool(js) and js[0]["state"] in ("done", "failed"),  # type: ignore[index]
            timeout_s=120,
        )
        job = jobs[0]  # type: ignore[index]
        sessions = httpx.get(f"{second.url}/api/sessions").json()
        # ... which stacked them and finished the target into a picture, served to the page.
        assert job["state"] == "done", job["error"]
        (picture,) = job["outputs"]["finished"]
        assert "error" not in picture, picture
        web = Path(picture["outputs"]["web"]).relative_to(job["out_dir"])
        served = httpx.get(f"{second.url}/api/processing/jobs/{job['id']}/files/{web}")
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"
        # The night's picture is news: an alert, sent to the webhook.
        deadline = time.monotonic() + 10
        while not receiver.posts:
            assert time.monotonic() < deadline, "no webhook call"
            time.sleep(0.2)
        alerts = httpx.get(f"{second.url}/api/events", params={"level": "alert"}).json()
        unknown = httpx.get(f"{second.url}/api/events", params={"level": "alarm"})
    assert job["session_id"] == sessions[0]["id"]
    night_alert = f"night {job['session_id']} finished with its picture: placeholder"
    assert [a["message"].split(" (job")[0] for a in alerts] == [night_alert]
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["query", "level", 0]
    (body,) = receiver.bodies()
    assert (body["source"], body["message"]) == ("processing", alerts[0]["message"])
    assert body["data"]["pictures"][0]["outputs"]["web"] == picture["outputs"]["web"]
    assert sessions[0]["state"] == "closed"
    (group,) = job["outputs"]["groups"]
    assert group["target"] == "placeholder"  # the target container's name
    # The simulator serves cached frames: bit-identical copies are integrated once.
    assert group["integrated"] >= 1
    assert group["integrated"] + len(group["duplicates"]) == 6
    with sqlite3.connect(data / "nightowl.db") as db:
        paths = [
            row[0] for row in db.execute("SELECT path FROM frame WHERE run_id = ?", (run["id"],))
        ]
    assert len(paths) == 6
    assert len(set(paths)) == 6


def test_an_autofocus_in_a_sequence_holds_the_camera_and_is_kept(daemon: RunningDaemon) -> None:
    """A sequence's autofocus goes through the same service as the API's: it reserves the
    camera (a capture asked meanwhile is refused, not interleaved) and keeps its report."""
    focus = {"kind": "autofocus", "settings": {"exposure_s": 0.5, "steps_out": 3}}
    document = {"name": "focus only", "start": {"items": [focus]}}
    kept_before = {r["id"] for r in httpx.get(f"{daemon.url}/api/autofocus").json()}
    started = httpx.post(
        f"{daemon.url}/api/runs", json={"document": document, "ignore_issues": True}
    )
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]

    def camera_held(equipment: dict[str, Any]) -> bool:
        camera = next(d for d in equipment["devices"] if d["role"] == "camera")
        return bool(camera["in_use"])

    # The autofocus node runs and holds the camera: 7 exposures of 0.5 s follow, so a capture
    # asked now meets a reserved camera.
    wait_for(f"{daemon.url}/api/runs/{run_id}", lambda r: r["current"] == "start.items[0]", 60)
    wait_for(f"{daemon.url}/api/equipment", camera_held, 60)
    refused = httpx.post(
        f"{daemon.url}/api/capture", json={"frame_type": "DARK", "exposure_s": 0.1}, timeout=30
    )
    assert refused.status_code == 409, refused.text
    # Refused by the reservation, before any device is asked (not the camera's own "busy").
    assert refused.json()["detail"] == "an autofocus is already running on the camera"
    finished = wait_for(
        f"{daemon.url}/api/runs/{run_id}", lambda r: r["status"] == "completed", 180
    )
    assert finished["nodes"]["start.items[0]"]["status"] == "succeeded"
    kept = [
        r for r in httpx.get(f"{daemon.url}/api/autofocus").json() if r["id"] not in kept_before
    ]
    assert len(kept) == 1
    assert kept[0]["success"], kept[0]["reason"]
    assert len(list((daemon.data_dir / "autofocus").glob(f"*_{kept[0]['id']}.json"))) == 1
