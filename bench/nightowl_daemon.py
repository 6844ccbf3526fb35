"""A `nightowl serve` subprocess, for the benches that drive the daemon over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from daemon.simulator.rig import free_port


def start_daemon(data_dir: Path, env: Mapping[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`nightowl serve` on a free port, run in `data_dir` with its output in
    `data_dir/daemon.log`, with `env` (NIGHTOWL_* settings) over this process's environment;
    the process and the API's base URL. The caller ends it."""
    port = free_port()
    settings = {**os.environ, **env, "NIGHTOWL_PORT": str(port)}
    with (data_dir / "daemon.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daemon", "serve"],
            env=settings,
            cwd=data_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}"
