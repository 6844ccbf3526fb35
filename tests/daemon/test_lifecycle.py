"""Daemon start-up and shutdown: profiles, failing devices, the embedded simulator's life."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from daemon.simulator.rig import free_port
from tests.daemon.conftest import running_daemon, wait_for


def simulator_pids(run_dir: Path) -> list[int]:
    """PIDs of simulator processes whose command line names a config inside `run_dir`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "daemon.simulator.physics" in cmdline and str(run_dir) in cmdline:
            pids.append(int(entry.name))
    return pids


def test_shutdown_stops_the_embedded_simulator(tmp_path: Path, catalog_cache: Path) -> None:
    with running_daemon(tmp_path / "data", catalog_cache) as daemon:
        assert len(simulator_pids(tmp_path / "data")) == 1
    # uvicorn finishes its graceful shutdown, then exits with the signal it got (SIGTERM).
    assert "Application shutdown complete" in daemon.log()
    deadline = time.monotonic() + 10
    while simulator_pids(tmp_path / "data"):
        assert time.monotonic() < deadline, "the embedded simulator outlived the daemon"
        time.sleep(0.2)


def test_an_unreachable_device_shows_its_error_and_the_api_still_answers(
    tmp_path: Path, catalog_cache: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        f"name: dead-roof\ncamera: {{url: '{dead}'}}\nsafety_monitor: {{url: '{dead}'}}\n"
    )
    with running_daemon(
        tmp_path / "data", catalog_cache, NIGHTOWL_EQUIPMENT_PROFILE=str(profile)
    ) as daemon:

        def failed(body: dict[str, Any]) -> bool:
            return all(d["error"] for d in body["devices"])

        body = wait_for(f"{daemon.url}/api/equipment", failed)
        assert body["profile"] == "dead-roof"
        for device in body["devices"]:  # type: ignore[attr-defined]
            assert device["connected"] is False
            assert "cannot reach the Alpaca server" in device["error"]
        assert not simulator_pids(tmp_path / "data"), "a profile must not start simulators"
        reply = httpx.post(f"{daemon.url}/api/equipment/connect", timeout=30)
        assert reply.status_code == 200
        assert not any(d["connected"] for d in reply.json()["devices"])


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        env={"PATH": "/usr/bin:/bin", "NIGHTOWL_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_invalid_profile_is_a_clear_cli_error(tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("name: roof\nmount: {url: 'mount.local'}\n")
    result = run_cli(tmp_path, "serve", NIGHTOWL_EQUIPMENT_PROFILE=str(profile))
    assert result.returncode != 0
    assert "mount.url" in result.stderr
    assert "http://host:port" in result.stderr
    assert "NIGHTOWL_EQUIPMENT_PROFILE" in result.stderr


def test_missing_profile_and_bad_port_name_their_settings(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "serve",
        NIGHTOWL_EQUIPMENT_PROFILE=str(tmp_path / "absent.yaml"),
        NIGHTOWL_PORT="eighty",
    )
    assert result.returncode != 0
    assert "NIGHTOWL_EQUIPMENT_PROFILE" in result.stderr
    assert "no such file" in result.stderr
    assert "NIGHTOWL_PORT" in result.stderr


def test_a_bad_horizon_file_names_its_setting_and_line(tmp_path: Path) -> None:
    horizon = tmp_path / "site.hrz"
    horizon.write_text("0 20\n90 15\n180 twelve\n")
    result = run_cli(tmp_path, "serve", NIGHTOWL_HORIZON_FILE=str(horizon))
    assert result.returncode != 0
    assert "NIGHTOWL_HORIZON_FILE" in result.stderr
    assert "horizon line 3" in result.stderr
    absent = run_cli(tmp_path, "serve", NIGHTOWL_HORIZON_FILE=str(tmp_path / "none.hrz"))
    assert absent.returncode != 0
    assert "cannot read" in absent.stderr
