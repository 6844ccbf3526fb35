"""Integration throughput and memory: N registered float32 lights read from files.

The lights are generated once into a temporary folder as float32 FITS files (a star field
with a nebula and a sky gradient, Poisson-like noise, cosmic rays, a satellite trail every
10th frame, NaN margins where a dither left the frame uncovered) and integrated from astropy
FITS sections, which read each block of rows from the file (or, with --memmap, from memory
maps of them), each run in a fresh process so its peak memory is its own. Prints the median
over the runs of wall time, CPU time, throughput in megapixel-frames per second, and two
peaks: RSS (VmHWM; with --memmap it counts the mapped input pages, which the kernel may
drop at will) and anonymous RSS (the memory the integration itself holds, sampled every
5 ms), with the share the interpreter and libraries held before integrating.

    .venv/bin/python bench/integrate.py [--frames 30] [--width 2048] [--height 1536]
        [--runs 3] [--rejection winsorized] [--budget-mb 512] [--threads 2] [--memmap]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from processing import synthetic
from processing.integrate import IntegrationConfig, Rejection, block_plan, integrate
from processing.rejection import rejection_config


def generate(folder: Path, frames: int, shape: tuple[int, int]) -> None:
    """Write `frames` float32 lights as FITS files, one at a time (bounded memory)."""
    rng = np.random.default_rng(0)
    stars = synthetic.random_star_field(rng, shape, 300, (5e3, 5e5), margin_px=2)
    nebula = synthetic.Nebula(((shape[0] * 0.5, shape[1] * 0.5),), (min(shape) * 0.15,), (150.0,))
    scene = synthetic.sky_gradient(shape, 800.0, (0.05, 0.1))
    scene += synthetic.render_nebula(shape, nebula, np.eye(3))
    synthetic.render_stars(shape, stars.yx, stars.flux_e, 1.8, scene)
    sigma = np.sqrt(scene + 25.0).astype(np.float32)
    scene32 = scene.astype(np.float32)
    for index in range(frames):
        data = scene32 + sigma * rng.standard_normal(shape, dtype=np.float32)
        hits, _ = synthetic.cosmic_rays(shape, rng, 200, (2e3, 2e4))
        data += hits.astype(np.float32)
        if index % 10 == 9:
            trail, _ = synthetic.satellite_trail(shape, rng, 3000.0)
            data += trail.astype(np.float32)
        top, left = rng.integers(0, 12, 2)
        data[:top] = np.nan
        data[:, :left] = np.nan
        fits.PrimaryHDU(data).writeto(folder / f"light_{index:03d}.fits")


def run_once(
    folder: Path, rejection: str, budget_mb: int, threads: int, memmap: bool
) -> dict[str, float]:
    """One integration in this process; returns its figures."""
    hdus = [fits.open(path, memmap=memmap) for path in sorted(folder.glob("light_*.fits"))]
    frames = [hdu[0].data if memmap else hdu[0].section for hdu in hdus]
    config = IntegrationConfig(
        rejection=rejection_config(rejection),
        memory_budget_bytes=budget_mb * 1024 * 1024,
        threads=threads,
    )
    peak_anon = [0]
    stop = threading.Event()
    base_anon = _status_bytes("RssAnon")

    def sample() -> None:
        while not stop.is_set():
            peak_anon[0] = max(peak_anon[0], _status_bytes("RssAnon"))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    wall, cpu = time.perf_counter(), time.process_time()
    result = integrate(frames, config)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stop.set()
    sampler.join()
    for hdu in hdus:
        hdu.close()
    height, width = frames[0].shape
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": _status_bytes("VmHWM") / 2**20,
        "peak_anon_mb": peak_anon[0] / 2**20,
        "base_anon_mb": base_anon / 2**20,
        "rows_per_block": block_plan(len(frames), (height, width), config)[0],
        "rejected_high": float(result.high_count.sum()),
        "mpf_s": len(frames) * height * width / 1e6 / wall,
    }


def _status_bytes(field: str) -> int:
    """A memory figure of this process from /proc (RssAnon: heap and numpy arrays; VmHWM:
    peak RSS of this program, which ru_maxrss is not: Linux carries it over from the parent
    across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def main(args: argparse.Namespace) -> None:
    shape = (args.height, args.width)
    with tempfile.TemporaryDirectory(prefix="nightowl-bench-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        generate(folder, args.frames, shape)
        print(
            f"{args.frames} lights of {args.width} x {args.height} float32 generated in "
            f"{time.perf_counter() - start:.1f} s; rejection {args.rejection}, budget "
            f"{args.budget_mb} MiB, {args.threads} threads, {args.runs} runs, read from "
            f"{'memory maps' if args.memmap else 'FITS sections'}"
        )
        runs = []
        for _ in range(args.runs):
            command = [
                sys.executable,
                __file__,
                "--worker",
                str(folder),
                "--rejection",
                args.rejection,
                "--budget-mb",
                str(args.budget_mb),
                "--threads",
                str(args.threads),
                *(["--memmap"] if args.memmap else []),
            ]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(output))
    print(f"rows per block: {runs[0]['rows_per_block']}")
    for key, label in [
        ("wall_s", "wall time, s"),
        ("cpu_s", "CPU time, s"),
        ("mpf_s", "throughput, megapixel-frames / s"),
        ("peak_rss_mb", "peak RSS, MB"),
        ("peak_anon_mb", "peak anonymous RSS, MB"),
        ("base_anon_mb", "  of which before integrating (imports), MB"),
    ]:
        print(f"{label:42s} {statistics.median(run[key] for run in runs):10.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1536)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rejection", default=Rejection.WINSORIZED.value)
    parser.add_argument("--budget-mb", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memmap", action="store_true", help="read through memory maps")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        figures = run_once(
            arguments.worker,
            arguments.rejection,
            arguments.budget_mb,
            arguments.threads,
            arguments.memmap,
        )
        print(json.dumps(figures))
    else:
        main(arguments)
