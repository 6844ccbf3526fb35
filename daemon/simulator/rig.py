"""The simulator rig: the third-party `alpaca-simulators` server as a child process, offline,
with the physics Nightowl adds to it (`daemon.simulator.physics`).

Used by `nightowl sim`, by `nightowl serve` when no equipment profile is configured (the
embedded default), and by the test suite. The rig builds the offline star catalog, writes the
observatory config (``observatory.yaml`` beside this file) with the catalog path into its run
directory, starts the server on loopback and a free port, and waits until it answers.

The server's life is tied to the process that started it (`daemon.simulator.tethered`): a
daemon killed with SIGKILL takes its simulator along. A pid file in the run directory names the
running server and its starter, so that a start finds and stops one that outlived its starter
there (after checking its command line shows it is this run directory's simulator).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from drivers.profile import EquipmentProfile
from processing.catalog import star_catalog_sqlite

log = logging.getLogger(__name__)

OBSERVATORY_CONFIG = Path(__file__).with_name("observatory.yaml")
_SERVER_MODULE = "daemon.simulator.physics"
# The devices of the simulated observatory, as (Alpaca device type, device number) per role.
# The dome is the roll-off roof (dome 1); dome 0, a rotating dome, is there for slaving.
SIMULATED_DEVICES: dict[str, tuple[str, int]] = {
    "camera": ("camera", 0),
    "guide_camera": ("camera", 1),
    "mount": ("telescope", 0),
    "focuser": ("focuser", 0),
    "filter_wheel": ("filterwheel", 0),
    "safety_monitor": ("safetymonitor", 0),
    "dome": ("dome", 1),
    "cover_calibrator": ("covercalibrator", 0),
    "rotator": ("rotator", 0),
    "weather": ("observingconditions", 0),
    "switch": ("switch", 0),
}


class SimulatorError(RuntimeError):
    """The simulator did not start or answer; the message carries the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def write_config(run_dir: Path, catalog: Path, overrides: Mapping[str, Any] | None = None) -> Path:
    """Write the observatory config with `tap_source` set to `catalog`; return its absolute path.

    `overrides` replaces top-level keys, e.g. ``{"pointing_error_ra": 30.0}`` (arcmin) for a
    mount that points off by a known amount.
    """
    config = yaml.safe_load(OBSERVATORY_CONFIG.read_text(encoding="utf-8"))
    config.update(overrides or {})
    config["tap_source"] = str(catalog.resolve())
    run_dir.mkdir(parents=True, exist_ok=True)
    path = (run_dir / "observatory.yaml").resolve()
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class SimulatorRig:
    """One simulator server process. `start()` blocks until it answers; `stop()` ends it by PID."""

    run_dir: Path
    cache_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    ready_timeout_s: float = 60.0
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Top-level config keys to replace (see `write_config`)."""
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "simulator.log"

    @property
    def pid_path(self) -> Path:
        return self.run_dir / "simulator.pid"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Start the server and wait until it serves Alpaca requests.

        Raises `SimulatorError` when the process exits early or does not answer within
        `ready_timeout_s`.
        """
        self._stop_stale()
        if self.port == 0:
            self.port = free_port(self.host)
        catalog = star_catalog_sqlite(self.cache_dir)
        config = write_config(self.run_dir, catalog, self.overrides)
        command = [
            sys.executable,
            "-m",
            "daemon.simulator.tethered",
            str(os.getpid()),
            _SERVER_MODULE,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--config",
            str(config),
        ]
        env = {**os.environ, "ASTRA_SIMULATORS_CONFIG": str(config)}
        log.info("starting Alpaca simulators on %s (log: %s)", self.url, self.log_path)
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                command,
                cwd=self.run_dir,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_path.write_text(f"{self._process.pid} {os.getpid()}\n", encoding="utf-8")
        self._wait_ready()

    def _stop_stale(self) -> None:
        """Stop the simulator the pid file names if it still runs from this run directory and
        the process that started it is gone (a crashed process's orphan). One whose starter
        still runs (`nightowl sim`, another daemon on this data folder) is left alone."""
        try:
            pid, starter = map(int, self.pid_path.read_text(encoding="utf-8").split())
        except (OSError, ValueError):
            return
        config = str((self.run_dir / "observatory.yaml").resolve())
        process = _process(pid)
        if process is None or not {_SERVER_MODULE, config} <= set(process.arguments):
            self.pid_path.unlink(missing_ok=True)
        elif process.parent_pid == starter:
            log.warning(
                "the simulator (pid %d) of process %d also runs in %s", pid, starter, self.run_dir
            )
        else:
            log.warning("stopping the simulator (pid %d) a previous start left running", pid)
            _end(pid, timeout_s=10.0)
            self.pid_path.unlink(missing_ok=True)

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        probe = f"{self.url}/api/v1/safetymonitor/0/issafe"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise SimulatorError(
                    f"simulator exited with code {self._process.returncode}: {self._log_tail()}"
                )
            try:
                if requests.get(probe, timeout=1.0).ok:
                    log.info("Alpaca simulators ready on %s (pid %d)", self.url, self._process.pid)
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise SimulatorError(
            f"simulator not ready on {self.url} after {self.ready_timeout_s:.0f} s: "
            f"{self._log_tail()}"
        )

    def __enter__(self) -> SimulatorRig:
        """`start`; the block's end stops the server however the block ends."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL after `timeout_s`)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout_s)
        except ProcessLookupError:
            pass
        self.pid_path.unlink(missing_ok=True)
        log.info("Alpaca simulators stopped")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class _Process:
    parent_pid: int
    arguments: tuple[str, ...]


def _process(pid: int) -> _Process | None:
    """A live (not zombie) process's parent and arguments; None if there is none (Linux: /proc)."""
    proc = Path("/proc") / str(pid)
    try:
        state, parent = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        arguments = (proc / "cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    if state == "Z":
        return None
    return _Process(int(parent), tuple(a.decode(errors="replace") for a in arguments if a))


def _end(pid: int, timeout_s: float) -> None:
    """SIGTERM the process (the group it leads: a rig's server leads one), SIGKILL it if it
    outlives `timeout_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while _process(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if _process(pid) is None:
            return


def simulator_profile(url: str) -> EquipmentProfile:
    """The equipment profile of the simulated observatory served at `url`."""
    devices = {
        role: {"url": url, "device_number": number}
        for role, (_, number) in SIMULATED_DEVICES.items()
    }
    return EquipmentProfile.model_validate({"name": "simulators", **devices})
