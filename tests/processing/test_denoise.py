"""Noise reduction: the starlet transform's identities, multiscale denoising of a field with a
known galaxy and known stars, and total-variation denoising through a mask."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import ndimage, optimize
from skimage.restoration import denoise_tv_chambolle

from processing.denoise import (
    WHITE_NOISE_LAYER_SIGMA,
    StarletConfig,
    TvConfig,
    inverse_starlet,
    starlet_denoise,
    starlet_transform,
    tv_denoise,
)
from processing.synthetic import render_stars

SHAPE = (256, 256)
SKY = 0.01
NOISE = 0.002
GALAXY_YX = (150.0, 150.0)
GALAXY_SIGMA_PX = 12.0
GALAXY_PEAK = 0.1
GALAXY_APERTURE_PX = 4.5 * GALAXY_SIGMA_PX
STAR_SIGMA_PX = 1.5
STAR_YX = np.array(
    [[40.0, 40.3], [40.6, 120.2], [120.4, 35.7], [215.2, 60.5], [60.8, 215.1], [100.3, 220.6]]
)
# Peaks from 20 to 400 x the noise: from the faintest stars a stack shows well to near
# saturation. A pixel-centred star of sigma 1.5 px keeps 0.93 / (2 pi sigma^2) of its flux in
# its brightest pixel; off-centre ones a little less.
STAR_PEAK_SNR = np.array([20.0, 35.0, 50.0, 100.0, 200.0, 400.0])
STAR_FLUX = STAR_PEAK_SNR * NOISE * 2.0 * math.pi * STAR_SIGMA_PX**2 / 0.93
# An empty corner (no star within 6 sigma, the galaxy is 5e-12 of its peak there).
EMPTY = (slice(196, 256), slice(196, 256))


def field_truth() -> np.ndarray:
    """The noiseless linear scene (y, x): sky, a Gaussian galaxy and pixel-integrated stars."""
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]].astype(np.float64)
    r2 = (y - GALAXY_YX[0]) ** 2 + (x - GALAXY_YX[1]) ** 2
    scene = SKY + GALAXY_PEAK * np.exp(-0.5 * r2 / GALAXY_SIGMA_PX**2)
    return render_stars(SHAPE, STAR_YX, STAR_FLUX, STAR_SIGMA_PX, scene)


def noisy_field(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(truth, noisy) as (y, x, 1) float32 images."""
    truth = field_truth()
    noisy = truth + np.random.default_rng(seed).normal(0.0, NOISE, SHAPE)
    return truth[:, :, None].astype(np.float32), noisy[:, :, None].astype(np.float32)


def galaxy_flux(image: np.ndarray) -> float:
    """Sum over a 4.5 sigma aperture of the image minus the known sky level."""
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    inside = (y - GALAXY_YX[0]) ** 2 + (x - GALAXY_YX[1]) ** 2 <= GALAXY_APERTURE_PX**2
    return float(np.sum(image[:, :, 0][inside].astype(np.float64) - SKY))


def fitted_fwhm(image: np.ndarray, yx: np.ndarray) -> float:
    """FWHM (px) of a circular 2-D Gaussian plus constant fitted to a 15 x 15 stamp.

    A sampled Gaussian fitted to a pixel-integrated one reads sigma^2 + 1/12 px^2, so the
    truth is fitted the same way rather than taken as 2.3548 x STAR_SIGMA_PX.
    """
    cy, cx = round(yx[0]), round(yx[1])
    stamp = image[cy - 7 : cy + 8, cx - 7 : cx + 8, 0].astype(np.float64)
    y, x = np.mgrid[cy - 7 : cy + 8, cx - 7 : cx + 8].astype(np.float64)

    def residual(p: np.ndarray) -> Any:
        amplitude, y0, x0, sigma, background = p
        model = amplitude * np.exp(-0.5 * ((y - y0) ** 2 + (x - x0) ** 2) / sigma**2)
        return (model + background - stamp).ravel()

    start = [stamp.max() - SKY, yx[0], yx[1], 2.0, SKY]
    fit = optimize.least_squares(residual, start)
    return float(2.0 * math.sqrt(2.0 * math.log(2.0)) * abs(fit.x[3]))


