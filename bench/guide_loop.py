"""Native guiding on the simulator: loop latency and RMS under drift, with and without guiding.

Runs its own simulator rig with the simulator's bad-tracking hook set to --drift arcsec/s on
each axis (a drift the mount does not report, like polar misalignment), on M31's field where
~6 catalog stars fall on the guide camera. After calibrating, the guider measures the same
drift for --seconds with its corrections switched off, then for --seconds guiding. Prints:
calibration time; per guide step the latency from the end of the exposure to the first pulse
sent and the processing time from the frame in hand to the pulses (median / max); the cycle
time; and the RMS (RA, Dec, total) of both runs.

    .venv/bin/python bench/guide_loop.py [--seconds 60] [--exposure 1.0] [--drift 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from daemon.simulator.rig import SimulatorRig, simulator_profile
from drivers.alpaca import build_equipment
from drivers.base import GuideEvent, GuideRms, GuideStep, RaDec
from drivers.guider import GuiderConfig, NativeGuider

M31 = RaDec(0.712306, 41.2692)


async def steps_for(queue: asyncio.Queue[GuideEvent], seconds: float) -> list[GuideStep]:
    steps: list[GuideStep] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            event = await asyncio.wait_for(queue.get(), remaining)
        except TimeoutError:
            break
        if isinstance(event, GuideStep):
            steps.append(event)
    return steps


async def back_on_lock(queue: asyncio.Queue[GuideEvent], timeout_s: float = 60.0) -> None:
    """Wait until three steps in a row are within 0.5 px of the lock (or `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    near = 0
    while near < 3 and (remaining := deadline - time.monotonic()) > 0:
        try:
            event = await asyncio.wait_for(queue.get(), remaining)
        except TimeoutError:
            return
        if isinstance(event, GuideStep):
            near = near + 1 if event.distance_px < 0.5 else 0


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):7.1f} / {1000 * max(values):7.1f}"


def rms_row(label: str, rms: GuideRms | None) -> str:
    assert rms is not None
    return (
        f"{label:18s} {rms.ra_arcsec:6.2f} {rms.dec_arcsec:6.2f} {rms.total_arcsec:6.2f} "
        f"{rms.steps:6d}"
    )


async def main(seconds: float, exposure_s: float, drift: float) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        SimulatorRig(
            run_dir=Path(tmp),
            cache_dir=Path(tmp) / "cache",
            overrides={"bad_tracking_rate": drift},
        ) as rig,
    ):
        equipment = build_equipment(simulator_profile(rig.url))
        await equipment.connect_all()
        mount, camera = equipment.mount, equipment.guide_camera
        assert mount is not None
        assert camera is not None
        await mount.unpark()
        await mount.set_tracking(True)
        await mount.slew(M31)

        guider = NativeGuider(camera, mount, GuiderConfig(exposure_s=exposure_s))
        events = guider.subscribe()
        t0 = time.perf_counter()
        await guider.start()
        calibration_s = time.perf_counter() - t0
        calibration = guider.calibration
        assert calibration is not None

        # Drift from now on: the hook drifts from the last slew or sync, so sync in place.
        async with httpx.AsyncClient(timeout=5) as client:
            reply = await client.put(f"{rig.url}/bad_tracking", params={"state": "true"})
            reply.raise_for_status()
        await mount.sync((await mount.status()).position)

        guider.output_enabled = False
        guider.reset_rms()
        await steps_for(events, seconds)
        unguided = guider.rms()

        guider.output_enabled = True
        await back_on_lock(events)
        guider.reset_rms()
        guided_steps = await steps_for(events, seconds)
        guided = guider.rms()
        await guider.stop()
        await equipment.disconnect_all()

    pulsed = [s for s in guided_steps if s.latency_s is not None]
    cycle = [(b.time_utc - a.time_utc).total_seconds() for a, b in itertools.pairwise(guided_steps)]
    print(
        f"native guider on the simulator: guide camera 1024 x 768 at "
        f'{guider.pixel_scale_arcsec_px:.2f} "/px, M31 field, {exposure_s} s exposures, '
        f'drift {drift} "/s per axis (bad_tracking), {seconds:.0f} s per run'
    )
    print(
        f"calibration + start: {calibration_s:.1f} s "
        f"(RA {calibration.ra_rate_px_s:.3f} px/s at {calibration.ra_angle_deg:.1f} deg, "
        f"Dec {calibration.dec_rate_px_s:.3f} px/s at {calibration.dec_angle_deg:.1f} deg)"
    )
    print(f"{'per guide step':34s} {'median':>7s} / {'max':>7s} ms")
    print(f"{'frame end -> pulse issued':34s} {ms([s.latency_s for s in pulsed if s.latency_s])}")
    print(f"{'frame in hand -> pulse issued':34s} {ms([s.processing_s for s in pulsed])}")
    print(f"{'cycle (exposure start to start)':34s} {ms(cycle)}")
    print(f"{'RMS arcsec':18s} {'RA':>6s} {'Dec':>6s} {'total':>6s} {'steps':>6s}")
    print(rms_row("without guiding", unguided))
    print(rms_row("guiding", guided))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--exposure", type=float, default=1.0)
    parser.add_argument("--drift", type=float, default=0.25, help="arcsec/s per axis")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.exposure, args.drift))
