"""Step overhead of the sequence runner: the gap between one exposure's end and the next start.

Runs its own simulator rig, a temporary SQLite database and frames folder, and the daemon's run
manager on a simulated clock. Three ways to take N back-to-back 1 s lights of M31:

- the capture service alone (no sequence), the floor the runner builds on;
- a sequence run with dithering off (checkpoints, triggers, journal writes per frame);
- a sequence run guiding and dithering every 3rd frame (settle 1.5 px for 2 s): the gaps
  without a dither, and the gaps with one (settle included).

    .venv/bin/python bench/sequence_overhead.py [--frames 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from daemon.capture import CaptureConfig, CaptureRequest, CaptureService
from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.db.models import Frame
from daemon.naming import DEFAULT_PATTERN
from daemon.runs import CaptureSink, RunEvents, RunManager
from daemon.simulator.rig import SimulatorRig, simulator_profile
from daemon.store import FrameStore
from drivers.alpaca import build_equipment
from drivers.base import RaDec
from drivers.guider import NativeGuider
from sequences.astro import configure_astropy_offline
from sequences.clock import SimulatedClock
from sequences.context import RunContext
from sequences.document import parse_document
from sequences.frames import ExposureSpec, FrameType
from sequences.validation import site_of

EXPOSURE_S = 1.0
M31 = RaDec(0.712306, 41.2692)


def gaps_s(engine: Engine, ids: list[int]) -> list[float]:
    with Session(engine) as db:
        starts = [
            f.exposure_start_utc
            for f in db.scalars(select(Frame).where(Frame.id.in_(ids)).order_by(Frame.id))
        ]
    return [(b - a).total_seconds() - EXPOSURE_S for a, b in itertools.pairwise(starts)]


def run_frame_ids(engine: Engine, run_id: int) -> list[int]:
    with Session(engine) as db:
        return list(db.scalars(select(Frame.id).where(Frame.run_id == run_id).order_by(Frame.id)))


def document(frames: int, dither: bool) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"kind": "take_exposures", "count": frames, "exposure_s": EXPOSURE_S}
    ]
    triggers = []
    if dither:
        items.insert(0, {"kind": "start_guiding", "settle_time_s": 2.0})
        items.append({"kind": "stop_guiding"})
        triggers.append(
            {"kind": "dither_after_exposures", "after_exposures": 3, "settle_time_s": 2.0}
        )
    return {
        "name": "overhead",
        "targets": [
            {
                "kind": "target",
                "target_name": "M31",
                "coordinates": {"ra_hours": M31.ra_hours, "dec_deg": M31.dec_deg},
                "triggers": triggers,
                "items": items,
            }
        ],
    }


async def main(frames: int) -> None:
    configure_astropy_offline()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with SimulatorRig(run_dir=root / "sim", cache_dir=root / "cache") as rig:
            equipment = build_equipment(simulator_profile(rig.url))
            await equipment.connect_all()
            assert equipment.mount is not None
            assert equipment.guide_camera is not None
            await equipment.mount.unpark()
            await equipment.mount.set_tracking(True)
            await equipment.mount.slew(M31)
            engine = make_engine(f"sqlite:///{root / 'nightowl.db'}")
            upgrade(engine)
            guider = NativeGuider(equipment.guide_camera, equipment.mount)
            service = CaptureService(
                engine,
                equipment,
                FrameStore(root / "frames"),
                CaptureConfig("bench", DEFAULT_PATTERN, UTC),
                guider,
            )
            clock = SimulatedClock(datetime(2026, 11, 22, 20, 0, tzinfo=UTC))

            def context(run_id: int, events: RunEvents) -> RunContext:
                return RunContext(
                    equipment=equipment,
                    clock=clock,
                    frames=CaptureSink(service, engine),
                    events=events,
                    run_id=run_id,
                    site=site_of(equipment),
                    guider=guider,
                )

            runs = RunManager(engine, context, clock)
            await service.capture(
                CaptureRequest(ExposureSpec(FrameType.LIGHT, EXPOSURE_S))
            )  # warm-up
            direct = [
                f.id
                for f in await service.capture(
                    CaptureRequest(ExposureSpec(FrameType.LIGHT, EXPOSURE_S), count=frames)
                )
            ]
            results: dict[str, list[float]] = {"capture service alone": gaps_s(engine, direct)}
            for dither in (False, True):
                run_id = await runs.start(parse_document(document(frames, dither)))
                await runs.wait(run_id)
                gaps = gaps_s(engine, run_frame_ids(engine, run_id))
                if not dither:
                    results["sequence, dithering off"] = gaps
                else:
                    results["sequence, no dither before the frame"] = [
                        g for i, g in enumerate(gaps, start=1) if i % 3
                    ]
                    results["sequence, dither + settle before it"] = [
                        g for i, g in enumerate(gaps, start=1) if not i % 3
                    ]
            await guider.stop()
            await equipment.disconnect_all()
            engine.dispose()

    floor = statistics.median(results["capture service alone"])
    print(f"{frames} back-to-back {EXPOSURE_S} s lights, 2048 x 1536, simulator on loopback")
    print(f"{'':40s} {'gap median ms':>14s} {'max ms':>8s} {'x capture':>10s}")
    for name, gaps in results.items():
        median = statistics.median(gaps)
        print(f"{name:40s} {median * 1000:14.0f} {max(gaps) * 1000:8.0f} {median / floor:10.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    asyncio.run(main(parser.parse_args().frames))
