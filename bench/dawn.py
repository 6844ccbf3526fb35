"""From the last light of the night to the finished picture, with and without the live stack.

Starts `nightowl serve` (its embedded simulators, a temporary data folder and database, the
rehearsal clock) twice, one after the other: with live stacking (each light calibrated,
registered and folded in the background as it is saved) and with `NIGHTOWL_LIVE_STACK=false`.
Through the HTTP API only, as a user would, each daemon connects its equipment and runs a
night of N 1 s lights of M 31, each light a target entry of its own a few pixels from the last
(the slew before it is the dither); the finished run queues the night's processing job
(stack, then the default recipe). Each daemon's simulator starts with an empty frame cache
and every light points elsewhere, so both nights render every frame, on the same cores as
the daemon: a load a real camera does not add, which the live stack competes with. The bench
follows the run and the job and prints:

- the median gap between consecutive lights' exposure starts, less the exposure (slew and
  sequence steps included), from the frames API: what live stacking costs the capture;
- the dawn: from the last light saved (its frame record's `created_at`) to the finished
  picture (the job's `finished_at`), both the daemon's timestamps. With live stacking that is
  the live stack catching up (`GET /api/live`: its `updated`) and the job reusing its
  calibrated lights; without it, the cold job of the same frames. Also each job's own time
  (`started_at` to `finished_at`);
- the noise and star FWHM of both jobs' linear stacks, downloaded from the job's results.

    .venv/bin/python bench/dawn.py [--frames 30] [--binning 1]
"""

from __future__ import annotations

import argparse
import io
import itertools
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
from astropy.io import fits
from nightowl_daemon import start_daemon

from processing.stars import detect_stars, measure_frame
from processing.subframes import measure_metrics

EXPOSURE_S = 1.0
M31 = {"ra_hours": 0.712306, "dec_deg": 41.2692}
REHEARSAL = {"NIGHTOWL_CLOCK": "simulated", "NIGHTOWL_CLOCK_START": "2026-11-22T20:00:00Z"}
"""M 31 is up and the sun down, so the run starts without issues whatever the hour."""
RUN_ENDED = ("completed", "failed", "aborted")
JOB_ENDED = ("done", "failed")

T = TypeVar("T")


@dataclass
class Night:
    """What one daemon's night gave, as its API reported it."""

    gaps_s: list[float]
    last_saved: datetime
    job: dict[str, Any]
    stack: dict[str, Any] | None
    linear_fits: bytes


def night(frames: int, binning: int) -> dict[str, Any]:
    """Unpark, `frames` lights each after a slew a few pixels from the last one, park."""
    light = {"kind": "take_exposures", "count": 1, "exposure_s": EXPOSURE_S, "binning": binning}
    targets = [
        {
            "kind": "target",
            "target_name": "M31",
            "coordinates": {
                "ra_hours": M31["ra_hours"] + 0.0002 * k,
                "dec_deg": M31["dec_deg"] + 0.001 * (k % 3),
            },
            "items": [{"kind": "slew"}, light],
        }
        for k in range(frames)
    ]
    return {
        "name": f"dawn: {frames} dithered lights",
        "start": {"items": [{"kind": "unpark"}]},
        "targets": targets,
        "end": {"items": [{"kind": "park"}]},
    }


def utc(text: str) -> datetime:
    """An API timestamp; one without a zone is UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def wait(what: str, check: Callable[[], T | None], timeout_s: float) -> T:
    """Poll `check()` until it returns something; RuntimeError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (found := check()) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within {timeout_s:.0f} s")
        time.sleep(0.5)
    return found


@contextmanager
def serve(data_dir: Path, cache_dir: Path, live: bool) -> Iterator[httpx.Client]:
    """`nightowl serve` on a free port with its own simulators; SIGTERM afterwards."""
    data_dir.mkdir(parents=True)
    process, url = start_daemon(
        data_dir,
        {
            "NIGHTOWL_DATA_DIR": str(data_dir),
            "NIGHTOWL_CACHE_DIR": str(cache_dir),
            # Connected by the bench as by a user's click: a start that connects also builds
            # the plate solver's database (~20 s of CPU), which this night never uses.
            "NIGHTOWL_CONNECT_ON_START": "false",
            "NIGHTOWL_LIVE_STACK": str(live).lower(),
            "NIGHTOWL_LOG_LEVEL": "WARNING",
            **REHEARSAL,
        },
    )
    try:
        with httpx.Client(base_url=url, timeout=120) as client:

            def healthy() -> bool | None:
                if process.poll() is not None:
                    raise RuntimeError(f"the daemon exited; see {data_dir / 'daemon.log'}")
                try:
                    return client.get("/api/health").is_success or None
                except httpx.TransportError:
                    return None

            wait("daemon answering", healthy, 90)
            yield client
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get(client: httpx.Client, path: str, **params: Any) -> Any:
    reply = client.get(path, params=params)
    reply.raise_for_status()
    return reply.json()