def test_starlet_layers_sum_to_the_plane() -> None:
    rng = np.random.default_rng(1)
    plane = rng.normal(0.05, 0.01, (96, 130)).astype(np.float32)
    plane += field_truth()[:96, :130].astype(np.float32)
    coefficients = starlet_transform(plane, 6)
    assert len(coefficients) == 7
    assert all(c.dtype == np.float32 and c.shape == plane.shape for c in coefficients)
    # Each layer is one float32 difference (half an ulp of values < 0.3, ~1.5e-8) and the
    # sum telescopes back: a few ulps in all.
    np.testing.assert_allclose(inverse_starlet(coefficients), plane, rtol=0, atol=1e-7)
    # A plane smaller than the dilated kernels (mirrored many times over) still sums back.
    tiny = rng.normal(size=(7, 5)).astype(np.float32)
    np.testing.assert_allclose(inverse_starlet(starlet_transform(tiny, 8)), tiny, atol=1e-6)


def test_a_flat_plane_has_no_detail_even_at_the_borders() -> None:
    coefficients = starlet_transform(np.full((40, 50), 0.25, dtype=np.float32), 5)
    for layer in coefficients[:-1]:
        # The kernel's taps sum to 1 in float32 up to rounding: 1e-7 relative per pass.
        np.testing.assert_allclose(layer, 0.0, atol=1e-7)
    np.testing.assert_allclose(coefficients[-1], 0.25, rtol=1e-6)


def test_white_noise_layer_table_is_the_norm_of_each_layers_impulse_response() -> None:
    # For unit white noise a linear filter's output has the standard deviation of the L2
    # norm of its impulse response. 5 layers reach 62 px from the impulse: 129 px suffice.
    impulse = np.zeros((129, 129), dtype=np.float32)
    impulse[64, 64] = 1.0
    norms = [
        float(np.sqrt(np.sum(layer.astype(np.float64) ** 2)))
        for layer in starlet_transform(impulse, 5)[:-1]
    ]
    # The table is rounded to four digits.
    np.testing.assert_allclose(norms, WHITE_NOISE_LAYER_SIGMA[:5], rtol=0, atol=6e-5)


def inverted_luminance_mask(image: np.ndarray) -> np.ndarray:
    """1 on the sky, falling to 0 where the lightly smoothed image is 10 x the noise above
    it: the inverted luminance mask that protects stars and the galaxy's core."""
    luminance: np.ndarray = ndimage.gaussian_filter(image[:, :, 0].astype(np.float64), 1.0)
    return np.clip(1.0 - (luminance - SKY) / (10.0 * NOISE), 0.0, 1.0).astype(np.float32)


def assert_denoised_keeps_the_scene(
    truth: np.ndarray, noisy: np.ndarray, out: np.ndarray, stars: np.ndarray
) -> None:
    """Background noise at least halved, galaxy flux within 1 %, FWHM of `stars` within 5 %."""
    assert out.dtype == np.float32
    assert out.shape == noisy.shape
    noise_before = float(np.std(noisy[EMPTY]))
    noise_after = float(np.std(out[EMPTY]))
    assert noise_before / noise_after >= 2.0, (noise_before, noise_after)
    # The aperture sum of the noise itself is ~0.002 x 96 px = 0.19 of ~90, so the input's
    # flux is compared with the result's, both carrying the same large-scale noise.
    flux_in, flux_out = galaxy_flux(noisy), galaxy_flux(out)
    assert abs(flux_out / flux_in - 1.0) < 0.01, (flux_in, flux_out, galaxy_flux(truth))
    for yx in STAR_YX[stars]:
        true_fwhm = fitted_fwhm(truth, yx)
        denoised_fwhm = fitted_fwhm(out, yx)
        assert abs(denoised_fwhm / true_fwhm - 1.0) < 0.05, (yx, true_fwhm, denoised_fwhm)


@pytest.mark.parametrize("noise", ["layer", "white"])
def test_starlet_denoise_lowers_noise_and_keeps_galaxy_flux_and_bright_stars(noise: str) -> None:
    truth, noisy = noisy_field(seed=2)
    kept = noisy.copy()
    out = starlet_denoise(noisy, StarletConfig(noise=noise))  # type: ignore[arg-type]
    np.testing.assert_array_equal(noisy, kept)
    # Unprotected, soft thresholding widens fainter stars (measured: +4 % at 100 x the noise,
    # +6-12 % at 20-50 x); stars from 200 x the noise keep their width within 2 %.
    assert_denoised_keeps_the_scene(truth, noisy, out, STAR_PEAK_SNR >= 200.0)


