"""Inter-frame overhead of back-to-back 1 s lights through the capture service.

Runs its own simulator rig and a temporary SQLite database and frames folder, then takes N
lights twice, interleaving nothing else: once through `CaptureService.capture` (measuring,
writing and recording frame N while frame N+1 exposes) and once strictly one after the other
(expose, then measure, write and record, then the next), and prints the median gap per frame
(time between exposure starts minus the exposure) for both, beside the simulator's own
latency for a frame of that exposure with no processing at all.

    .venv/bin/python bench/capture_series.py [--frames 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from datetime import UTC
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.capture import CaptureConfig, CaptureRequest, CaptureService
from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.db.models import Frame
from daemon.naming import DEFAULT_PATTERN
from daemon.simulator.rig import SimulatorRig, simulator_profile
from daemon.store import FrameStore
from drivers.alpaca import build_equipment
from drivers.base import RaDec
from sequences.frames import ExposureSpec, FrameType

EXPOSURE_S = 1.0


def gaps_s(engine_url: str, ids: list[int]) -> list[float]:
    engine = make_engine(engine_url)
    with Session(engine) as db:
        starts = [
            f.exposure_start_utc
            for f in db.scalars(select(Frame).where(Frame.id.in_(ids)).order_by(Frame.id))
        ]
    engine.dispose()
    return [(b - a).total_seconds() - EXPOSURE_S for a, b in itertools.pairwise(starts)]


async def main(frames: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with SimulatorRig(run_dir=root / "sim", cache_dir=root / "cache") as rig:
            equipment = build_equipment(simulator_profile(rig.url))
            await equipment.connect_all()
            assert equipment.mount is not None
            assert equipment.camera is not None
            await equipment.mount.unpark()
            await equipment.mount.set_tracking(True)
            # Identical exposures of an unmoved field come from the simulator's render cache in
            # every row below alike, so the rows differ only by what Nightowl does.
            await equipment.mount.slew(RaDec(0.712306, 41.2692))
            url = f"sqlite:///{root / 'nightowl.db'}"
            engine = make_engine(url)
            upgrade(engine)
            service = CaptureService(
                engine,
                equipment,
                FrameStore(root / "frames"),
                CaptureConfig("bench", DEFAULT_PATTERN, UTC),
            )
            request = CaptureRequest(ExposureSpec(FrameType.LIGHT, EXPOSURE_S))
            await service.capture(request)  # warm-up

            start = time.perf_counter()
            pipelined = [
                f.id
                for f in await service.capture(
                    CaptureRequest(ExposureSpec(FrameType.LIGHT, EXPOSURE_S), count=frames)
                )
            ]
            pipelined_wall = time.perf_counter() - start

            sequential: list[int] = []
            start = time.perf_counter()
            camera = equipment.camera
            for _ in range(frames):
                context = await service._expose(camera, request)
                sequential.append((await asyncio.to_thread(service._process, context)).id)
            sequential_wall = time.perf_counter() - start

            bare: list[float] = []
            for _ in range(frames):
                t0 = time.perf_counter()
                await camera.expose(EXPOSURE_S, light=True)
                bare.append(time.perf_counter() - t0 - EXPOSURE_S)
            engine.dispose()
            rows = [
                ("capture service (pipelined)", gaps_s(url, pipelined), pipelined_wall),
                ("expose, then process (sequential)", gaps_s(url, sequential), sequential_wall),
            ]

    floor = statistics.median(bare)
    print(f"{frames} back-to-back {EXPOSURE_S} s lights, 2048 x 1536, simulator on loopback")
    print(f"{'':36s} {'gap median ms':>14s} {'per frame (wall) ms':>20s} {'x floor':>8s}")
    for name, gaps, wall in rows:
        gap = statistics.median(gaps) * 1000
        per_frame = (wall / frames - EXPOSURE_S) * 1000
        print(f"{name:36s} {gap:14.0f} {per_frame:20.0f} {gap / (floor * 1000):8.2f}")
    print(f"{'floor: expose + download only':36s} {floor * 1000:14.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    asyncio.run(main(parser.parse_args().frames))
