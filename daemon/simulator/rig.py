"""The simulator rig: the third-party `alpaca-simulators` server as a child process, offline.

Used by `nightowl sim`, by `nightowl serve` when no equipment profile is configured (the
embedded default), and by the test suite. The rig builds the offline star catalog, writes the
observatory config (``observatory.yaml`` beside this file) with the catalog path into its run
directory, starts the server on loopback and a free port, and waits until it answers.
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
# The devices of the simulated observatory, as (Alpaca device type, device number) per role.
SIMULATED_DEVICES: dict[str, tuple[str, int]] = {
    "camera": ("camera", 0),
    "guide_camera": ("camera", 1),
    "mount": ("telescope", 0),
    "focuser": ("focuser", 0),
    "filter_wheel": ("filterwheel", 0),
    "safety_monitor": ("safetymonitor", 0),
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
        if self.port == 0:
            self.port = free_port(self.host)
        catalog = star_catalog_sqlite(self.cache_dir)
        config = write_config(self.run_dir, catalog, self.overrides)
        command = [
            sys.executable,
            "-m",
            "alpaca_simulators.run_simulator",
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
        self._wait_ready()

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
        log.info("Alpaca simulators stopped")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def simulator_profile(url: str) -> EquipmentProfile:
    """The equipment profile of the simulated observatory served at `url`."""
    devices = {
        role: {"url": url, "device_number": number}
        for role, (_, number) in SIMULATED_DEVICES.items()
    }
    return EquipmentProfile.model_validate({"name": "simulators", **devices})
