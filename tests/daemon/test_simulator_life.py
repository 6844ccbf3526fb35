"""The embedded simulator lives no longer than the daemon that started it.

A daemon killed with SIGKILL runs no clean-up at all: its simulator must end on its own and
free its port. One a previous process still left running in the run directory is stopped at
the next start, but only if it really is that directory's simulator.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from daemon.simulator.rig import SimulatorRig
from tests.daemon.conftest import running_daemon
from tests.daemon.test_lifecycle import simulator_pids

GONE_WITHIN_S = 5.0  # the watchdog looks every 0.2 s; the margin is for a busy machine


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def simulator_port(daemon_url: str) -> int:
    devices = httpx.get(f"{daemon_url}/api/equipment", timeout=30).json()["devices"]
    location = next(d["location"] for d in devices if d["role"] == "camera")
    return int(location.split()[0].rsplit(":", 1)[1])


def test_a_daemon_killed_with_sigkill_takes_its_simulator_along(
    tmp_path: Path, catalog_cache: Path
) -> None:
    data = tmp_path / "data"
    for _ in range(2):  # the second start finds the first one's pid file
        with running_daemon(data, catalog_cache) as daemon:
            (pid,) = simulator_pids(data)
            port = simulator_port(daemon.url)
            daemon.process.send_signal(signal.SIGKILL)
            daemon.process.wait()
            deadline = time.monotonic() + GONE_WITHIN_S
            while simulator_pids(data) or not port_free(port):
                assert time.monotonic() < deadline, f"simulator {pid} outlived the daemon"
                time.sleep(0.1)


def test_a_simulator_left_running_is_stopped_at_the_next_start(
    tmp_path: Path, catalog_cache: Path
) -> None:
    data = tmp_path / "data"
    # A simulator in the daemon's run directory whose starter lives on: only its pid file
    # tells the daemon about it.
    stale = SimulatorRig(run_dir=data / "simulator", cache_dir=catalog_cache)
    stale.start()
    try:
        assert stale.pid is not None
        with running_daemon(data, catalog_cache) as daemon:
            deadline = time.monotonic() + GONE_WITHIN_S
            while stale.running:
                assert time.monotonic() < deadline, "the stale simulator still runs"
                time.sleep(0.1)
            assert port_free(stale.port)
            assert simulator_pids(data) != [stale.pid]
            assert len(simulator_pids(data)) == 1
            assert "left running" in daemon.log()
    finally:
        stale.stop()


def test_a_pid_file_naming_another_program_leaves_it_alone(
    tmp_path: Path, catalog_cache: Path
) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    rig = SimulatorRig(run_dir=tmp_path, cache_dir=catalog_cache)
    try:
        rig.pid_path.write_text(f"{other.pid}\n")
        rig.start()
        assert other.poll() is None
        assert rig.pid_path.read_text().strip() == str(rig.pid)
    finally:
        rig.stop()
        other.kill()
        other.wait()
    assert not rig.pid_path.exists()
