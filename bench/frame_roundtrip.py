"""Frame round trip: StartExposure of a 0.1 s frame -> numpy array in hand, 2048 x 1536 camera.

Runs its own simulator rig on loopback and prints medians of N runs side by side:

- round trip through `AlpacaCamera.expose` with the simulator's cached render (identical
  parameters) and with a fresh render each time (exposure 1 ms longer each run);
- the same round trip in plain HTTP with no driver (the simulator's own latency: it renders
  even a cached frame's scene objects, ~0.3 s);
- the bare ImageBytes download of the same frame (one HTTP GET, bytes only): the floor;
- our ImageBytes decode alone, and alpyca's own `ImageArray` download for comparison.

    .venv/bin/python bench/frame_roundtrip.py [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

from daemon.simulator.rig import SimulatorRig, simulator_profile
from drivers.alpaca import AlpacaCamera
from drivers.alpaca.imagebytes import decode

EXPOSURE_S = 0.1


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


async def round_trips(camera: AlpacaCamera, runs: int, fresh: bool, offset: int = 0) -> list[float]:
    samples = []
    for i in range(runs):
        exposure_s = EXPOSURE_S + (0.001 * (offset + i + 1) if fresh else 0.0)
        start = time.perf_counter()
        frame = await camera.expose(exposure_s, light=True)
        samples.append(time.perf_counter() - start)
        assert frame.data.shape == (1536, 2048)
    return samples


async def main(runs: int) -> None:
    with (
        tempfile.TemporaryDirectory() as run_dir,
        SimulatorRig(run_dir=Path(run_dir), cache_dir=Path(run_dir) / "cache") as rig,
    ):
        profile = simulator_profile(rig.url)
        assert profile.camera is not None
        camera = AlpacaCamera("camera", profile.camera)
        await camera.connect()
        await camera.expose(EXPOSURE_S, light=True)  # warm-up: the first render

        url = f"{rig.url}/api/v1/camera/0/imagearray"
        session = requests.Session()

        def download() -> bytes:
            reply = session.get(url, headers={"Accept": "application/imagebytes"}, timeout=10)
            return reply.content

        def raw_round_trip() -> bytes:
            """The same frame with no driver: plain HTTP, ImageReady polled every 5 ms."""
            base = f"{rig.url}/api/v1/camera/0"
            session.put(f"{base}/startexposure", data={"Duration": EXPOSURE_S, "Light": 1})
            while not session.get(f"{base}/imageready").json()["Value"]:
                time.sleep(0.005)
            return download()

        # Interleaved, so that the machine's and the simulator's drift hits all alike.
        cached: list[float] = []
        fresh: list[float] = []
        raw: list[float] = []
        for i in range(runs):
            cached += await round_trips(camera, 1, fresh=False)
            fresh += await round_trips(camera, 1, fresh=True, offset=i)
            raw += timed(raw_round_trip, 1)
        buffer = download()
        bare = timed(download, runs)
        decoding = timed(lambda: decode(buffer), runs)
        alpyca = timed(lambda: camera._device.ImageArray, 3)

    floor = median_ms(bare)
    rows = [
        ("round trip, cached render (expose -> array)", cached, len(cached)),
        ("round trip, fresh render each frame", fresh, len(fresh)),
        ("simulator floor: raw HTTP, 5 ms polls, bytes", raw, len(raw)),
        ("bare ImageBytes download (HTTP GET, bytes)", bare, len(bare)),
        ("our ImageBytes decode (numpy)", decoding, len(decoding)),
        ("alpyca ImageArray download + decode", alpyca, len(alpyca)),
    ]
    print(f"frame 2048 x 1536 uint16, exposure {EXPOSURE_S} s, {len(buffer) / 1e6:.1f} MB")
    print(f"{'measure':46s} {'n':>3s} {'median ms':>10s} {'x floor':>8s}")
    for name, samples, n in rows:
        value = median_ms(samples)
        print(f"{name:46s} {n:3d} {value:10.1f} {value / floor:8.1f}")
    overhead = median_ms(cached) - median_ms(raw)
    print(f"driver overhead over the simulator floor (cached render): {overhead:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    asyncio.run(main(parser.parse_args().runs))
