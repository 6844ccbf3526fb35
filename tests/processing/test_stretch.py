"""The screen transfer function: MTF identities, auto-STF on a known sky, linked colour."""

from __future__ import annotations

import numpy as np
import pytest

from processing.stretch import (
    StfConfig,
    StfParameters,
    apply_stf,
    auto_stf,
    full_scale,
    midtones_transfer,
)

SKY_ADU = 1000.0
NOISE_ADU = 20.0
# The MAD of integer ADU data is a whole or half ADU, so sigma is measured in steps of up to
# 1.48 ADU and 2.8 sigma is off by up to ~2.1 ADU; the stars shift the median by < 0.5 ADU.
SHADOWS_TOLERANCE = 3.0 / 65535
# The STF is monotone and the pixel count odd, so the median of the stretched image is the
# stretched median exactly; what remains is float32 rounding (~1e-9 on the background level)
# times the MTF's slope there (~200).
BACKGROUND_TOLERANCE = 1e-5


def synthetic_sky(
    rng: np.random.Generator, sky_adu: float, shape: tuple[int, int] = (255, 257)
) -> np.ndarray:
    """Gaussian noise around `sky_adu` plus 30 stars (under 1 % of the pixels); odd pixel count."""
    sky = rng.normal(sky_adu, NOISE_ADU, size=shape)
    y, x = np.mgrid[: shape[0], : shape[1]]
    for cy, cx, peak in zip(
        rng.uniform(5, shape[0] - 5, 30),
        rng.uniform(5, shape[1] - 5, 30),
        rng.uniform(500, 20_000, 30),
        strict=True,
    ):
        sky += peak * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 1.2**2))
    return np.clip(np.rint(sky), 0, 65535).astype(np.uint16)


@pytest.fixture
def sky() -> np.ndarray:
    return synthetic_sky(np.random.default_rng(11), SKY_ADU)


RGB_SKY_ADU = (1040.0, 1020.0, 1000.0)


@pytest.fixture
def rgb_sky() -> np.ndarray:
    """A reddish sky, blue faintest, the same noise in each channel.

    The channels differ by less than 2.8 sigma: a linked STF clips the shadows below the mean
    sky, so a stronger cast would push the faint channels to black (neutralise first).
    """
    rng = np.random.default_rng(12)
    return np.stack([synthetic_sky(rng, level) for level in RGB_SKY_ADU], axis=-1)


