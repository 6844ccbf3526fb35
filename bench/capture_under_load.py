"""The gap between frames of a light series, alone and while dashboards poll the API.

Starts a simulator rig and the daemon (`nightowl serve` under uvicorn, a child process on a
temporary data folder), then takes N x 1 s lights through `POST /api/capture` twice: alone,
and while `--clients` dashboards each ask `GET /api/equipment`, `/api/frames/latest` and
`/api/events` once every `--period-s` (back to back when a round takes longer). It prints the
median gap between frames (exposure start to exposure start, minus the exposure, from the
frame records), the ratio loaded / alone, and the API's request rate and latency under load.

    .venv/bin/python bench/capture_under_load.py [--frames 20] [--clients 20] [--period-s 1]

With `--track` the mount tracks M31 first: the simulator then serves every frame of the unmoved
field from its render cache and the gap is Nightowl's own overhead (~0.1 s instead of ~0.7 s).

The star catalog and the plate solver's database are built once into `--cache-dir`
(default var/cache, as `nightowl serve` uses from the checkout).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from nightowl_daemon import start_daemon

from daemon.simulator.rig import SimulatorRig, simulator_profile
from drivers.alpaca import build_equipment
from drivers.base import RaDec
from sequences.platesolve import prepare_solver

EXPOSURE_S = 1.0
M31 = RaDec(0.712306, 41.2692)


@dataclass
class Load:
    latencies_s: list[float] = field(default_factory=list)
    failures: int = 0
    started: float = 0.0
    ended: float = 0.0


async def prepare(rig_url: str, cache_dir: Path, track: bool) -> None:
    """Build the solver database (the daemon would build it at start, ~20 s of CPU beside the
    series); with `track`, point the mount at M31 and track."""
    equipment = build_equipment(simulator_profile(rig_url))
    await equipment.connect_all()
    await prepare_solver(equipment, cache_dir)
    mount = equipment.mount
    if track and mount is not None:
        await mount.unpark()
        await mount.set_tracking(True)
        await mount.slew(M31)


async def wait_connected(client: httpx.AsyncClient, url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            reply = await client.get(f"{url}/api/equipment", timeout=30)
            devices = reply.json()["devices"] if reply.status_code == 200 else []
            if devices and all(d["connected"] and d["error"] is None for d in devices):
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError("the daemon did not connect its devices within 2 min")


async def series(client: httpx.AsyncClient, url: str, frames: int) -> list[float]:
    """Gaps (s) between the frames of one series, from their recorded exposure starts."""
    reply = await client.post(
        f"{url}/api/capture",
        json={"frame_type": "LIGHT", "exposure_s": EXPOSURE_S, "count": frames},
        timeout=frames * 60,
    )
    reply.raise_for_status()
    starts = sorted(datetime.fromisoformat(f["exposure_start_utc"]) for f in reply.json())
    return [(b - a).total_seconds() - EXPOSURE_S for a, b in itertools.pairwise(starts)]


async def dashboard(url: str, period_s: float, load: Load, stop: asyncio.Event) -> None:
    """One dashboard: a round of the three reads every `period_s` on its own connection."""
    paths = ("/api/equipment", "/api/frames/latest", "/api/events?newest=true&limit=100")
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while not stop.is_set():
            began = time.monotonic()
            for path in paths:
                t0 = time.monotonic()
                try:
                    reply = await client.get(path)
                    if reply.status_code not in (200, 404):  # 404: no frame yet
                        load.failures += 1
                except httpx.TransportError:
                    load.failures += 1
                load.latencies_s.append(time.monotonic() - t0)
            with_rest = period_s - (time.monotonic() - began)
            if with_rest > 0:
                try:
                    async with asyncio.timeout(with_rest):
                        await stop.wait()
                except TimeoutError:
                    pass


async def main(frames: int, clients: int, period_s: float, cache_dir: Path, track: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rig = SimulatorRig(run_dir=root / "sim", cache_dir=cache_dir)
        rig.start()
        process: subprocess.Popen[bytes] | None = None
        try:
            await prepare(rig.url, cache_dir, track)
            process, url = start_daemon(
                root,
                {
                    "NIGHTOWL_DATA_DIR": str(root),
                    "NIGHTOWL_CACHE_DIR": str(cache_dir),
                    "NIGHTOWL_SIMULATOR_URL": rig.url,
                    "NIGHTOWL_LOG_LEVEL": "WARNING",
                },
            )
            async with httpx.AsyncClient() as client:
                await wait_connected(client, url)
                await series(client, url, 2)  # warm-up: first frame, first preview paths
                alone = await series(client, url, frames)

                load, stop = Load(), asyncio.Event()
                load.started = time.monotonic()
                dashboards = [
                    asyncio.create_task(dashboard(url, period_s, load, stop))
                    for _ in range(clients)
                ]
                await asyncio.sleep(2 * period_s + 1.0)  # every dashboard in its stride
                loaded = await series(client, url, frames)
                stop.set()
                await asyncio.gather(*dashboards)
                load.ended = time.monotonic()
        finally:
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
            rig.stop()

    gap_alone, gap_loaded = statistics.median(alone), statistics.median(loaded)
    rate = len(load.latencies_s) / (load.ended - load.started)
    field = "a tracked field (render cache)" if track else "the simulator's start pointing"
    print(f"{frames} x {EXPOSURE_S} s lights through POST /api/capture, {field}")
    print(f"{'':44s} {'gap median ms':>14s} {'gap max ms':>11s}")
    print(f"{'alone':44s} {gap_alone * 1000:14.0f} {max(alone) * 1000:11.0f}")
    name = f"{clients} dashboards, a round every {period_s:g} s"
    print(f"{name:44s} {gap_loaded * 1000:14.0f} {max(loaded) * 1000:11.0f}")
    print(f"loaded / alone: {gap_loaded / gap_alone:.2f}")
    median_ms = statistics.median(load.latencies_s) * 1000
    p95_ms = statistics.quantiles(load.latencies_s, n=20)[-1] * 1000
    print(
        f"API under load: {rate:.0f} requests/s, median {median_ms:.0f} ms, "
        f"p95 {p95_ms:.0f} ms, {load.failures} failed"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--period-s", type=float, default=1.0)
    parser.add_argument("--cache-dir", type=Path, default=Path("var/cache"))
    parser.add_argument("--track", action="store_true", help="image a tracked, unmoved field")
    args = parser.parse_args()
    asyncio.run(
        main(args.frames, args.clients, args.period_s, args.cache_dir.resolve(), args.track)
    )
