"""Autofocus on the simulator: exposures, wall time and landing error from both sides of focus.

Runs its own simulator rig; best focus is at 10000 steps. Prints one row per start position
(median over --runs runs) with the exposures used, the wall time and the final position.

    .venv/bin/python bench/autofocus.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from daemon.simulator.rig import SimulatorRig, simulator_profile
from drivers.alpaca import build_equipment
from drivers.base import RaDec
from sequences.autofocus import AutofocusConfig, run_autofocus

STARTS = (9_700, 9_850, 10_150, 10_300)


async def main(runs: int) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        SimulatorRig(run_dir=Path(tmp), cache_dir=Path(tmp) / "cache") as rig,
    ):
        equipment = build_equipment(simulator_profile(rig.url))
        await equipment.connect_all()
        mount, camera, focuser = equipment.mount, equipment.camera, equipment.focuser
        assert mount is not None
        assert camera is not None
        assert focuser is not None
        await mount.unpark()
        await mount.set_tracking(True)
        await mount.slew(RaDec(20.37, 40.26))
        config = AutofocusConfig(exposure_s=1.0)
        print(f"autofocus, {config.exposure_s} s exposures, best focus at 10000, {runs} runs")
        print(f"{'start':>6s} {'exposures':>9s} {'wall s':>7s} {'final':>6s} {'error':>6s} ok")
        for start in STARTS:
            walls, finals, exposures, ok = [], [], [], True
            for _ in range(runs):
                await focuser.move_to(start)
                t0 = time.perf_counter()
                report = await run_autofocus(camera, focuser, config)
                walls.append(time.perf_counter() - t0)
                finals.append(report.final_position or start)
                exposures.append(report.exposures)
                ok = ok and report.success
            final = statistics.median(finals)
            print(
                f"{start:6d} {statistics.median(exposures):9.0f} "
                f"{statistics.median(walls):7.1f} {final:6.0f} {final - 10_000:6.0f} {ok}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args().runs))