def test_starlet_denoise_through_an_inverted_luminance_mask_keeps_faint_stars() -> None:
    truth, noisy = noisy_field(seed=3)
    mask = inverted_luminance_mask(noisy)
    kept = mask.copy()
    out = starlet_denoise(noisy, StarletConfig(), mask)
    np.testing.assert_array_equal(mask, kept)
    assert_denoised_keeps_the_scene(truth, noisy, out, STAR_PEAK_SNR > 0.0)


def test_restoring_flux_is_what_keeps_the_galaxy() -> None:
    _, noisy = noisy_field(seed=4)
    plain = starlet_denoise(noisy, StarletConfig(restore_flux=False))
    restored = starlet_denoise(noisy, StarletConfig())
    # Measured: +1.7 % without, +0.1 % with; the bounds sit between with a margin.
    assert galaxy_flux(plain) / galaxy_flux(noisy) - 1.0 > 0.01
    assert abs(galaxy_flux(restored) / galaxy_flux(noisy) - 1.0) < 0.005


def test_starlet_denoise_amount_blends_with_the_original() -> None:
    _, noisy = noisy_field(seed=3)
    full = starlet_denoise(noisy, StarletConfig())
    np.testing.assert_array_equal(starlet_denoise(noisy, StarletConfig(amount=0.0)), noisy)
    # One float32 multiply-add per pixel: ~1e-7 relative.
    np.testing.assert_allclose(
        starlet_denoise(noisy, StarletConfig(amount=0.25)),
        0.25 * full + 0.75 * noisy,
        rtol=1e-6,
        atol=1e-9,
    )


