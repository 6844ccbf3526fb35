"""From the last light of the night to the finished picture, with and without the live stack.

Runs its own simulator rig, a temporary database and data folder, and takes a night of N
dithered 1 s lights twice through the capture service: once with live stacking (each light
calibrated, registered and folded in the background as it is saved) and once without. It
prints the median gap between exposures of both (what live stacking costs the capture), then
the dawn: from the last frame saved to the finished picture written (the live stack catching
up, the night's job reusing the calibrated lights, integration, the default recipe), beside
the cold job of the same frames, and the noise and star FWHM of both pictures' linear stacks.

    .venv/bin/python bench/dawn.py [--frames 30] [--binning 1]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import statistics
import tempfile
import time
from datetime import UTC
from pathlib import Path

import numpy as np
from astropy.io import fits

from daemon.capture import CaptureConfig, CaptureRequest, CaptureService
from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.live import LiveService, night_cache
from daemon.naming import DEFAULT_PATTERN
from daemon.processing_options import ProcessingOptions, recipe_pipeline_config
from daemon.recipes import default_job_recipe
from daemon.simulator.rig import SimulatorRig, simulator_profile
from daemon.store import FrameStore
from daemon.worker import session_frames
from drivers.alpaca import build_equipment
from drivers.base import RaDec
from drivers.equipment import Equipment
from processing.finish import finish_targets, linear_masters
from processing.grouping import group_frames
from processing.pipeline import PipelineConfig, run_pipeline, summary
from processing.stars import detect_stars, measure_frame
from processing.subframes import measure_metrics
from sequences.frames import ExposureSpec, FrameType, SavedFrame

EXPOSURE_S = 1.0
M31 = RaDec(0.712306, 41.2692)


async def night(
    equipment: Equipment, root: Path, frames: int, binning: int, live: bool
) -> tuple[list[SavedFrame], list[float], float, LiveService | None]:
    """A night of dithered lights; the gaps between exposures (s) and when the last frame
    was saved (perf_counter)."""
    mount = equipment.mount
    assert mount is not None
    engine = make_engine(f"sqlite:///{root / 'nightowl.db'}")
    upgrade(engine)
    service = (
        LiveService(engine, root / "frames", root / "masters", root / "live") if live else None
    )
    capture = CaptureService(
        engine,
        equipment,
        FrameStore(root / "frames"),
        CaptureConfig("bench", DEFAULT_PATTERN, UTC),
        on_light=None if service is None else service.queue_light,
    )
    if service is not None:
        await service.start()

    async def dither(k: int) -> None:
        await mount.slew(RaDec(M31.ra_hours + 0.0002 * k, M31.dec_deg + 0.001 * (k % 3)))

    await mount.slew(M31)
    saved: list[SavedFrame] = []
    starts: list[float] = []
    last = 0.0

    async def on_saved(_: SavedFrame) -> None:
        nonlocal last
        last = time.perf_counter()

    spec = ExposureSpec(FrameType.LIGHT, EXPOSURE_S, binning=binning)
    for k in range(frames):
        # One light per request, a dither before each, as a sequence takes them.
        await dither(k)
        starts.append(time.perf_counter())
        saved += await capture.capture(CaptureRequest(spec), on_saved=on_saved)
    gaps = [b - a - EXPOSURE_S for a, b in itertools.pairwise(starts)]
    return saved, gaps, last, service


def picture(
    root: Path, out: Path, config: PipelineConfig, session_id: int
) -> tuple[Path, list[dict[str, object]]]:
    """The night's job: the linear stack and the default recipe's finished picture."""
    engine = make_engine(f"sqlite:///{root / 'nightowl.db'}")
    groups = group_frames(session_frames(engine, root / "frames", session_id))
    engine.dispose()
    result = run_pipeline(groups, out, config)
    outputs = dict(summary(result))
    finished = finish_targets(
        linear_masters(outputs), default_job_recipe(), out / "finished", lambda s, f: None
    )
    return result.groups[0].outputs["fits"], finished


def quality(path: Path) -> tuple[float, float | None]:
    """Background noise (ADU) and median star FWHM (px) of a linear stack."""
    image = np.asarray(fits.getdata(path), dtype=np.float32)
    image = image.reshape(image.shape[-2:])
    stars = detect_stars(image)
    metrics = measure_metrics(image, stars, saturation_adu=1e9)
    return metrics.noise_adu, measure_frame(image, saturation_adu=1e9).fwhm_px


async def main(frames: int, binning: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        rig = SimulatorRig(run_dir=base / "sim", cache_dir=base / "cache")
        rig.start()
        try:
            equipment = build_equipment(simulator_profile(rig.url))
            await equipment.connect_all()
            assert equipment.mount is not None
            await equipment.mount.unpark()
            await equipment.mount.set_tracking(True)
            plain_root, live_root = base / "plain", base / "live"
            plain_root.mkdir()
            (base / "warmup").mkdir()
            live_root.mkdir()
            # The simulator caches its renderings: a first night fills it for both rows.
            await night(equipment, base / "warmup", frames, binning, False)
            _, plain_gaps, _, _ = await night(equipment, plain_root, frames, binning, False)
            saved, live_gaps, last, service = await night(
                equipment, live_root, frames, binning, True
            )
            assert service is not None
            ids = {f.id for f in saved}
            while True:  # the live stack catches up
                done: set[int] = set()
                for status in service.stacks():
                    done.update(status.get("folded", []))
                    done.update(int(i) for i in status.get("skipped", {}))
                if ids <= done:
                    break
                await asyncio.sleep(0.1)
            caught_up = time.perf_counter() - last
            await service.stop()
            stacks = service.stacks()
            session_id = int(stacks[0]["session_id"])
            config = recipe_pipeline_config(ProcessingOptions(), default_job_recipe())
            cache = night_cache(live_root / "live", session_id)
            warm = dataclasses.replace(config, cache_dir=cache)
            warm_fits, _ = await asyncio.to_thread(
                picture, live_root, base / "warm", warm, session_id
            )
            dawn = time.perf_counter() - last
            start = time.perf_counter()
            cold_fits, _ = await asyncio.to_thread(
                picture, live_root, base / "cold", config, session_id
            )
            cold = time.perf_counter() - start
            start = time.perf_counter()
            await asyncio.to_thread(picture, live_root, base / "again", warm, session_id)
            again = time.perf_counter() - start
            figures = [
                (name, *quality(path))
                for name, path in (("reusing the live stack", warm_fits), ("cold", cold_fits))
            ]
            await equipment.disconnect_all()
        finally:
            rig.stop()
    size = f"{2048 // binning} x {1536 // binning}"
    print(
        f"{frames} dithered {EXPOSURE_S} s lights, {size}, simulator on loopback, one per request"
    )
    print(f"{'gap between exposures, median':40s} {'ms':>8s}")
    print(f"{'  without live stacking':40s} {statistics.median(plain_gaps) * 1000:8.0f}")
    print(f"{'  with live stacking':40s} {statistics.median(live_gaps) * 1000:8.0f}")
    rejected = 100 * float(stacks[0]["rejected_fraction"])
    print(f"live stack: {stacks[0]['frames']} frames, rejected pixels {rejected:.2f} %")
    print(f"{'from the last frame saved':40s} {'s':>8s}")
    print(f"{'  live stack caught up':40s} {caught_up:8.1f}")
    print(f"{'  finished picture written (dawn)':40s} {dawn:8.1f}")
    print(f"{'cold job of the same frames':40s} {cold:8.1f}")
    print(f"{'job reusing the live stack, run again':40s} {again:8.1f}")
    for name, noise, fwhm in figures:
        print(f"  {name:38s} noise {noise:8.2f} ADU   FWHM {fwhm or float('nan'):5.2f} px")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--binning", type=int, default=1)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.frames, arguments.binning))
