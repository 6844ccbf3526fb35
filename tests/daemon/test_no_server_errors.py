"""Inputs that once answered 500, each with the status it gets now, against the real daemon
(uvicorn, the session's simulator): numbers beyond SQLite's 64 bits, unknown runs, bodies
strict JSON cannot carry, frame and result files gone from disk."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from daemon.db.engine import make_engine
from daemon.db.models import ProcessingJob
from daemon.states import JobState
from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for

BEYOND_INT64 = "100000000000000000000"  # 10**20 > 2**63 - 1


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path, simulator_url: str
) -> Iterator[RunningDaemon]:
    env = {"NIGHTOWL_SIMULATOR_URL": simulator_url, "NIGHTOWL_PROCESS_AFTER_RUN": "false"}
    with running_daemon(tmp_path_factory.mktemp("no-500-daemon"), catalog_cache, **env) as d:
        yield d


def strict_json(reply: httpx.Response) -> Any:
    """The body, parsed as strict JSON: no NaN or Infinity, valid UTF-8."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in {reply.text}")

    return json.loads(reply.content.decode("utf-8"), parse_constant=refuse)


@pytest.mark.parametrize(
    ("method", "path", "param"),
    [
        ("GET", f"/api/frames/{BEYOND_INT64}", "frame_id"),
        ("GET", f"/api/frames/{BEYOND_INT64}/fits", "frame_id"),
        ("GET", f"/api/frames/{BEYOND_INT64}/preview.jpg", "frame_id"),
        ("GET", f"/api/sessions/{BEYOND_INT64}/frames", "session_id"),
        ("GET", f"/api/sessions/1/frames?offset={BEYOND_INT64}", "offset"),
        ("GET", f"/api/runs/{BEYOND_INT64}", "run_id"),
        ("POST", f"/api/runs/{BEYOND_INT64}/abort", "run_id"),
        ("GET", f"/api/runs/1/events?after_id={BEYOND_INT64}", "after_id"),
        ("GET", f"/api/templates/{BEYOND_INT64}", "template_id"),
        ("DELETE", f"/api/templates/{BEYOND_INT64}", "template_id"),
        ("GET", f"/api/plans/{BEYOND_INT64}", "plan_id"),
        ("GET", f"/api/plans/{BEYOND_INT64}/nights", "plan_id"),
        ("GET", f"/api/processing/jobs/{BEYOND_INT64}", "job_id"),
        ("GET", f"/api/processing/jobs?offset={BEYOND_INT64}", "offset"),
        ("GET", f"/api/events?after_id={BEYOND_INT64}", "after_id"),
        ("GET", f"/api/events/stream?after_id={BEYOND_INT64}", "after_id"),
    ],
)
def test_numbers_beyond_64_bits_get_422_naming_the_parameter(
    daemon: RunningDaemon, method: str, path: str, param: str
) -> None:
    reply = httpx.request(method, f"{daemon.url}{path}", timeout=10)
    assert reply.status_code == 422, reply.text
    [error] = strict_json(reply)["detail"]
    assert error["loc"][-1] == param
    assert error["type"] == "less_than_equal"


def test_a_last_event_id_beyond_64_bits_gets_422(daemon: RunningDaemon) -> None:
    reply = httpx.get(
        f"{daemon.url}/api/events/stream", headers={"Last-Event-ID": BEYOND_INT64}, timeout=10
    )
    assert reply.status_code == 422, reply.text
    assert strict_json(reply)["detail"][0]["loc"] == ["header", "Last-Event-ID"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/processing/jobs", {"session_id": int(BEYOND_INT64)}, "session_id"),
        ("/api/runs", {"template_id": int(BEYOND_INT64)}, "template_id"),
    ],
)
def test_ids_beyond_64_bits_in_bodies_get_422(
    daemon: RunningDaemon, path: str, body: dict[str, Any], field: str
) -> None:
    reply = httpx.post(f"{daemon.url}{path}", json=body, timeout=10)
    assert reply.status_code == 422, reply.text
    assert strict_json(reply)["detail"][0]["loc"] == ["body", field]


@pytest.mark.parametrize("action", ["resume", "pause", "skip", "abort"])
def test_an_action_on_an_unknown_run_gets_404(daemon: RunningDaemon, action: str) -> None:
    reply = httpx.post(f"{daemon.url}/api/runs/999999/{action}", timeout=10)
    assert reply.status_code == 404, reply.text
    assert strict_json(reply)["detail"] == "no run 999999"


def test_the_events_of_an_unknown_run_get_404(daemon: RunningDaemon) -> None:
    reply = httpx.get(f"{daemon.url}/api/runs/999999/events", timeout=10)
    assert reply.status_code == 404, reply.text
    assert strict_json(reply)["detail"] == "no run 999999"