def test_starlet_denoise_treats_each_channel_relative_to_its_own_noise() -> None:
    _, noisy = noisy_field(seed=4)
    rgb = np.concatenate([noisy, 2.0 * noisy, 0.5 * noisy], axis=2)
    out = starlet_denoise(rgb, StarletConfig(), np.full(SHAPE, 0.75, dtype=np.float32))
    # The thresholds follow each channel's noise, so a channel scaled by 2 comes out scaled by
    # 2. Scaling by a power of two is exact in floating point; the tolerance only allows for
    # a different summation order between channels.
    np.testing.assert_allclose(out[:, :, 1], 2.0 * out[:, :, 0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(out[:, :, 2], 0.5 * out[:, :, 0], rtol=1e-6, atol=1e-9)


def stretched_scene(seed: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(truth, noisy): a stretched background at 0.25 with a bright disc, noise 0.04."""
    y, x = np.mgrid[:128, :128]
    disc = ((y - 64) ** 2 + (x - 40) ** 2 <= 20**2).astype(np.float64)
    truth = np.repeat((0.25 + 0.5 * disc)[:, :, None], channels, axis=2)
    noisy = truth + np.random.default_rng(seed).normal(0.0, 0.04, truth.shape)
    return truth.astype(np.float32), noisy.astype(np.float32)


@pytest.mark.parametrize("channels", [1, 3])
def test_tv_denoise_acts_where_the_mask_is_one_and_nowhere_it_is_zero(channels: int) -> None:
    truth, noisy = stretched_scene(seed=5, channels=channels)
    mask = np.zeros((128, 128), dtype=np.float32)
    mask[:, 64:] = 1.0
    kept_image, kept_mask = noisy.copy(), mask.copy()
    out = tv_denoise(noisy, TvConfig(weight=0.05), mask)
    np.testing.assert_array_equal(noisy, kept_image)
    np.testing.assert_array_equal(mask, kept_mask)
    assert out.dtype == np.float32
    assert out.shape == noisy.shape

    np.testing.assert_array_equal(out[:, :64], noisy[:, :64])
    # The background right of the disc, away from the mask's edge.
    region = (slice(8, 120), slice(72, 120))
    before = float(np.std(noisy[region] - truth[region]))
    after = float(np.std(out[region] - truth[region]))
    assert before / after >= 2.0, (before, after)


@pytest.mark.parametrize(
    ("shape", "config"),
    [
        ((128, 128, 1), TvConfig(weight=0.05)),
        ((128, 128, 3), TvConfig(weight=0.05)),
        # Stopped by the cap, not by eps; odd sizes; a single row.
        ((37, 53, 2), TvConfig(weight=0.2, max_iterations=3)),
        ((1, 9, 1), TvConfig(weight=0.2)),
    ],
)
def test_tv_denoise_is_scikit_images_chambolle(
    shape: tuple[int, int, int], config: TvConfig
) -> None:
    y, x = np.mgrid[: shape[0], : shape[1]]
    # A bright disc across the middle rows, where the plane is split between threads.
    disc = (y - shape[0] / 2) ** 2 + (x - shape[1] / 3) ** 2 <= (shape[0] / 6) ** 2
    truth = np.repeat((0.25 + 0.5 * disc)[:, :, None], shape[2], axis=2)
    noisy = (truth + np.random.default_rng(7).normal(0.0, 0.04, shape)).astype(np.float32)
    reference = denoise_tv_chambolle(  # type: ignore[no-untyped-call]
        noisy,
        weight=config.weight,
        eps=config.eps,
        max_num_iter=config.max_iterations,
        channel_axis=-1,
    )
    out = tv_denoise(noisy, config)
    # The same float32 operations in the same order give the same pixels (measured: equal to
    # the bit, also on a 24 MP frame); only the cost deciding when to stop is summed in
    # another order. 1e-5 leaves room for another compiler's rounding and is far below what
    # the denoising changes (the noise is 0.04).
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-5)
    assert float(np.max(np.abs(out - noisy))) > 0.01


def test_tv_denoise_blends_a_partial_mask_linearly() -> None:
    _, noisy = stretched_scene(seed=6, channels=3)
    config = TvConfig(weight=0.05)
    full = tv_denoise(noisy, config)
    half = tv_denoise(noisy, config, np.full((128, 128), 0.5, dtype=np.float32))
    quarter = tv_denoise(
        noisy, TvConfig(weight=0.05, amount=0.5), np.full((128, 128), 0.5, dtype=np.float32)
    )
    # One float32 multiply-add per pixel: ~1e-7 relative.
    np.testing.assert_allclose(half, 0.5 * full + 0.5 * noisy, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(quarter, 0.25 * full + 0.75 * noisy, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(tv_denoise(noisy, TvConfig(weight=0.05, amount=0.0)), noisy)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"layers": 0, "k": ()}, "layers"),
        ({"layers": 9, "k": (1.0,) * 9}, "layers"),
        ({"layers": 3}, "k"),
        ({"k": (3.0, 2.0, -1.0, 0.5)}, "k"),
        ({"k": (3.0, 2.0, float("nan"), 0.5)}, "k"),
        ({"amount": 1.5}, "amount"),
        ({"amount": -0.1}, "amount"),
        ({"noise": "median"}, "noise"),
    ],
)
def test_starlet_config_names_the_bad_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        StarletConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"weight": 0.0}, "weight"),
        ({"weight": float("inf")}, "weight"),
        ({"weight": 0.1, "amount": 2.0}, "amount"),
        ({"weight": 0.1, "max_iterations": 0}, "max_iterations"),
        ({"weight": 0.1, "eps": 0.0}, "eps"),
    ],
)
def test_tv_config_names_the_bad_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TvConfig(**kwargs)


def test_bad_images_and_masks_are_refused() -> None:
    plane = np.zeros((16, 16), dtype=np.float32)
    with pytest.raises(ValueError, match="image"):
        starlet_denoise(plane)
    with pytest.raises(ValueError, match="NaN"):
        starlet_denoise(np.full((16, 16, 1), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="plane"):
        starlet_transform(plane[:, :, None], 2)
    image = plane[:, :, None]
    with pytest.raises(ValueError, match="mask"):
        tv_denoise(image, TvConfig(weight=0.1), np.zeros((16, 15), dtype=np.float32))
    with pytest.raises(ValueError, match="mask"):
        tv_denoise(image, TvConfig(weight=0.1), np.full((16, 16), 1.5, dtype=np.float32))
