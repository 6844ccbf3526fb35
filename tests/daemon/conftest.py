"""Run the real daemon (`nightowl serve`, uvicorn) as a child process for API tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from daemon.capture import CaptureConfig, CaptureService
from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.naming import DEFAULT_PATTERN
from daemon.simulator.rig import free_port
from daemon.store import FrameStore
from drivers.equipment import Equipment


@dataclass
class RunningDaemon:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def running_daemon(data_dir: Path, cache_dir: Path, **env: str) -> Iterator[RunningDaemon]:
    """Start `nightowl serve` on a free port; wait for /api/health; SIGTERM it afterwards."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "daemon.log"
    environment = {
        **os.environ,
        "NIGHTOWL_PORT": str(port),
        "NIGHTOWL_DATA_DIR": str(data_dir),
        "NIGHTOWL_CACHE_DIR": str(cache_dir),
        **env,
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "daemon", "serve"],
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
        )
    daemon = RunningDaemon(f"http://127.0.0.1:{port}", data_dir, process, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"daemon exited:\n{daemon.log()}"
            try:
                if httpx.get(f"{daemon.url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"daemon not ready:\n{daemon.log()}"
            time.sleep(0.2)
        yield daemon
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)  # a stop on a loaded machine
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def bare_daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path, name: str, **env: str
) -> Iterator[RunningDaemon]:
    """A daemon with no devices (a bare profile starts no simulators: up in seconds)."""
    data_dir = tmp_path_factory.mktemp(name)
    profile = data_dir / "bare.yaml"
    profile.write_text("name: bare-pier\n")
    with running_daemon(
        data_dir,
        catalog_cache,
        NIGHTOWL_EQUIPMENT_PROFILE=str(profile),
        NIGHTOWL_CONNECT_ON_START="false",
        **env,
    ) as running:
        yield running


def child_commands(pid: int) -> list[str]:
    """The command lines of the live child processes of `pid`."""
    commands = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if entry.name.isdigit() and parent == pid:
                commands.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError, IndexError):
            continue
    return commands


def has_job_fork_server(pid: int) -> bool:
    """Whether `pid` (a daemon) runs the fork server its processing jobs are forked from,
    with the pipeline preloaded (`daemon.job_preload`)."""
    return any(
        "multiprocessing.forkserver" in command and "daemon.job_preload" in command
        for command in child_commands(pid)
    )


def wait_for(predicate_url: str, check: object, timeout_s: float = 30.0) -> dict[str, object]:
    """GET `predicate_url` until `check(json)` is true; return that JSON."""
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, object] = httpx.get(predicate_url, timeout=10).json()
        if check(body):
            return body
        assert time.monotonic() < deadline, f"condition not met; last reply: {body}"
        time.sleep(0.3)


@pytest.fixture
async def service(tmp_path: Path, equipment: Equipment) -> AsyncIterator[CaptureService]:
    """The capture service on the session's simulators, with its own database and frames."""
    engine = make_engine(f"sqlite:///{tmp_path / 'nightowl.db'}")
    upgrade(engine)
    yield CaptureService(
        engine,
        equipment,
        FrameStore(tmp_path / "frames"),
        CaptureConfig("simulators", DEFAULT_PATTERN, UTC),
    )
    engine.dispose()


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium through Playwright, one per test module (its loop stays in that module)."""
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail("Chromium is missing: `make browser` installs Debian's package")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, daemon: RunningDaemon) -> Iterator[Page]:
    """A 1400 px tab on the module's own `daemon` fixture; fails the test on any page error."""
    context = browser.new_context(base_url=daemon.url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(20_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, errors
