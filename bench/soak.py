"""Soak: kill -9 the daemon during runs, restart it, and check that nothing was lost or leaked.

Each cycle starts `nightowl serve` (embedded simulators, NIGHTOWL_RESUME_RUNS=true, rehearsal
clock) on one fresh data folder, keeps a run of short lights going (the one it resumed, or a new
one) for a seeded random while, then kills it with SIGKILL. Once `--minutes` have passed, a
last daemon finishes the current run and stops gracefully, and the checks run:

- every run that completed holds exactly its lights; no run failed;
- every frame file has its row (same checksum and size), every row its file;
- no partial file of an interrupted write is left;
- no process is left: each killed daemon's simulator ended within 5 s, none runs at the end
  (a process of the soak is one that inherited its NIGHTOWL_DATA_DIR);
- the daemon's resident memory stayed under `--max-rss-mb`.

Prints the figures (with `--json`, one JSON object on the last line); exits with status 1 if a
check failed.

    .venv/bin/python bench/soak.py [--minutes 120] [--seed 1] [--cache-dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

M31 = {"ra_hours": 0.712306, "dec_deg": 41.2692}
LIGHTS_NODE = "targets[0].items[1]"
PARTIAL_SUFFIX = ".partial"  # processing.io.TEMP_SUFFIX
GONE_WITHIN_S = 5.0
ENDED = ("completed", "failed", "aborted")


@dataclass
class Figures:
    cycles: int = 0
    kills: int = 0
    runs_completed: int = 0
    runs_failed: int = 0
    files_registered_at_start: int = 0
    """Files a kill left without a row, registered by the next start."""
    partials_removed_at_start: int = 0
    """Partial files a kill left, removed by the next start."""
    frames_on_disk: int = 0
    frame_rows: int = 0
    files_without_row: int = 0
    rows_without_file: int = 0
    checksum_mismatches: int = 0
    partial_files: int = 0
    runs_with_wrong_count: list[int] = field(default_factory=list)
    processes_outliving_a_kill: int = 0
    """Kills after which a process of the daemon (its simulator) ran on for 5 s."""
    processes_left: list[int] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    rss_mb_per_cycle: list[float] = field(default_factory=list)
    minutes: float = 0.0

    def problems(self, max_rss_mb: float) -> list[str]:
        checks = {
            "a run failed": self.runs_failed > 0,
            "no run completed": self.runs_completed == 0,
            "a completed run does not hold exactly its lights": bool(self.runs_with_wrong_count),
            "a frame file has no row": self.files_without_row > 0,
            "a row has no file": self.rows_without_file > 0,
            "a file's checksum or size differs from its row's": self.checksum_mismatches > 0,
            "a partial file is left": self.partial_files > 0,
            "a process outlived its killed daemon": self.processes_outliving_a_kill > 0,
            "processes are left": bool(self.processes_left),
            f"the daemon's RSS exceeded {max_rss_mb:.0f} MB": self.peak_rss_mb > max_rss_mb,
        }
        return [name for name, failed in checks.items() if failed]


def night(lights: int) -> dict[str, Any]:
    """Unpark, slew, `lights` x 1 s lights binned 4 x 4 (small files for long soaks), park."""
    return {
        "name": f"soak: {lights} lights",
        "start": {"items": [{"kind": "unpark"}]},
        "targets": [
            {
                "kind": "target",
                "target_name": "M31",
                "coordinates": M31,
                "items": [
                    {"kind": "slew"},
                    {"kind": "take_exposures", "count": lights, "exposure_s": 1.0, "binning": 4},
                ],
            }
        ],
        "end": {"items": [{"kind": "park"}]},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def processes_of(data_dir: Path) -> list[int]:
    """Live processes of the soak's daemons and their children (simulators, workers): those
    that carry the soak's NIGHTOWL_DATA_DIR in their environment."""
    marker = f"NIGHTOWL_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and marker in environment:
            found.append(int(entry.name))
    return found


