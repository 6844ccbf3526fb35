"""One processing job on the local pool and on Dask clusters of 1 and 2 workers: wall times.

A synthetic night (`processing.synthetic`: bias, darks, flats and dithered lights with
defects) is written once in a temporary folder; the same job (`processing.pipeline`, the
default recipe's stacking: calibrate, register, integrate, write) then runs

- on the local pool (`PipelineConfig(threads=2)`, worker processes of this machine);
- on a Dask cluster of 1 worker and of 2 workers, each started here with Nightowl's own
  scheduler and worker commands (`processing.cluster.start_local_cluster`, loopback),
  its workers' imports done before the clock starts.

Each row: where the job ran, its wall seconds, the seconds per stage, and its time over the
local pool's (< 1: faster than the pool). On one machine the cluster adds only overhead
(task scheduling, results passed through the scheduler); the figures show how much, and
whether 2 workers scale over 1 when the machine has the cores for them.

    .venv/bin/python bench/scale.py [--lights 40] [--size 1024x768] [--workers 1,2]

``--lights 120 --size 2048x1536`` is a large night (about 6 GB of work files).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from processing import synthetic
from processing.cluster import start_local_cluster
from processing.grouping import LightGroup, group_frames
from processing.pipeline import PipelineConfig, run_pipeline, scan_folder


def parse_size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' as (height, width)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"--size {text!r}: write WIDTHxHEIGHT, e.g. 2048x1536"
        ) from e
    if width < 128 or height < 128:
        raise argparse.ArgumentTypeError("--size: at least 128x128")
    return height, width


def make_night(folder: Path, lights: int, shape: tuple[int, int]) -> list[LightGroup]:
    config = synthetic.SessionConfig(
        sensor=synthetic.SensorModel(shape=shape, seed=3),
        bias_frames=5,
        dark_frames=5,
        flat_frames=5,
        light_frames=lights,
        star_count=max(150, shape[0] * shape[1] // 10_000),
        trail_every=10,
        seed=5,
    )
    synthetic.write_session(folder, config)
    return group_frames(scan_folder(folder)[0])


def timed(
    groups: list[LightGroup], out: Path, config: PipelineConfig
) -> tuple[float, str, dict[str, float]]:
    start = time.perf_counter()
    result = run_pipeline(groups, out, config)
    return time.perf_counter() - start, result.executor, result.timings_s


def _warm() -> None:
    import processing.pipeline  # noqa: F401 - a worker's imports, before the clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lights", type=int, default=40)
    parser.add_argument("--size", type=parse_size, default=(768, 1024), help="WIDTHxHEIGHT")
    parser.add_argument("--workers", default="1,2", help="cluster sizes, comma-separated")
    args = parser.parse_args()
    workers = [int(n) for n in args.workers.split(",") if n]
    height, width = args.size
    with tempfile.TemporaryDirectory(prefix="nightowl-scale-") as tmp:
        root = Path(tmp)
        begin = time.perf_counter()
        groups = make_night(root / "night", args.lights, args.size)
        print(
            f"{args.lights} lights of {width}x{height} (+15 calibration frames) written in "
            f"{time.perf_counter() - begin:.1f} s"
        )
        rows = [
            timed(groups, root / "out-pool", PipelineConfig(threads=2, pool_min_megapixels=0.0))
        ]
        for count in workers:
            with start_local_cluster(count, root / f"dask-{count}") as cluster:
                cluster.client.run(_warm)
                rows.append(
                    timed(
                        groups,
                        root / f"out-dask-{count}",
                        PipelineConfig(scheduler=cluster.address),
                    )
                )
    local = rows[0][0]
    stages = ["masters", "calibrate", "register", "integrate"]
    print(
        f"{'executor':<40} {'wall s':>8} "
        + " ".join(f"{s:>10}" for s in stages)
        + f" {'/ local':>8}"
    )
    for wall, executor, timings in rows:
        per_stage = " ".join(f"{timings.get(s, 0.0):>10.2f}" for s in stages)
        print(f"{executor:<40} {wall:>8.2f} {per_stage} {wall / local:>8.2f}")


if __name__ == "__main__":
    main()
