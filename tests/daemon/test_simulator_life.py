"""The embedded simulator lives no longer than the daemon that started it.

A daemon killed with SIGKILL runs no clean-up at all: its simulator must end on its own and
free its port. One that outlived its starter in the run directory is stopped at the next
start, but only if it really is that directory's simulator.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from daemon.simulator.rig import SimulatorRig, free_port, write_config
from processing.catalog import star_catalog_sqlite
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


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_an_orphaned_simulator_is_stopped_at_the_next_start(
    tmp_path: Path, catalog_cache: Path
) -> None:
    """A simulator that outlived its starter (started without the tether, as before it
    existed) in the daemon's run directory: only its pid file tells the daemon about it."""
    data = tmp_path / "data"
    config = write_config(data / "simulator", star_catalog_sqlite(catalog_cache))
    port = free_port()
    starter = subprocess.Popen(
        [
            "sh",
            "-c",
            f"{sys.executable} -m daemon.simulator.physics --host 127.0.0.1 "
            f"--port {port} --config {config} >/dev/null 2>&1 & echo $!",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    orphan = int(starter.communicate(timeout=30)[0])  # the shell has exited: an orphan
    try:
        (data / "simulator" / "simulator.pid").write_text(f"{orphan} {starter.pid}\n")
        deadline = time.monotonic() + 60
        while port_free(port):
            assert time.monotonic() < deadline, "the orphan simulator did not start"
            time.sleep(0.2)
        with running_daemon(data, catalog_cache) as daemon:
            assert not alive(orphan)
            assert port_free(port)
            assert len(simulator_pids(data)) == 1
            assert "left running" in daemon.log()
    finally:
        if alive(orphan):
            os.kill(orphan, signal.SIGKILL)


def test_a_simulator_whose_starter_still_runs_is_left_alone(
    tmp_path: Path, catalog_cache: Path
) -> None:
    """E.g. `nightowl sim` on the data folder of a daemon that starts its own simulator."""
    with (
        SimulatorRig(run_dir=tmp_path, cache_dir=catalog_cache) as first,
        SimulatorRig(run_dir=tmp_path, cache_dir=catalog_cache) as second,
    ):
        assert first.running
        assert second.running


def test_a_pid_file_naming_another_program_leaves_it_alone(
    tmp_path: Path, catalog_cache: Path
) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    rig = SimulatorRig(run_dir=tmp_path, cache_dir=catalog_cache)
    try:
        rig.pid_path.write_text(f"{other.pid} 1\n")
        rig.start()
        assert other.poll() is None
        assert rig.pid_path.read_text().split() == [str(rig.pid), str(os.getpid())]
    finally:
        rig.stop()
        other.kill()
        other.wait()
    assert not rig.pid_path.exists()