@pytest.mark.parametrize("m", [0.0, 0.01, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_mtf_end_points(m: float) -> None:
    out = midtones_transfer(np.array([0.0, 1.0]), m)
    np.testing.assert_array_equal(out, [0.0, 1.0])


@pytest.mark.parametrize("m", [0.01, 0.1, 0.25, 0.5, 0.9])
def test_mtf_maps_m_to_one_half_and_increases(m: float) -> None:
    # float64 arithmetic on O(1) values: a few ulps.
    np.testing.assert_allclose(midtones_transfer(np.array([m]), m), [0.5], rtol=0, atol=1e-12)
    curve = midtones_transfer(np.linspace(0.0, 1.0, 1001), m)
    assert np.all(np.diff(curve) > 0)


def test_mtf_with_one_half_is_the_identity_and_clips() -> None:
    x = np.array([-0.5, 0.0, 0.3, 0.7, 1.0, 2.0])
    np.testing.assert_allclose(midtones_transfer(x, 0.5), np.clip(x, 0, 1), rtol=0, atol=1e-15)


def test_mtf_keeps_float32_and_does_not_mutate() -> None:
    x = np.linspace(0, 1, 11, dtype=np.float32)
    before = x.copy()
    assert midtones_transfer(x, 0.2).dtype == np.float32
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("m", [-0.1, 1.1])
def test_mtf_refuses_a_balance_outside_the_unit_range(m: float) -> None:
    with pytest.raises(ValueError, match="midtones"):
        midtones_transfer(np.array([0.5]), m)


def test_auto_stf_clips_shadows_below_the_known_sky(sky: np.ndarray) -> None:
    params = auto_stf(sky, StfConfig())
    expected = (SKY_ADU - 2.8 * NOISE_ADU) / 65535
    np.testing.assert_allclose(params.shadows, expected, rtol=0, atol=SHADOWS_TOLERANCE)
    assert params.highlights == 1.0


def test_auto_stf_puts_the_sky_on_the_target_background(sky: np.ndarray) -> None:
    stretched = apply_stf(sky, auto_stf(sky))
    np.testing.assert_allclose(np.median(stretched), 0.25, rtol=0, atol=BACKGROUND_TOLERANCE)
    config = StfConfig(shadows_clip_mad=-1.5, target_background=0.15)
    stretched = apply_stf(sky, auto_stf(sky, config))
    np.testing.assert_allclose(np.median(stretched), 0.15, rtol=0, atol=BACKGROUND_TOLERANCE)


def test_apply_stf_returns_unit_float32_and_clips(sky: np.ndarray) -> None:
    params = auto_stf(sky)
    stretched = apply_stf(sky, params)
    assert stretched.dtype == np.float32
    assert stretched.shape == sky.shape
    assert stretched.min() >= 0.0
    assert stretched.max() <= 1.0
    below = sky < params.shadows * 65535
    assert below.any()
    assert np.all(stretched[below] == 0.0)
    assert stretched.max() > 0.99  # the star peaks come close to white


def test_highlights_clip_to_white() -> None:
    image = np.array([[0.0, 0.2, 0.5, 0.8, 1.0]], dtype=np.float32)
    stretched = apply_stf(image, StfParameters(shadows=0.2, midtones=0.5, highlights=0.8))
    # m = 0.5 is linear: (x - 0.2) / 0.6, clipped; float32 rounding only.
    np.testing.assert_allclose(stretched, [[0.0, 0.0, 0.5, 1.0, 1.0]], rtol=0, atol=1e-6)


def test_float_input_gives_the_same_transfer_as_uint16(sky: np.ndarray) -> None:
    as_float = sky.astype(np.float32) / np.float32(65535)
    from_uint16, from_float = auto_stf(sky), auto_stf(as_float)
    # The two normalisations differ by float32 rounding (one ulp) only.
    np.testing.assert_allclose(from_float.shadows, from_uint16.shadows, rtol=1e-6)
    np.testing.assert_allclose(from_float.midtones, from_uint16.midtones, rtol=1e-5)


def test_linked_stf_averages_the_channel_statistics(rgb_sky: np.ndarray) -> None:
    params = auto_stf(rgb_sky)
    expected = (np.mean(RGB_SKY_ADU) - 2.8 * NOISE_ADU) / 65535
    np.testing.assert_allclose(params.shadows, expected, rtol=0, atol=SHADOWS_TOLERANCE)


def test_linked_stf_keeps_the_colour_of_the_sky(rgb_sky: np.ndarray) -> None:
    linked = apply_stf(rgb_sky, auto_stf(rgb_sky))
    red, green, blue = (float(np.median(linked[..., c])) for c in range(3))
    assert red > green > blue
    assert red - blue > 0.1  # clearly coloured, not a neutral grey
    # One monotone transfer for all channels: wherever red >= green before, it is after.
    brighter = rgb_sky[..., 0] >= rgb_sky[..., 1]
    assert np.all(linked[..., 0][brighter] >= linked[..., 1][brighter])


def test_unlinked_stf_would_neutralise_the_sky(rgb_sky: np.ndarray) -> None:
    """The contrast case: one STF per channel paints every channel's sky the same grey."""
    unlinked = [apply_stf(rgb_sky[..., c], auto_stf(rgb_sky[..., c])) for c in range(3)]
    medians = [float(np.median(channel)) for channel in unlinked]
    np.testing.assert_allclose(medians, 0.25, rtol=0, atol=BACKGROUND_TOLERANCE)


@pytest.mark.parametrize("level", [0, 1000, 65535])
def test_a_flat_frame_does_not_break_the_stf(level: int) -> None:
    """No dispersion (MAD 0): the shadows sit at the level, saturated frames still show white."""
    image = np.full((9, 11), level, dtype=np.uint16)
    stretched = apply_stf(image, auto_stf(image))
    assert np.all(np.isfinite(stretched))
    expected = 1.0 if level == 65535 else 0.0
    np.testing.assert_array_equal(stretched, expected)


def test_stf_functions_do_not_mutate_their_input(rgb_sky: np.ndarray) -> None:
    before = rgb_sky.copy()
    params = auto_stf(rgb_sky)
    apply_stf(rgb_sky, params)
    np.testing.assert_array_equal(rgb_sky, before)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8])
def test_images_of_unknown_scale_are_refused(dtype: type[np.generic]) -> None:
    with pytest.raises(ValueError, match=np.dtype(dtype).name):
        auto_stf(np.zeros((4, 4), dtype=dtype))


def test_other_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        auto_stf(np.zeros((2, 4, 4, 3), dtype=np.float32))


def test_full_scale() -> None:
    assert full_scale(np.dtype(np.uint16)) == 65535
    assert full_scale(np.dtype(np.float64)) == 1.0


@pytest.mark.parametrize(
    ("shadows", "midtones", "highlights", "match"),
    [
        (0.5, 0.5, 0.5, "shadows < highlights"),
        (-0.1, 0.5, 1.0, "0 <= shadows"),
        (0.0, 1.5, 1.0, "midtones must be in"),
    ],
)
def test_inconsistent_parameters_are_refused(
    shadows: float, midtones: float, highlights: float, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        StfParameters(shadows=shadows, midtones=midtones, highlights=highlights)


@pytest.mark.parametrize(("clip", "target"), [(0.5, 0.25), (-2.8, 0.0), (-2.8, 1.0)])
def test_inconsistent_config_is_refused(clip: float, target: float) -> None:
    with pytest.raises(ValueError, match="must"):
        StfConfig(shadows_clip_mad=clip, target_background=target)