def test_the_stream_of_an_unknown_run_gets_404_at_once(daemon: RunningDaemon) -> None:
    started = time.monotonic()
    reply = httpx.get(f"{daemon.url}/api/runs/999999/stream", timeout=10)
    assert reply.status_code == 404, reply.text
    assert time.monotonic() - started < 5  # answered, not held open as a stream


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"NaN", "nan"),
        (b"Infinity", "inf"),
        (b"-Infinity", "-inf"),
        (b"1e309", "inf"),
        (b'"\\ud800"', "\\ud800"),
    ],
)
def test_a_body_value_json_cannot_carry_gets_422_without_breaking_the_answer(
    daemon: RunningDaemon, raw: bytes, shown: str
) -> None:
    body = b'{"frame_type": "DARK", "exposure_s": ' + raw + b"}"
    reply = httpx.post(
        f"{daemon.url}/api/capture",
        content=body,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert reply.status_code == 422, reply.text
    [error] = strict_json(reply)["detail"]
    assert error["loc"] == ["body", "exposure_s"]
    assert error["input"] == shown
    assert {"loc", "msg", "type"} <= error.keys()


@pytest.mark.parametrize("path", ["/api/capture", "/api/templates", "/api/processing/jobs"])
def test_a_body_that_is_not_utf8_is_malformed_json_422(daemon: RunningDaemon, path: str) -> None:
    reply = httpx.post(
        f"{daemon.url}{path}",
        content=b'{"name": "\xe9toile"}',
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert reply.status_code == 422, reply.text
    [error] = strict_json(reply)["detail"]
    assert error["type"] == "json_invalid"
    assert error["loc"] == ["body", 10]


@pytest.mark.parametrize("raw", ["NaN", "1e309", '"\\ud800"'])
@pytest.mark.parametrize("path", ["/api/templates", "/api/runs"])
def test_a_document_value_json_cannot_carry_gets_422(
    daemon: RunningDaemon, path: str, raw: str
) -> None:
    """The sequence engine takes any float as a dark's exposure; the API must not store (or
    run) a document it could never serve back."""
    examples = httpx.get(f"{daemon.url}/api/templates/examples", timeout=10).json()
    [calibration] = [e["document"] for e in examples if e["file"] == "calibration.json"]
    calibration["name"] = f"darks of {raw}"
    darks = next(i for i in calibration["targets"][0]["items"] if i["kind"] == "take_darks")
    darks["exposures_s"] = ["EXPOSURE"]
    body = json.dumps({"document": calibration}).replace('"EXPOSURE"', raw)
    reply = httpx.post(
        f"{daemon.url}{path}",
        content=body.encode(),
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert reply.status_code == 422, reply.text
    [error] = strict_json(reply)["detail"]
    assert error["loc"] == ["body", "document"]
    assert httpx.get(f"{daemon.url}/api/templates", timeout=10).status_code == 200


@pytest.mark.parametrize("field", ["exposure_s", "steps_out", "min_r_squared"])
def test_nan_in_an_autofocus_request_gets_422(daemon: RunningDaemon, field: str) -> None:
    reply = httpx.post(
        f"{daemon.url}/api/autofocus",
        content=b'{"%s": NaN}' % field.encode(),
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert reply.status_code == 422, reply.text
    assert strict_json(reply)["detail"][0]["loc"] == ["body", field]


def test_a_frame_file_gone_from_disk_gets_410_with_the_path_and_an_event(
    daemon: RunningDaemon,
) -> None:
    wait_for(f"{daemon.url}/api/equipment", camera_connected)
    reply = httpx.post(
        f"{daemon.url}/api/capture", json={"frame_type": "BIAS", "exposure_s": 0}, timeout=60
    )
    assert reply.status_code == 201, reply.text
    [frame] = reply.json()
    url = f"{daemon.url}/api/frames/{frame['id']}"
    assert httpx.get(f"{url}/preview.jpg", timeout=30).status_code == 200  # cached now
    path = daemon.data_dir / "frames" / frame["path"]
    path.unlink()

    for part in ("fits", "preview.jpg"):
        gone = httpx.get(f"{url}/{part}", timeout=10)
        assert gone.status_code == 410, gone.text
        detail = strict_json(gone)["detail"]
        assert detail["error"] == "Gone"
        assert Path(detail["path"]) == path.resolve()
        assert "no longer on disk" in detail["message"]
    assert httpx.get(url, timeout=10).status_code == 200  # the record stays

    events = httpx.get(
        f"{daemon.url}/api/events", params={"source": "store", "level": "warning"}, timeout=10
    ).json()
    about = [e for e in events if e["data"].get("frame_id") == frame["id"]]
    assert len(about) == 2, events
    assert all(e["data"]["path"] == str(path.resolve()) for e in about)


def test_a_job_result_gone_from_disk_gets_410_with_the_path_and_an_event(
    daemon: RunningDaemon,
) -> None:
    missing = daemon.data_dir / "processing" / "gone" / "M31_L.fits"
    engine = make_engine(f"sqlite:///{daemon.data_dir / 'nightowl.db'}")
    try:
        with Session(engine) as db, db.begin():
            job = ProcessingJob(
                folder=str(daemon.data_dir / "night"),
                state=JobState.DONE,
                outputs={"groups": [{"name": "M31_L", "outputs": {"fits": str(missing)}}]},
            )
            db.add(job)
            db.flush()
            job_id = job.id
    finally:
        engine.dispose()

    reply = httpx.get(f"{daemon.url}/api/processing/jobs/{job_id}/groups/M31_L/fits", timeout=10)
    assert reply.status_code == 410, reply.text
    assert strict_json(reply)["detail"]["path"] == str(missing)
    events = httpx.get(f"{daemon.url}/api/events", params={"level": "warning"}, timeout=10)
    assert any(e["data"].get("job_id") == job_id for e in events.json()), events.text


def camera_connected(body: dict[str, Any]) -> bool:
    return any(d["role"] == "camera" and d["connected"] for d in body["devices"])