def survivors(data_dir: Path) -> list[int]:
    """The processes of the soak still alive `GONE_WITHIN_S` after a daemon ended."""
    deadline = time.monotonic() + GONE_WITHIN_S
    while (left := processes_of(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


class Daemon:
    """One `nightowl serve` child; its RSS is sampled while it lives."""

    def __init__(self, data_dir: Path, cache_dir: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "NIGHTOWL_PORT": str(port),
            "NIGHTOWL_DATA_DIR": str(data_dir),
            "NIGHTOWL_CACHE_DIR": str(cache_dir),
            "NIGHTOWL_RESUME_RUNS": "true",
            "NIGHTOWL_PROCESS_AFTER_RUN": "false",
            "NIGHTOWL_CLOCK": "simulated",
            "NIGHTOWL_CLOCK_START": "2026-11-22T20:00:00Z",
        }
        with (data_dir / "daemon.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daemon", "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=data_dir,
            )
        self.peak_rss_mb = 0.0
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while self.process.poll() is None:
            self.peak_rss_mb = max(self.peak_rss_mb, rss_mb(self.process.pid))
            time.sleep(0.5)

    def get(self, path: str) -> Any:
        return httpx.get(f"{self.url}{path}", timeout=30).json()

    def wait(self, what: str, check: Any, timeout_s: float) -> Any:
        """GET-poll until `check()` returns something true; RuntimeError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited while waiting for {what}")
            try:
                result = check()
            except httpx.TransportError:
                result = None
            if result:
                return result
            if time.monotonic() >= deadline:
                raise RuntimeError(f"no {what} within {timeout_s:.0f} s")
            time.sleep(0.3)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._sampler.join()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._sampler.join()


def wait_ready(daemon: Daemon) -> None:
    daemon.wait("the API", lambda: httpx.get(f"{daemon.url}/api/health", timeout=5).is_success, 90)
    daemon.wait(
        "connected equipment",
        lambda: all(d["connected"] for d in daemon.get("/api/equipment")["devices"]),
        90,
    )


def run_under_way(daemon: Daemon, lights: int) -> int:
    """The id of the run under way: the one the daemon resumed, or a new one."""
    runs = daemon.get("/api/runs")
    if runs and runs[0]["status"] in ("interrupted", "running"):
        run_id = int(runs[0]["id"])
    else:
        reply = httpx.post(f"{daemon.url}/api/runs", json={"document": night(lights)}, timeout=60)
        reply.raise_for_status()
        run_id = int(reply.json()["id"])
    daemon.wait(
        f"run {run_id} running",
        lambda: daemon.get(f"/api/runs/{run_id}")["status"] in ("running", "completed"),
        90,
    )
    return run_id


def keep_running(daemon: Daemon, lights: int, seconds: float) -> None:
    """Keep a run going for `seconds` (a new one when the last ends), so a kill hits a run."""
    end = time.monotonic() + seconds
    run_id = run_under_way(daemon, lights)
    while (now := time.monotonic()) < end:
        if daemon.get(f"/api/runs/{run_id}")["status"] in ENDED:
            run_id = run_under_way(daemon, lights)
        time.sleep(min(0.5, max(0.0, end - now)))


def check_store(data_dir: Path, lights: int, figures: Figures) -> None:
    frames_root = data_dir / "frames"
    files = {
        p.relative_to(frames_root).as_posix(): p for p in frames_root.rglob("*") if p.is_file()
    }
    with sqlite3.connect(data_dir / "nightowl.db") as db:
        rows = {
            path: (sha, size)
            for path, sha, size in db.execute("SELECT path, sha256, size_bytes FROM frame")
        }
        runs = db.execute("SELECT id, status FROM sequence_run").fetchall()
        recoveries = db.execute("SELECT message, data FROM event WHERE source = 'store'").fetchall()
        counts = dict(
            db.execute(
                "SELECT run_id, count(*) FROM frame WHERE node_path = ? GROUP BY run_id",
                (LIGHTS_NODE,),
            ).fetchall()
        )
    for message, data in recoveries:
        paths = json.loads(data).get("paths", [])
        if message.startswith("removed"):
            figures.partials_removed_at_start += len(paths)
        elif message.startswith("re-registered"):
            figures.files_registered_at_start += len(paths)
    figures.partial_files = sum(1 for name in files if name.endswith(PARTIAL_SUFFIX))
    fits_files = {name: p for name, p in files.items() if name.endswith(".fits")}
    figures.frames_on_disk = len(fits_files)
    figures.frame_rows = len(rows)
    figures.files_without_row = len(fits_files.keys() - rows.keys())
    figures.rows_without_file = len(rows.keys() - fits_files.keys())
    figures.checksum_mismatches = sum(
        1
        for name in fits_files.keys() & rows.keys()
        if (hashlib.sha256(content := fits_files[name].read_bytes()).hexdigest(), len(content))
        != rows[name]
    )
    figures.runs_completed = sum(1 for _, status in runs if status == "completed")
    figures.runs_failed = sum(1 for _, status in runs if status in ENDED[1:])
    figures.runs_with_wrong_count = [
        run_id for run_id, status in runs if status == "completed" and counts.get(run_id) != lights
    ]


def soak(
    minutes: float,
    seed: int,
    data_dir: Path,
    cache_dir: Path,
    lights: int,
    kill_s: tuple[float, float],
) -> Figures:
    rng = random.Random(seed)
    figures = Figures()
    started = time.monotonic()
    while time.monotonic() - started < minutes * 60:
        daemon = Daemon(data_dir, cache_dir)
        try:
            wait_ready(daemon)
            keep_running(daemon, lights, rng.uniform(*kill_s))
        finally:
            daemon.kill()
        figures.cycles += 1
        figures.kills += 1
        figures.rss_mb_per_cycle.append(round(daemon.peak_rss_mb, 1))
        if survivors(data_dir):
            figures.processes_outliving_a_kill += 1
        print(
            f"cycle {figures.cycles}: killed after {time.monotonic() - started:.0f} s, "
            f"peak RSS {daemon.peak_rss_mb:.0f} MB",
            flush=True,
        )
    # The last daemon finishes the run under way and stops as a daemon should.
    daemon = Daemon(data_dir, cache_dir)
    try:
        wait_ready(daemon)
        run_id = run_under_way(daemon, lights)
        daemon.wait(
            f"run {run_id} to end",
            lambda: daemon.get(f"/api/runs/{run_id}")["status"] in ENDED,
            60 + lights * 10,
        )
    finally:
        daemon.stop()
    figures.cycles += 1
    figures.rss_mb_per_cycle.append(round(daemon.peak_rss_mb, 1))
    figures.peak_rss_mb = max(figures.rss_mb_per_cycle)
    figures.processes_left = survivors(data_dir)
    check_store(data_dir, lights, figures)
    figures.minutes = round((time.monotonic() - started) / 60, 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lights", type=int, default=20, help="lights per run")
    parser.add_argument(
        "--kill-after-s",
        type=float,
        nargs=2,
        default=(5.0, 60.0),
        metavar=("MIN", "MAX"),
        help="a kill comes this long after the run runs",
    )
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "nightowl")
    parser.add_argument("--max-rss-mb", type=float, default=1024.0)
    parser.add_argument(
        "--data-dir", type=Path, help="an empty folder for the soak's data (kept); default: temp"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    parser.add_argument("--json", action="store_true", help="end with the figures as JSON")
    args = parser.parse_args()
    if args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        if any(args.data_dir.iterdir()):
            parser.error(f"--data-dir {args.data_dir} is not empty: a soak starts from nothing")
        data_dir, args.keep = args.data_dir.resolve(), True
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="nightowl-soak-")).resolve()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        figures = soak(
            args.minutes, args.seed, data_dir, args.cache_dir, args.lights, args.kill_after_s
        )
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    problems = figures.problems(args.max_rss_mb)
    print(
        f"{figures.cycles} daemon lives ({figures.kills} killed with SIGKILL) in "
        f"{figures.minutes} min: {figures.runs_completed} runs completed, "
        f"{figures.frame_rows} frames, peak RSS {figures.peak_rss_mb:.0f} MB"
    )
    print("checks: " + ("all passed" if not problems else "FAILED: " + "; ".join(problems)))
    if args.keep:
        print(f"data kept in {data_dir}")
    if args.json:
        print(json.dumps({**asdict(figures), "problems": problems}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