def take_night(client: httpx.Client, frames: int, binning: int) -> Night:
    """Connect, run the night, follow it and the processing job it queues."""
    reply = client.post("/api/equipment/connect")
    reply.raise_for_status()
    failed = [d["role"] for d in reply.json()["devices"] if not d["connected"]]
    if failed:
        raise RuntimeError(f"not connected: {failed}")
    reply = client.post("/api/runs", json={"document": night(frames, binning)})
    reply.raise_for_status()
    run_id = reply.json()["id"]

    def run_ended() -> dict[str, Any] | None:
        run: dict[str, Any] = get(client, f"/api/runs/{run_id}")
        return run if run["status"] in RUN_ENDED else None

    run = wait(f"end of run {run_id}", run_ended, 60 + 30 * frames)
    if run["status"] != "completed":
        raise RuntimeError(f"run {run_id} {run['status']}: {run['status_text']}")
    (session,) = get(client, "/api/sessions")
    listed = get(client, f"/api/sessions/{session['id']}/frames", frame_type="LIGHT", limit=1000)
    lights = sorted(
        (f for f in listed["items"] if f["run_id"] == run_id),
        key=lambda f: utc(f["exposure_start_utc"]),
    )
    if len(lights) != frames:
        raise RuntimeError(f"run {run_id} saved {len(lights)} lights of {frames}")
    starts = [utc(f["exposure_start_utc"]) for f in lights]
    gaps = [(b - a).total_seconds() - EXPOSURE_S for a, b in itertools.pairwise(starts)]

    def job_ended() -> dict[str, Any] | None:
        for job in get(client, "/api/processing/jobs"):
            if job["session_id"] == session["id"] and job["state"] in JOB_ENDED:
                return dict(get(client, f"/api/processing/jobs/{job['id']}"))
        return None

    job = wait(f"processing job of night {session['id']}", job_ended, 300 + 10 * frames)
    if job["state"] != "done":
        raise RuntimeError(f"job {job['id']} {job['state']}: {job['error']}")
    stacks = get(client, "/api/live")
    (group,) = job["outputs"]["groups"]
    linear = client.get(f"/api/processing/jobs/{job['id']}/groups/{group['name']}/fits")
    linear.raise_for_status()
    return Night(
        gaps,
        max(utc(f["created_at"]) for f in lights),
        job,
        stacks[0] if stacks else None,
        linear.content,
    )


def quality(data: bytes) -> tuple[float, float | None]:
    """Background noise (ADU) and median star FWHM (px) of a linear stack."""
    image = np.asarray(fits.getdata(io.BytesIO(data)), dtype=np.float32)
    image = image.reshape(image.shape[-2:])
    stars = detect_stars(image)
    metrics = measure_metrics(image, stars, saturation_adu=1e9)
    return metrics.noise_adu, measure_frame(image, saturation_adu=1e9).fwhm_px


def seconds(start: str | datetime, end: str) -> float:
    return (utc(end) - (start if isinstance(start, datetime) else utc(start))).total_seconds()


def main(frames: int, binning: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        with serve(base / "cold", base / "cache", live=False) as client:
            cold = take_night(client, frames, binning)
        with serve(base / "live", base / "cache", live=True) as client:
            warm = take_night(client, frames, binning)
    stack = warm.stack
    if stack is None or stack["frames"] + stack["skipped"] != frames:
        raise RuntimeError(f"the live stack did not take every light: {stack}")
    size = f"{2048 // binning} x {1536 // binning}"
    print(
        f"{frames} dithered {EXPOSURE_S} s lights of M 31, {size}, a run through the API of "
        "`nightowl serve` (embedded simulators)"
    )
    print(f"{'gap between exposure starts - 1 s, median':46s} {'ms':>6s}")
    print(f"{'  without live stacking':46s} {statistics.median(cold.gaps_s) * 1000:6.0f}")
    print(f"{'  with live stacking':46s} {statistics.median(warm.gaps_s) * 1000:6.0f}")
    rejected = 100 * float(stack["rejected_fraction"])
    print(
        f"live stack: {stack['frames']} frames, {stack['skipped']} skipped, "
        f"rejected pixels {rejected:.2f} %"
    )
    print(f"{'from the last light saved to':46s} {'s':>6s}")
    print(f"{'  live stack caught up':46s} {seconds(warm.last_saved, stack['updated']):6.1f}")
    for name, result in (("live stacking (dawn)", warm), ("no live stack (cold job)", cold)):
        dawn = seconds(result.last_saved, result.job["finished_at"])
        print(f"{'  finished picture, ' + name:46s} {dawn:6.1f}")
    print(f"{'processing job alone (started to finished)':46s} {'s':>6s}")
    for name, result in (("reusing the live stack", warm), ("cold", cold)):
        job = result.job
        stages = ", ".join(f"{k} {v:.1f}" for k, v in job["outputs"]["timings_s"].items())
        print(f"{'  ' + name:46s} {seconds(job['started_at'], job['finished_at']):6.1f}   {stages}")
    print("linear stacks")
    for name, result in (("reusing the live stack", warm), ("cold", cold)):
        noise, fwhm = quality(result.linear_fits)
        integrated = result.job["outputs"]["groups"][0]["integrated"]
        print(
            f"  {name:24s} {integrated:3d} lights   noise {noise:8.2f} ADU   "
            f"FWHM {fwhm or float('nan'):5.2f} px"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--binning", type=int, default=1)
    arguments = parser.parse_args()
    main(arguments.frames, arguments.binning)
