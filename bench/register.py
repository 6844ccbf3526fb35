"""Registration accuracy and resampling kernels on seeded synthetic star fields.

First, star-pattern registration of frames with random dithers (shift up to 20 px, rotation up
to 2 degrees, and a 180-degree meridian flip): the largest distance over the frame between the
fitted and the true transform, and the time of `register` (star lists given). Then each
resampling kernel: rms error against the frame rendered directly on the reference grid (as a
fraction of the brightest star's peak), the noise kept from white noise (1 = no smoothing; a
smoothing kernel blurs), the median FWHM after / before, and the time to warp 2048 x 1536
(median of 5 calls after a first one, which loads the kernels), all with `warp`'s default
clamp against ringing.

    .venv/bin/python bench/register.py [--frames 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from processing import synthetic
from processing.register import Interpolation, Transform, register, star_positions, warp
from processing.stars import detect_stars

SHAPE = (768, 1024)


def render(field: synthetic.StarField, matrix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    scene = synthetic.sky_gradient(SHAPE, 600.0, (0.05, -0.1))
    synthetic.render_stars(
        SHAPE, synthetic.apply_transform(matrix, field.yx), field.flux_e, 1.8, scene
    )
    return (rng.poisson(scene) + rng.normal(0.0, 5.0, SHAPE)).astype(np.float32)


def registration(frames: int) -> None:
    rng = np.random.default_rng(0)
    field = synthetic.random_star_field(rng, SHAPE, 250, (1e4, 5e5), margin_px=4)
    reference = star_positions(detect_stars(render(field, np.eye(3), rng)))
    errors, times, matched = [], [], []
    for index in range(frames):
        rotation = 180.0 if index == 0 else float(rng.uniform(-2.0, 2.0))
        shift = (float(rng.uniform(-20, 20)), float(rng.uniform(-20, 20)))
        truth = synthetic.dither(SHAPE, shift, rotation)
        stars = star_positions(detect_stars(render(field, truth, rng)))
        start = time.perf_counter()
        result = register(stars, reference)
        times.append(time.perf_counter() - start)
        errors.append(result.transform.max_distance_px(Transform(truth), SHAPE))
        matched.append(result.matched)
    print(f"registration of {frames} dithered {SHAPE[1]} x {SHAPE[0]} frames, 250 stars")
    print(
        f"  error anywhere on the frame: median {statistics.median(errors):.4f} px, "
        f"max {max(errors):.4f} px"
    )
    print(f"  stars in the final fit: median {statistics.median(matched):.0f}")
    print(f"  register(): median {statistics.median(times) * 1000:.1f} ms")


def resampling() -> None:
    rng = np.random.default_rng(1)
    field = synthetic.random_star_field(rng, SHAPE, 250, (2e4, 5e5), margin_px=30)
    truth = synthetic.dither(SHAPE, (7.43, -3.61), 0.8)
    noise = rng.normal(0.0, 1.0, SHAPE).astype(np.float32)
    big = rng.normal(1000.0, 10.0, (1536, 2048)).astype(np.float32)
    big_transform = Transform(synthetic.dither((1536, 2048), (7.43, -3.61), 0.8))
    print("resampling (shift 7.43, -3.61 px, rotation 0.8 deg)")
    print(
        f"  {'kernel':10s} {'sigma px':>8s} {'rms err/peak':>12s} {'noise kept':>10s} "
        f"{'FWHM ratio':>10s} {'ms 2048x1536':>12s}"
    )
    for interpolation in Interpolation:
        warp(big, big_transform, interpolation=interpolation)  # kernels loaded, tables built
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            warp(big, big_transform, interpolation=interpolation)
            runs.append(time.perf_counter() - start)
        elapsed_ms = statistics.median(runs) * 1000
        kept = float(np.nanstd(warp(noise, Transform(truth), interpolation=interpolation).image))
        for sigma in (0.9, 1.8):
            reference = synthetic.render_stars(SHAPE, field.yx, field.flux_e, sigma)
            moved = synthetic.render_stars(
                SHAPE, synthetic.apply_transform(truth, field.yx), field.flux_e, sigma
            )
            warped = warp(moved, Transform(truth), interpolation=interpolation)
            valid = warped.valid
            error = np.sqrt(np.mean((warped.image[valid] - reference[valid]) ** 2))
            sky = rng.normal(100.0, 1.0, SHAPE)
            after = detect_stars((np.where(valid, warped.image, 0.0) + sky).astype(np.float32))
            before = detect_stars((reference + sky).astype(np.float32))
            ratio = float(np.median(after.fwhm_px) / np.median(before.fwhm_px))
            print(
                f"  {interpolation.value:10s} {sigma:8.1f} {error / reference.max():12.5f} "
                f"{kept:10.3f} {ratio:10.4f} {elapsed_ms:12.0f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    registration(parser.parse_args().frames)
    resampling()
