"""The live stack of a simulated night: lights captured from the simulators are stacked in
the background as they are saved, the stack survives a restart of the service, and the
morning's job reusing the calibrated lights equals a cold job of the same frames."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC
from pathlib import Path

import numpy as np
from astropy.io import fits
from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.capture import CaptureConfig, CaptureRequest, CaptureService
from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.db.models import FrameStars
from daemon.live import LiveService, night_cache, read_status
from daemon.naming import DEFAULT_PATTERN
from daemon.store import FrameStore
from daemon.worker import session_frames
from drivers.base import RaDec
from drivers.equipment import Equipment
from processing.grouping import group_frames
from processing.pipeline import PipelineConfig, run_pipeline
from processing.star_lists import StarList
from processing.subframes import SubframeRules
from sequences.frames import ExposureSpec, FrameType

# Binned 4 x 4 the simulator's frames are 512 x 384: enough stars, seconds per night.
LIGHTS = ExposureSpec(FrameType.LIGHT, 1.0, binning=4)
M31 = RaDec(0.712306, 41.2692)


async def wait_frames(live: LiveService, frames: int, timeout_s: float = 90.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        stacks = await asyncio.to_thread(live.stacks)
        if stacks and stacks[0].get("frames") == frames:
            return stacks[0]
        assert time.monotonic() < deadline, f"live stack not at {frames} frames: {stacks}"
        await asyncio.sleep(0.2)


async def test_a_night_is_stacked_live_resumed_and_reused_in_the_morning(
    tmp_path: Path, equipment: Equipment
) -> None:
    assert equipment.mount is not None
    await equipment.mount.unpark()
    await equipment.mount.set_tracking(True)
    await equipment.mount.slew(M31)
    mount = equipment.mount
    steps = iter(range(1, 100))

    async def dither(_: int) -> None:
        """A few pixels' move, so every light is another rendering of the sky."""
        step = next(steps)
        await mount.slew(RaDec(M31.ra_hours + 0.0002 * step, M31.dec_deg + 0.001 * (step % 3)))

    engine = make_engine(f"sqlite:///{tmp_path / 'nightowl.db'}")
    upgrade(engine)
    frames_root, live_root = tmp_path / "frames", tmp_path / "live"
    live = LiveService(engine, frames_root, tmp_path / "masters", live_root)
    capture = CaptureService(
        engine,
        equipment,
        FrameStore(frames_root),
        CaptureConfig("simulators", DEFAULT_PATTERN, UTC),
        on_light=live.queue_light,
    )
    await live.start()
    try:
        saved = await capture.capture(CaptureRequest(LIGHTS, count=4), between=dither)
        status = await wait_frames(live, 4)
    finally:
        await live.stop()
    assert all(frame.accepted for frame in saved)
    with Session(engine) as db:
        rows = db.scalars(select(FrameStars)).all()
    assert len(rows) == 4
    assert all(len(StarList.from_bytes(r.stars)) == r.star_count >= 6 for r in rows)
    assert status["notes"] == ["uncalibrated: no master in the library matches these lights"]
    assert status["folded"] == [f.id for f in saved]
    name = str(status["name"])
    session_id = int(str(status["session_id"]))
    preview = live.preview(session_id, name)
    assert preview is not None
    assert preview.read_bytes()[:2] == b"\xff\xd8"

    # A restarted service resumes the stack from disk.
    live = LiveService(engine, frames_root, tmp_path / "masters", live_root)
    capture = CaptureService(
        engine,
        equipment,
        FrameStore(frames_root),
        CaptureConfig("simulators", DEFAULT_PATTERN, UTC),
        on_light=live.queue_light,
    )
    await live.start()
    await dither(0)
    try:
        saved += await capture.capture(CaptureRequest(LIGHTS, count=2), between=dither)
        status = await wait_frames(live, 6)
    finally:
        await live.stop()
    assert status["folded"] == [f.id for f in saved]

    # The morning: the night's job finds every light calibrated in the live stack's cache.
    groups = group_frames(session_frames(engine, frames_root, session_id))
    cache = night_cache(live_root, session_id)
    assert len(list(cache.glob("*.json"))) == 6
    # Binned 4 x 4, the simulator's stars are undersampled (HFR under half a pixel): their
    # measured eccentricity swings with where a star falls within its pixel, which the dithers
    # change (0.07 typical, 0.17-0.26 seen), so the morning's outlier rule would drop a light or
    # two that the live stack folded. A wider eccentricity floor keeps them on both sides.
    rules = SubframeRules(eccentricity_sigma_floor=0.12)
    cold = run_pipeline(groups, tmp_path / "cold", PipelineConfig(threads=1, subframes=rules))
    warm = run_pipeline(
        groups, tmp_path / "warm", PipelineConfig(threads=1, subframes=rules, cache_dir=cache)
    )
    assert warm.timings_s["calibrate"] < cold.timings_s["calibrate"]
    cold_image = fits.getdata(cold.groups[0].outputs["fits"])
    warm_image = fits.getdata(warm.groups[0].outputs["fits"])
    np.testing.assert_array_equal(cold_image, warm_image)  # the same arrays, the same sums

    # The live stack agrees with the morning's result within the noise of one frame.
    folder = live_root / f"night_{session_id}" / name
    live_image = np.load(folder / "state" / "mean.npy")[0]
    assert read_status(folder) is not None
    assert cold.groups[0].integrated >= 5, [f.reason for f in cold.groups[0].frames]
    y0, y1, x0, x1 = cold.groups[0].crop_yx or (0, *live_image.shape[:1], 0, *live_image.shape[1:])
    morning = cold_image.reshape(y1 - y0, x1 - x0)[8:-8, 8:-8]
    difference = live_image[y0:y1, x0:x1][8:-8, 8:-8] - morning
    # Both are means of the same six frames on (nearly) the same grid: what differs is
    # rejection and weighting, far below one frame's pixel noise.
    noise = float(np.median(np.abs(np.diff(morning, axis=1)))) * np.sqrt(6)
    assert float(np.median(np.abs(difference))) < 0.5 * noise
    engine.dispose()
