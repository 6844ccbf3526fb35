"""Frame analysis: `measure_frame` on a 2048 x 1536 uint16 light with ~80 stars.

Prints medians of N runs for the whole call and for its stages, each timed on its own with sep
directly (float32 copy + background model + subtraction; then source extraction), so that
the photometry share (apertures, HFR, windowed centroids) is the remainder.

    .venv/bin/python bench/frame_analysis.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import sep

from processing.stars import detect_stars, measure_frame

SHAPE = (1536, 2048)
STARS = 80
SIGMA_PX = 2.0
SKY_E = 1000.0
PEDESTAL_ADU = 300.0
SATURATION_ADU = 65535.0


def synthetic_light(seed: int = 0) -> npt.NDArray[np.uint16]:
    """Point-sampled Gaussian stars (1e4..1e6 e-, log-uniform) on a Poisson sky, gain 1."""
    rng = np.random.default_rng(seed)
    height, width = SHAPE
    expected = np.full(SHAPE, SKY_E)
    half = int(8 * SIGMA_PX)
    offsets = np.arange(-half, half + 1)
    for _ in range(STARS):
        y, x = rng.uniform(half, height - half - 1), rng.uniform(half, width - half - 1)
        flux_e = np.exp(rng.uniform(np.log(1e4), np.log(1e6)))
        rows, cols = round(y) + offsets, round(x) + offsets
        profile_y = np.exp(-0.5 * ((rows - y) / SIGMA_PX) ** 2)
        profile_x = np.exp(-0.5 * ((cols - x) / SIGMA_PX) ** 2)
        stamp = np.outer(profile_y, profile_x)
        expected[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] += flux_e * stamp / stamp.sum()
    adu = rng.poisson(expected) + rng.normal(PEDESTAL_ADU, 5.0, SHAPE)
    return np.clip(np.round(adu), 0, SATURATION_ADU).astype(np.uint16)


def interleaved_medians_ms(stages: list[Callable[[], object]], runs: int) -> list[float]:
    """Median wall time of each stage over `runs` rounds, ms, after one warm-up round.

    One call of every stage per round, so that the machine's drift hits all stages alike.
    """
    samples: list[list[float]] = [[] for _ in stages]
    for round_number in range(runs + 1):
        for stage, stage_samples in zip(stages, samples, strict=True):
            start = time.perf_counter()
            stage()
            if round_number:
                stage_samples.append(time.perf_counter() - start)
    return [statistics.median(stage_samples) * 1000.0 for stage_samples in samples]


def main(runs: int) -> None:
    frame = synthetic_light()

    def background() -> npt.NDArray[np.float32]:
        data = np.array(frame, dtype=np.float32, order="C", copy=True)
        model = sep.Background(data)
        subtracted: npt.NDArray[np.float32] = data - model.back(dtype=np.float32)
        return subtracted

    subtracted = background()
    rms = float(sep.Background(np.array(frame, dtype=np.float32)).globalrms)

    def extraction() -> object:
        return sep.extract(subtracted, 5.0, err=rms, segmentation_map=True)

    quality = measure_frame(frame, saturation_adu=SATURATION_ADU)
    names = [
        "background: float32 copy, sep.Background, subtract",
        "extraction: sep.extract with segmentation map",
        "detect_stars (all of the above + photometry)",
        "measure_frame (detect_stars + medians, saturation)",
    ]
    medians = interleaved_medians_ms(
        [
            background,
            extraction,
            lambda: detect_stars(frame),
            lambda: measure_frame(frame, saturation_adu=SATURATION_ADU),
        ],
        runs,
    )
    print(f"frame {SHAPE[1]} x {SHAPE[0]} uint16, {STARS} stars rendered, {runs} runs")
    print(
        f"found {quality.star_count} stars, HFR {quality.hfr_px:.2f} px, "
        f"sky {quality.background_adu:.0f} ADU, noise {quality.noise_adu:.1f} ADU"
    )
    print(f"{'stage':52s} {'median ms':>10s}")
    for name, value in zip(names, medians, strict=True):
        print(f"{name:52s} {value:10.1f}")
    photometry = medians[2] - medians[0] - medians[1]
    print(f"{'photometry (remainder of detect_stars, approximate)':52s} {photometry:10.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    main(parser.parse_args().runs)
