"""How long `GET /api/plans/{id}/tonight` computes: tonight's prediction for plans of 5, 20
and 50 targets spread over the sky (goals too large to finish, so every target competes all
night), with and without a moon-distance limit. Prints medians of `--runs` runs.

    .venv/bin/python bench/plan_tonight.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

import numpy as np

from sequences.astro import Site, configure_astropy_offline
from sequences.instructions.mount import Coordinates
from sequences.plan import Goal, NightPlan, PlanTarget, predict_night

SITE = Site(47.0, 8.0)
EVENING = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)


def make_plan(targets: int, moon_deg: float, seed: int = 1) -> NightPlan:
    rng = np.random.default_rng(seed)
    return NightPlan(
        name="bench",
        template_id=1,
        moon_separation_deg=moon_deg,
        targets=[
            PlanTarget(
                name=f"T{i}",
                coordinates=Coordinates(
                    ra_hours=float(rng.uniform(0, 24)), dec_deg=float(rng.uniform(-20, 80))
                ),
                priority=int(rng.integers(1, 6)),
                goals=[Goal(filter_name="L", exposure_s=300.0, count=500)],
            )
            for i in range(targets)
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    configure_astropy_offline()
    predict_night(make_plan(1, 30.0), {}, SITE, None, EVENING)  # warm the caches
    print(f"{'targets':>7} {'moon limit':>10} {'slots':>6} {'median':>9} {'max':>9}")
    for targets in (5, 20, 50):
        for moon_deg in (0.0, 30.0):
            plan = make_plan(targets, moon_deg)
            times = []
            slots = 0
            for _ in range(args.runs):
                start = time.perf_counter()
                preview = predict_night(plan, {}, SITE, None, EVENING)
                times.append(time.perf_counter() - start)
                assert preview is not None
                slots = len(preview.slots)
            print(
                f"{targets:>7} {moon_deg:>8.0f} d {slots:>6} "
                f"{statistics.median(times) * 1000:>7.0f} ms {max(times) * 1000:>7.0f} ms"
            )


if __name__ == "__main__":
    main()
