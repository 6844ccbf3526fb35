"""The real daemon under uvicorn, with its embedded default: a simulator rig it starts itself."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.simulator.rig import SIMULATED_DEVICES
from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for

ROLES = set(SIMULATED_DEVICES)


def all_connected(body: dict[str, Any]) -> bool:
    return {d["role"] for d in body["devices"] if d["connected"]} == ROLES


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[RunningDaemon]:
    with running_daemon(tmp_path_factory.mktemp("daemon"), catalog_cache) as running:
        yield running


def test_health_reports_the_database_and_profile(daemon: RunningDaemon) -> None:
    body = httpx.get(f"{daemon.url}/api/health").json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["equipment_profile"] == "simulators"
    assert body["timezone"] is None  # no NIGHTOWL_TIMEZONE: the web UI shows the browser's
    assert isinstance(body["event_loop_stalls"], int)
    database = daemon.data_dir / "nightowl.db"
    assert database.exists(), list(daemon.data_dir.rglob("*"))
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_equipment_shows_the_simulated_observatory_connected(daemon: RunningDaemon) -> None:
    body = wait_for(f"{daemon.url}/api/equipment", all_connected)
    devices = {d["role"]: d for d in body["devices"]}  # type: ignore[attr-defined]
    camera = devices["camera"]
    assert camera["info"]["width_px"] == 2048
    assert camera["info"]["height_px"] == 1536
    assert camera["status"]["state"] == "IDLE"
    assert devices["guide_camera"]["info"]["can_pulse_guide"] is True
    assert devices["mount"]["info"]["alignment_mode"] == 2  # German equatorial
    assert devices["filter_wheel"]["status"]["filter_name"] == "L"
    assert devices["safety_monitor"]["status"]["is_safe"] is True
    assert all(d["error"] is None for d in devices.values())


def test_disconnect_and_connect_all(daemon: RunningDaemon) -> None:
    wait_for(f"{daemon.url}/api/equipment", all_connected)
    off = httpx.post(f"{daemon.url}/api/equipment/disconnect", timeout=30).json()
    assert not any(d["connected"] for d in off["devices"])
    assert all(d["status"] is None for d in off["devices"])
    on = httpx.post(f"{daemon.url}/api/equipment/connect", timeout=30).json()
    assert all_connected(on)


def test_openapi_docs_are_served_without_internet(daemon: RunningDaemon) -> None:
    page = httpx.get(f"{daemon.url}/docs")
    assert page.status_code == 200
    scripts = re.findall(r'src="([^"]+\.js)"', page.text)
    assert scripts, page.text
    for script in scripts:
        assert script.startswith("/"), f"{script} is not served by the daemon itself"
        reply = httpx.get(f"{daemon.url}{script}")
        assert reply.status_code == 200
        assert len(reply.content) > 100_000  # the Swagger UI bundle itself
    paths = httpx.get(f"{daemon.url}/openapi.json").json()["paths"]
    assert {"/api/health", "/api/equipment", "/api/equipment/connect"} <= set(paths)
