"""Masks: range selection values at known pixels, luminance masks on linear and stretched
data, star discs over known stars and none on the empty sky, inversion and validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from processing.masks import (
    LuminanceMaskConfig,
    RangeMaskConfig,
    StarMaskConfig,
    as_mask,
    invert_mask,
    luminance_mask,
    make_mask,
    range_mask,
    star_mask,
)

SHAPE = (256, 256)
SKY = 0.02
NOISE = 0.001
STAR_SIGMA_PX = 1.5
# Known stars (y, x, peak), several near the border, none closer than 30 px to another.
STARS = (
    (40.3, 50.7, 0.5),
    (128.0, 128.0, 0.9),
    (200.6, 60.2, 0.05),
    (90.1, 210.8, 0.2),
    (3.4, 140.5, 0.3),
    (230.2, 251.6, 0.4),
    (160.7, 180.3, 0.1),
)


def read_only(image: np.ndarray) -> np.ndarray:
    """Inputs are shared by the tests, so any write into one raises instead of leaking."""
    image.flags.writeable = False
    return image


@pytest.fixture(scope="module")
def star_field() -> np.ndarray:
    """A linear RGB frame: Gaussian stars (sigma 1.5 px, white) on a noisy sky."""
    rng = np.random.default_rng(21)
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    lum = np.full(SHAPE, SKY)
    for cy, cx, peak in STARS:
        lum += peak * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * STAR_SIGMA_PX**2))
    image = lum[..., None] + rng.normal(0.0, NOISE, size=(*SHAPE, 3))
    return read_only(image.astype(np.float32))


def grey(values: list[float]) -> np.ndarray:
    """A one-row RGB image whose luminance (channel mean) is `values`, channels unequal."""
    v = np.array(values, dtype=np.float32)
    return read_only(np.stack([v + 0.01, v, v - 0.01], axis=-1)[None])


# --- range ------------------------------------------------------------------------------------


def test_range_mask_values_at_known_pixels() -> None:
    values = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0]
    mask = range_mask(grey(values), RangeMaskConfig(low=0.3, high=0.7, fuzziness=0.2))
    # 1 inside [0.3, 0.7]; 1 - distance / 0.2 outside: 0.2 -> 0.5, 0.8 -> 0.5, 0.1 -> 0.
    expected = [0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0]
    # The channel mean and the ramp in float32: a few ulps of 1.
    np.testing.assert_allclose(mask[0], expected, rtol=0, atol=1e-6)
    assert mask.dtype == np.float32
    assert mask.shape == (1, len(values))


def test_range_mask_with_hard_edges() -> None:
    values = [0.29, 0.3, 0.5, 0.7, 0.71]
    mask = range_mask(grey(values), RangeMaskConfig(low=0.3, high=0.7))
    np.testing.assert_array_equal(mask[0], [0.0, 1.0, 1.0, 1.0, 0.0])


def test_range_mask_smoothness_blurs_a_step() -> None:
    """A hard edge blurred by sigma 3 px: the two columns beside the step read the Gaussian
    CDF at -/+ 0.5 px / 3 px = 0.434 and 0.566."""
    image = np.zeros((32, 64, 1), dtype=np.float32)
    image[:, 32:] = 0.5
    mask = range_mask(read_only(image), RangeMaskConfig(low=0.4, high=0.6, blur_px=3.0))
    expected = 0.5 * (1 + math.erf(0.5 / 3.0 / math.sqrt(2)))
    # OpenCV samples the Gaussian at whole pixels (~3e-3 from the integrated CDF).
    np.testing.assert_allclose(mask[16, 31:33], [1 - expected, expected], rtol=0, atol=5e-3)
    np.testing.assert_array_equal(mask[:, :16], 0.0)  # beyond 5 sigma: nothing leaks
    np.testing.assert_allclose(mask[:, 48:], 1.0, rtol=0, atol=1e-6)


# --- luminance --------------------------------------------------------------------------------


def test_luminance_mask_of_a_stretched_image_is_its_luminance() -> None:
    rng = np.random.default_rng(3)
    image = read_only(rng.uniform(0, 1, size=(16, 16, 3)).astype(np.float32))
    config = LuminanceMaskConfig(auto_stretch=False, blur_px=0.0)
    np.testing.assert_allclose(luminance_mask(image, config), image.mean(axis=2), rtol=1e-6)


def test_luminance_mask_stretches_a_linear_image(star_field: np.ndarray) -> None:
    mask = luminance_mask(star_field, LuminanceMaskConfig(blur_px=0.0))
    # The auto-STF puts the sky median on 0.25 (the stars move the median by < 1e-3).
    np.testing.assert_allclose(np.median(mask), 0.25, rtol=0, atol=1e-3)
    assert mask[128, 128] > 0.99  # the brightest star's core
    blurred = luminance_mask(star_field)
    assert blurred.std() < mask.std()  # sigma 2 px smooths the sky noise


# --- stars ------------------------------------------------------------------------------------


def test_star_mask_covers_the_stars_and_not_the_sky(star_field: np.ndarray) -> None:
    config = StarMaskConfig(radius_hfr=2.5, grow_px=1.0, blur_px=1.0)
    mask = star_mask(star_field, config)
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    distance = np.min([np.hypot(y - cy, x - cx) for cy, cx, _ in STARS], axis=0)
    # A Gaussian star's HFR is 1.177 sigma = 1.77 px: disc radius 2.5 x 1.77 + 1 = 5.4 px.
    # Within 3 px of a centre the disc is solid; a 1 px blur only softens its rim.
    assert mask[distance <= 3.0].min() > 0.95
    # OpenCV's blur kernel reaches 4 sigma along each axis, 5.7 sigma in the corners of its
    # square support: beyond radius + rim + 5.7 (5.4 + 0.5 + 5.7 ~ 12 px) the sky is untouched.
    np.testing.assert_array_equal(mask[distance > 12.0], 0.0)
    assert mask.dtype == np.float32
    assert mask.shape == SHAPE


def test_star_disc_radius_follows_the_hfr(star_field: np.ndarray) -> None:
    small = star_mask(star_field, StarMaskConfig(radius_hfr=1.0, grow_px=0.0, blur_px=0.0))
    large = star_mask(star_field, StarMaskConfig(radius_hfr=4.0, grow_px=2.0, blur_px=0.0))
    # Sharp discs: radius ~1.8 px covers ~10 pixels per star, radius ~9 px covers ~250.
    per_star_small = np.count_nonzero(small[100:156, 100:156] >= 0.5)
    per_star_large = np.count_nonzero(large[100:156, 100:156] >= 0.5)
    assert 5 <= per_star_small <= 16
    assert 200 <= per_star_large <= 300


def test_star_mask_of_an_empty_sky_is_empty() -> None:
    rng = np.random.default_rng(8)
    sky = read_only(rng.normal(SKY, NOISE, size=(128, 128)).astype(np.float32))
    np.testing.assert_array_equal(star_mask(sky), 0.0)


# --- inversion, dispatch, validation ----------------------------------------------------------


def test_invert_mask() -> None:
    mask = read_only(np.array([[0.0, 0.25, 1.0]], dtype=np.float32))
    np.testing.assert_array_equal(invert_mask(mask), [[1.0, 0.75, 0.0]])
    assert invert_mask(mask).dtype == np.float32


def test_make_mask_dispatches_on_the_config_type(star_field: np.ndarray) -> None:
    for config in (
        LuminanceMaskConfig(),
        RangeMaskConfig(low=0.1, high=0.5, fuzziness=0.05),
        StarMaskConfig(),
    ):
        direct = {
            LuminanceMaskConfig: luminance_mask,
            RangeMaskConfig: range_mask,
            StarMaskConfig: star_mask,
        }[type(config)](star_field, config)  # type: ignore[operator]
        np.testing.assert_array_equal(make_mask(star_field, config), direct)


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (np.zeros((2, 2, 1), dtype=np.float32), "2-D"),
        (np.full((2, 2), 1.5, dtype=np.float32), r"\[0, 1\]"),
        (np.full((2, 2), np.nan, dtype=np.float32), r"\[0, 1\]"),
        (np.zeros((2, 2), dtype=np.uint8), "floating"),
    ],
)
def test_bad_masks_are_refused(mask: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        invert_mask(mask)


def test_a_mask_must_cover_the_image() -> None:
    with pytest.raises(ValueError, match="differs"):
        as_mask(np.zeros((4, 5), dtype=np.float32), (5, 4, 3))


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: RangeMaskConfig(low=0.6, high=0.4), "low, high"),
        (lambda: RangeMaskConfig(low=-0.1, high=0.4), "low, high"),
        (lambda: RangeMaskConfig(low=0.1, high=0.4, fuzziness=2.0), "fuzziness"),
        (lambda: RangeMaskConfig(low=0.1, high=0.4, blur_px=-1.0), "blur_px"),
        (lambda: LuminanceMaskConfig(blur_px=101.0), "blur_px"),
        (lambda: LuminanceMaskConfig(weights="cie"), "weights"),  # type: ignore[arg-type]
        (lambda: StarMaskConfig(radius_hfr=0.1), "radius_hfr"),
        (lambda: StarMaskConfig(grow_px=-2.0), "grow_px"),
    ],
)
def test_configs_name_the_field(make: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make()  # type: ignore[operator]
