"""Integration and normalisation: rejection at small N, defects removed, noise, levels,
bounded memory.

Frames are seeded synthetic data with known truth: Gaussian noise around known levels, or a
rendered scene (stars, nebula, sky) with satellite trails and cosmic rays whose pixels are
known (`processing.synthetic`). Noise figures are measured on 16,384+ pixels, so a measured
standard deviation carries ~0.6 % of sampling error.
"""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from processing import synthetic
from processing.integrate import (
    Combine,
    IntegrationConfig,
    Rejection,
    block_plan,
    combine_stack,
    integrate,
)
from processing.normalize import Normalization, estimate_normalization
from processing.rejection import rejection_config

F32 = npt.NDArray[np.float32]
SIGMA = 10.0
LEVEL = 1000.0


def config(algorithm: Rejection = Rejection.WINSORIZED, **kwargs: object) -> IntegrationConfig:
    return IntegrationConfig(rejection=rejection_config(algorithm), **kwargs)  # type: ignore[arg-type]


def noise_frames(n: int, shape: tuple[int, int], seed: int) -> list[F32]:
    rng = np.random.default_rng(seed)
    return [rng.normal(LEVEL, SIGMA, shape).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("algorithm", [Rejection.WINSORIZED, Rejection.ESD, Rejection.PERCENTILE])
def test_a_single_outlier_is_rejected_from_five_frames(algorithm: Rejection) -> None:
    rng = np.random.default_rng(1)
    stack = rng.normal(LEVEL, SIGMA, (5, 64, 64)).astype(np.float32)
    culprit = rng.integers(0, 5, (64, 64))
    # 20 sigma: a cosmic ray or trail. A plain 3-sigma clip cannot see it: among 5 samples
    # no z-score exceeds (5 - 1) / sqrt(5) = 1.79.
    np.put_along_axis(stack, culprit[None], LEVEL + 20 * SIGMA, axis=0)
    result = combine_stack(stack, config(algorithm))
    assert result.high_count.min() >= 1, "some pixel kept its outlier"
    # With the outlier kept a pixel would read >= LEVEL + 40 - noise; the mean of 4 clean
    # samples scatters by SIGMA / 2 = 5, so LEVEL + 20 is 4 of those sigmas.
    assert float(result.image.max()) < LEVEL + 20.0
    assert result.frame_high.sum() >= 64 * 64


def test_sigma_clipping_cannot_see_one_outlier_in_five() -> None:
    """Why winsorized clipping is the default: the textbook clip keeps the outlier."""
    stack = np.full((5, 8, 8), LEVEL, dtype=np.float32)
    stack[:, :, :] += np.array([-1, 0, 1, 0, 0], dtype=np.float32)[:, None, None]
    stack[4] += 1000.0
    result = combine_stack(stack, config(Rejection.SIGMA))
    assert result.high_count.max() == 0


def test_winsorized_integration_of_eight_frames_removes_trail_and_cosmic_rays() -> None:
    shape = (160, 200)
    rng = np.random.default_rng(2)
    stars = synthetic.random_star_field(rng, shape, 40, (1e4, 2e5), margin_px=5)
    nebula = synthetic.Nebula(((80.0, 100.0),), (30.0,), (200.0,))
    scene = synthetic.sky_gradient(shape, 800.0, (0.05, 0.1))
    scene += synthetic.render_nebula(shape, nebula, np.eye(3))
    synthetic.render_stars(shape, stars.yx, stars.flux_e, 1.8, scene)
    frames, defect_masks = [], []
    for index in range(8):
        hits, mask = synthetic.cosmic_rays(shape, rng, 30, (2e3, 2e4))
        if index == 3:
            trail, trail_mask = synthetic.satellite_trail(shape, rng, 5000.0)
            hits += trail
            mask |= trail_mask
        # Gain 1 e-/ADU: Poisson noise of the scene plus 5 e- of read noise.
        noisy = rng.poisson(scene + hits) + rng.normal(0.0, 5.0, shape)
        frames.append(noisy.astype(np.float32))
        defect_masks.append(mask)
    defects = np.any(defect_masks, axis=0)
    # The noise of a clean 8-frame mean, per pixel.
    expected_sigma = np.sqrt(scene + 25.0) / math.sqrt(8.0)

    result = integrate(frames, config())
    z = (result.image - scene) / expected_sigma
    # Completely removed: no defect pixel stands out of the stack's own noise. A pixel left
    # with a cosmic ray (>= 2000 e- / 8 frames) would sit > 20 sigma high.
    assert float(np.abs(z[defects]).max()) < 5.0
    assert float(np.abs(z).max()) < 6.0
    trail_core = defect_masks[3] & (frames[3] - scene > 20 * np.sqrt(scene))
    assert trail_core.sum() > 100
    assert result.high_count[trail_core].min() >= 1

    plain = integrate(frames, config(Rejection.NONE))
    plain_z = (plain.image - scene) / expected_sigma
    assert float(plain_z[defects].max()) > 20.0, "the test data must contain visible defects"


@pytest.mark.parametrize("algorithm", [Rejection.NONE, Rejection.WINSORIZED])
def test_integrated_noise_falls_as_one_over_sqrt_n(algorithm: Rejection) -> None:
    frames = noise_frames(32, (128, 128), seed=3)
    for n in (8, 16, 32):
        result = integrate(frames[:n], config(algorithm, normalization=Normalization.NONE))
        measured = float(np.std(result.image))
        # Within 5 % of sigma / sqrt(N): winsorized clipping loses ~3 % of efficiency at 8
        # frames (it rejects ~1 % of clean samples), none at 32; sampling error is 0.6 %.
        np.testing.assert_allclose(measured, SIGMA / math.sqrt(n), rtol=0.05)


def test_row_blocks_and_memory_maps_give_the_in_memory_result(tmp_path: Path) -> None:
    shape = (37, 53)
    frames = noise_frames(9, shape, seed=4)
    frames[2][5:9, 10:20] += 500.0
    frames[6][:, :7] = np.nan
    maps = []
    for i, frame in enumerate(frames):
        mapped = np.memmap(tmp_path / f"f{i}.raw", dtype=np.float32, mode="w+", shape=shape)
        mapped[:] = frame
        mapped.flush()
        maps.append(np.memmap(tmp_path / f"f{i}.raw", dtype=np.float32, mode="r", shape=shape))
    whole = integrate(frames, config(threads=1))
    # A budget of a few rows per block for two threads, each block worked through in chunks
    # of a fraction of a row; read from memory maps.
    small = config(memory_budget_bytes=2 * 9 * 53 * 52, threads=2)
    rows, chunk = block_plan(9, (37, 53), small)
    assert rows < 10
    assert chunk < 53
    blocked = integrate(maps, small)
    np.testing.assert_array_equal(blocked.image, whole.image)
    np.testing.assert_array_equal(blocked.low_count, whole.low_count)
    np.testing.assert_array_equal(blocked.high_count, whole.high_count)
    np.testing.assert_array_equal(blocked.frame_high, whole.frame_high)
    assert whole.frame_high[2] >= 40


@pytest.mark.parametrize(
    ("n_frames", "width", "algorithm", "threads"),
    [
        (20, 512, Rejection.WINSORIZED, 1),
        (6, 1024, Rejection.WINSORIZED, 2),
        (20, 512, Rejection.LINEAR_FIT, 1),
        (20, 512, Rejection.ESD, 2),
    ],
)
def test_peak_memory_stays_within_the_budget(
    n_frames: int, width: int, algorithm: Rejection, threads: int
) -> None:
    shape = (192, width)
    frames = noise_frames(n_frames, shape, seed=5)
    frames[0][::7, ::3] += 300.0
    budget = 8 * 1024 * 1024
    outputs = shape[0] * shape[1] * (4 + 2 + 2)
    tracemalloc.start()
    try:
        integrate(frames, config(algorithm, memory_budget_bytes=budget, threads=threads))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= budget + outputs, f"peak {peak / 1e6:.1f} MB"


def test_inputs_are_never_modified() -> None:
    frames = noise_frames(6, (20, 30), seed=6)
    frames[1][3, 4] = 1e5
    copies = [frame.copy() for frame in frames]
    subtract = np.full((20, 30), 100.0, dtype=np.float32)
    for algorithm in Rejection:
        integrate(frames, config(algorithm), subtract=subtract)
        combine_stack(np.stack(frames), config(algorithm))
    for frame, copy in zip(frames, copies, strict=True):
        np.testing.assert_array_equal(frame, copy)
    assert float(subtract.max()) == 100.0


def test_normalisation_matches_offsets_and_scales_to_the_reference() -> None:
    rng = np.random.default_rng(7)
    base = rng.normal(LEVEL, SIGMA, (5, 96, 96)).astype(np.float32)
    gains = np.array([1.0, 0.8, 1.3, 1.1, 0.9], dtype=np.float32)
    offsets = np.array([0.0, 150.0, -80.0, 40.0, 300.0], dtype=np.float32)
    frames = [base[i] * gains[i] + offsets[i] for i in range(5)]
    norm = estimate_normalization(frames, Normalization.ADDITIVE_SCALING, 0)
    for i, frame in enumerate(frames):
        matched = frame * norm.gain[i] + norm.offset[i]
        # Median and MAD of 9,216 pixels each agree to ~1.5 %; the matched frame's level
        # and spread land on the reference's within that.
        np.testing.assert_allclose(np.median(matched), np.median(frames[0]), atol=0.3 * SIGMA)
        np.testing.assert_allclose(np.std(matched), np.std(frames[0]), rtol=0.05)
    result = integrate(frames, config())
    np.testing.assert_allclose(np.mean(result.image), LEVEL, atol=1.0)


def test_level_matching_ignores_trails_and_uncovered_margins() -> None:
    """Frames of one sky: a trail in one and NaN margins over a strong gradient in others
    must not move their levels (each frame's plain median moves them by 1-7 sigma here)."""
    rng = np.random.default_rng(12)
    shape = (128, 160)
    sky = synthetic.sky_gradient(shape, LEVEL, (0.4, 0.8))
    frames = [(sky + rng.normal(0.0, SIGMA, shape)).astype(np.float32) for _ in range(6)]
    trail, _ = synthetic.satellite_trail(shape, rng, 50 * SIGMA, width_px=1.5)
    frames[2] += trail.astype(np.float32)
    frames[4][:, :30] = np.nan
    frames[5][:25] = np.nan
    norm = estimate_normalization(frames, Normalization.ADDITIVE, reference_index=0)
    # Level differences are clipped medians of ~15,000 pixel differences (~0.01 sigma of
    # noise); the trail's wings below the 3-sigma clip add up to ~0.03 sigma (measured).
    np.testing.assert_allclose(norm.offset, 0.0, atol=0.05 * SIGMA)


def test_weights_and_median_combine() -> None:
    stack = np.stack(noise_frames(5, (16, 16), seed=8))
    weights = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    weighted = combine_stack(stack, config(Rejection.NONE), weights=weights)
    np.testing.assert_allclose(
        weighted.image, np.average(stack, axis=0, weights=weights), rtol=1e-6
    )
    median = combine_stack(stack, config(Rejection.NONE, combine=Combine.MEDIAN))
    np.testing.assert_allclose(median.image, np.median(stack, axis=0), rtol=1e-6)


def test_missing_samples_are_left_out() -> None:
    stack = np.stack(noise_frames(4, (10, 10), seed=9))
    stack[0, :, :5] = np.nan
    stack[:, 0, 0] = np.nan
    result = combine_stack(stack, config(Rejection.NONE))
    np.testing.assert_allclose(result.image[1:, :5], np.mean(stack[1:, 1:, :5], axis=0), rtol=1e-6)
    assert np.isnan(result.image[0, 0])
    assert np.isfinite(result.image[1:, 1:]).all()


def reference_winsorized(samples: npt.NDArray[np.float64]) -> tuple[int, int]:
    """Winsorized sigma clipping of one pixel, written out plainly: (low, high) rejected."""
    kept = np.sort(samples)
    low = high = 0
    q1, q3 = np.quantile(kept, [0.25, 0.75])
    sigma = (q3 - q1) / 1.349
    for _ in range(10):
        if len(kept) <= 2:
            break
        center = float(np.median(kept))
        for _ in range(20):
            clipped = np.clip(kept, center - 1.5 * sigma, center + 1.5 * sigma)
            updated = 1.134 * float(np.std(clipped, ddof=1))
            done = abs(updated - sigma) <= 1e-3 * sigma
            sigma = updated
            if done:
                break
        inside = (kept >= np.float32(center - 4 * sigma)) & (kept <= np.float32(center + 3 * sigma))
        if inside.all() or inside.sum() < 2:
            break
        low += int(np.sum(kept < np.float32(center - 4 * sigma)))
        high += int(np.sum(kept > np.float32(center + 3 * sigma)))
        kept = kept[inside]
    return low, high


def reference_esd(samples: npt.NDArray[np.float64], alpha: float = 0.05) -> tuple[int, int]:
    """Rosner's generalized ESD test of one pixel (NIST handbook 1.3.5.17.3)."""
    from scipy import stats

    kept = list(np.sort(samples))
    n = len(kept)
    r = min(int(0.3 * n), n - 3)
    removed: list[str] = []
    outliers = 0
    for i in range(1, r + 1):
        values = np.array(kept)
        mean, std = values.mean(), values.std(ddof=1)
        low_dev, high_dev = mean - values[0], values[-1] - mean
        statistic = max(low_dev, high_dev) / std
        removed.append("high" if high_dev >= low_dev else "low")
        kept.pop(-1 if high_dev >= low_dev else 0)
        p = 1 - alpha / (2 * (n - i + 1))
        t = stats.t.ppf(p, n - i - 1)
        critical = (n - i) * t / math.sqrt((n - i - 1 + t * t) * (n - i + 1))
        if statistic > critical:
            outliers = i
    chosen = removed[:outliers]
    return chosen.count("low"), chosen.count("high")


@pytest.mark.parametrize(
    ("algorithm", "reference"),
    [(Rejection.WINSORIZED, reference_winsorized), (Rejection.ESD, reference_esd)],
)
def test_vectorised_rejection_matches_a_per_pixel_reference(
    algorithm: Rejection, reference: object
) -> None:
    rng = np.random.default_rng(10)
    n, pixels = 9, 400
    stack = rng.normal(0.0, 1.0, (n, pixels)).astype(np.float32)
    # Plant 0-3 outliers of either sign in every pixel.
    for p in range(pixels):
        for frame in rng.choice(n, size=int(rng.integers(0, 4)), replace=False):
            stack[frame, p] += rng.choice([-1.0, 1.0]) * rng.uniform(4.0, 30.0)
    result = combine_stack(stack, config(algorithm))
    expected = np.array([reference(stack[:, p].astype(np.float64)) for p in range(pixels)])
    mismatched = (result.low_count != expected[:, 0]) | (result.high_count != expected[:, 1])
    # float32 thresholds against a float64 reference may flip a sample sitting on a
    # threshold; no more than one pixel in a hundred.
    assert mismatched.mean() <= 0.01, np.flatnonzero(mismatched)


@pytest.mark.parametrize("algorithm", list(Rejection))
def test_every_algorithm_keeps_clean_data_and_its_level(algorithm: Rejection) -> None:
    stack = np.stack(noise_frames(20, (64, 64), seed=11))
    result = combine_stack(stack, config(algorithm))
    rejected = (result.low_count.sum() + result.high_count.sum()) / stack.size
    # Clean Gaussian samples: at most ~1 % rejected, level unbiased to 0.1 sigma.
    assert rejected < 0.01
    np.testing.assert_allclose(float(np.mean(result.image)), LEVEL, atol=0.1 * SIGMA)
