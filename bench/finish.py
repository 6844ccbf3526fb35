"""The default recipe's finishing steps on a 24 MP colour master: wall time per step, peak RSS.

A synthetic linear RGB master (6000 x 4000 by default: stars, a faint nebula, a gradient with
a vignetting bowl, a colour cast, noise) is written as FITS; a fresh process loads it and runs
`processing.finish.finish` with the default recipe, so the peak RSS is the finishing's own.
Goal: the whole recipe under 20 s on 2 cores and under 3 GB.

    .venv/bin/python bench/finish.py [--width 6000 --height 4000] [--runs 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from processing import synthetic
from processing.io import FitsCard, encode_fits


def make_master(path: Path, height: int, width: int) -> None:
    rng = np.random.default_rng(11)
    shape = (height, width)
    stars = synthetic.random_star_field(rng, shape, width * height // 20_000, (2e3, 3e5), 8)
    light = synthetic.render_stars(shape, stars.yx, stars.flux_e, 1.8)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy /= height
    xx /= width
    gradient = 700.0 + 150.0 * xx + 80.0 * yy**2
    bowl = 1.0 - 0.25 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    nebula = 300.0 * np.exp(-(((xx - 0.45) / 0.12) ** 2 + ((yy - 0.55) / 0.09) ** 2))
    planes = []
    for gain in (1.2, 1.0, 0.75):
        plane = (light + nebula + gradient) * bowl * gain
        plane += rng.normal(0.0, 15.0, shape)
        planes.append(plane.astype(np.float32))
    cards: list[FitsCard] = [("OBJECT", "bench", ""), ("NCOMBINE", 40, "")]
    path.write_bytes(encode_fits(np.stack(planes), cards, ["bench master"]))


def run_finish(path: str, out: str, queue: multiprocessing.Queue[object]) -> None:
    from processing.finish import finish, load_master
    from processing.recipe import default_recipe

    started = time.perf_counter()
    master = load_master(Path(path))
    loaded = time.perf_counter() - started
    result = finish([master], default_recipe(), Path(out))
    total = time.perf_counter() - started
    steps = [(s.kind, s.seconds) for s in result.steps]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((loaded, steps, total, rss_mb))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        master = Path(tmp) / "master.fits"
        make_master(master, args.height, args.width)
        mp = args.width * args.height / 1e6
        print(f"finishing a {args.width} x {args.height} RGB master ({mp:.0f} MP), default recipe")
        runs: list[tuple[float, list[tuple[str, float]], float, float]] = []
        for run in range(args.runs):
            queue: multiprocessing.Queue[object] = context.Queue()
            child = context.Process(target=run_finish, args=(str(master), f"{tmp}/out{run}", queue))
            child.start()
            runs.append(queue.get())  # type: ignore[arg-type]
            child.join()
        steps: dict[str, list[float]] = {}
        for _, run_steps, _, _ in runs:
            for kind, seconds in run_steps:
                steps.setdefault(kind, []).append(seconds)
        print(f"{'step':16s} {'median s':>9s}")
        print(f"{'load':16s} {statistics.median(r[0] for r in runs):9.2f}")
        for kind, times in steps.items():
            print(f"{kind:16s} {statistics.median(times):9.2f}")
        total = statistics.median(r[2] for r in runs)
        rss = max(r[3] for r in runs)
        print(f"{'total':16s} {total:9.2f}   (goal < 20 s on 2 cores)")
        print(f"peak RSS {rss:.0f} MiB   (goal < 3072 MiB)")


if __name__ == "__main__":
    main()
