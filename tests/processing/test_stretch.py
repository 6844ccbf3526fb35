"""Stretches: MTF identities, auto-STF on a known sky (linked and per channel), histogram
transformation, arcsinh and generalised hyperbolic stretches against their formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from processing.stretch import (
    ArcsinhConfig,
    GhsConfig,
    HistogramTransform,
    StfConfig,
    StfParameters,
    apply_stf,
    arcsinh_stretch,
    auto_stf,
    auto_stf_channels,
    full_scale,
    ghs_stretch,
    ghs_transfer,
    histogram_transform,
    luminance,
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


def read_only(image: np.ndarray) -> np.ndarray:
    """Shared between tests, so any write into an input raises instead of leaking."""
    image.flags.writeable = False
    return image


# Module scope: the fixtures are costly to draw; they are read-only (see `read_only`).
@pytest.fixture(scope="module")
def sky() -> np.ndarray:
    return read_only(synthetic_sky(np.random.default_rng(11), SKY_ADU))


RGB_SKY_ADU = (1040.0, 1020.0, 1000.0)


@pytest.fixture(scope="module")
def rgb_sky() -> np.ndarray:
    """A reddish sky, blue faintest, the same noise in each channel.

    The channels differ by less than 2.8 sigma: a linked STF clips the shadows below the mean
    sky, so a stronger cast would push the faint channels to black (neutralise first).
    """
    rng = np.random.default_rng(12)
    return read_only(np.stack([synthetic_sky(rng, level) for level in RGB_SKY_ADU], axis=-1))


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


# --- unlinked STF -----------------------------------------------------------------------------


def test_unlinked_stf_puts_each_channel_sky_on_the_target(rgb_sky: np.ndarray) -> None:
    params = auto_stf_channels(rgb_sky, StfConfig(linked=False))
    assert len(params) == 3
    for level, channel_params in zip(RGB_SKY_ADU, params, strict=True):
        expected = (level - 2.8 * NOISE_ADU) / 65535
        np.testing.assert_allclose(channel_params.shadows, expected, atol=SHADOWS_TOLERANCE)
    stretched = histogram_transform(rgb_sky, params)
    medians = [float(np.median(stretched[..., c])) for c in range(3)]
    np.testing.assert_allclose(medians, 0.25, rtol=0, atol=BACKGROUND_TOLERANCE)


def test_linked_channels_repeat_the_linked_stf(rgb_sky: np.ndarray) -> None:
    assert auto_stf_channels(rgb_sky) == (auto_stf(rgb_sky),) * 3


def test_auto_stf_refuses_an_unlinked_config_on_colour(rgb_sky: np.ndarray) -> None:
    with pytest.raises(ValueError, match="linked"):
        auto_stf(rgb_sky, StfConfig(linked=False))
    # One channel has nothing to link: the same STF either way.
    mono = rgb_sky[..., 0]
    assert auto_stf(mono, StfConfig(linked=False)) == auto_stf(mono)


def test_large_frames_take_statistics_from_a_subsample() -> None:
    """Beyond 4 M pixels every 2nd pixel is used: the shadows still land on the known sky."""
    rng = np.random.default_rng(5)
    sky = rng.normal(0.02, 0.001, size=(2100, 2100)).astype(np.float32)
    params = auto_stf(sky)
    # 2.1 M samples: the median and the MAD scatter by ~1e-6; the expected value is exact.
    np.testing.assert_allclose(params.shadows, 0.02 - 2.8 * 0.001, rtol=0, atol=1e-5)


# --- histogram transformation -----------------------------------------------------------------


def hand_mtf(x: float, m: float) -> float:
    return (m - 1) * x / ((2 * m - 1) * x - m)


def test_histogram_transform_equals_its_formula() -> None:
    image = np.array([[[0.05], [0.1], [0.2], [0.35], [0.6], [0.9]]], dtype=np.float32)
    transform = HistogramTransform(shadows=0.1, midtones=0.2, highlights=0.6)
    out = histogram_transform(image, transform)
    expected = [0.0, 0.0, hand_mtf(0.2, 0.2), hand_mtf(0.5, 0.2), 1.0, 1.0]
    # MTF(0.2, 0.2) = 0.5, MTF(0.5, 0.2) = 0.8; float32 rounding of x' and the MTF only.
    np.testing.assert_allclose(expected[2:4], [0.5, 0.8], rtol=1e-12)
    np.testing.assert_allclose(out[0, :, 0], expected, rtol=0, atol=1e-6)
    assert out.dtype == np.float32


def test_mtf_at_a_chosen_point() -> None:
    # MTF(0.1, m = 0.2) = (0.2 - 1) 0.1 / ((0.4 - 1) 0.1 - 0.2) = 0.08 / 0.26
    np.testing.assert_allclose(midtones_transfer(np.array([0.1]), 0.2), [0.08 / 0.26], rtol=1e-12)


def test_histogram_transform_per_channel() -> None:
    x = np.array([0.0, 0.1, 0.3, 0.5, 1.0], dtype=np.float32)
    image = np.stack([x, x, x], axis=-1)[None]
    transforms = (
        HistogramTransform(0.0, 0.5, 1.0),
        HistogramTransform(0.0, 0.1, 1.0),
        HistogramTransform(0.1, 0.3, 0.5),
    )
    out = histogram_transform(image, transforms)
    np.testing.assert_allclose(out[0, :, 0], x, atol=1e-7)  # m = 0.5 is the identity
    np.testing.assert_allclose(out[0, :, 1], [hand_mtf(v, 0.1) for v in x], atol=1e-6)
    clipped = np.clip((x - 0.1) / 0.4, 0, 1)
    np.testing.assert_allclose(out[0, :, 2], [hand_mtf(v, 0.3) for v in clipped], atol=1e-6)
    with pytest.raises(ValueError, match="params"):
        histogram_transform(image, transforms[:2])


# --- luminance --------------------------------------------------------------------------------


def test_luminance_weights() -> None:
    image = np.array([[[0.6, 0.3, 0.9]]], dtype=np.float32)
    np.testing.assert_allclose(luminance(image), [[0.6]], rtol=1e-6)
    np.testing.assert_allclose(
        luminance(image, "rec709"), [[0.2126 * 0.6 + 0.7152 * 0.3 + 0.0722 * 0.9]], rtol=1e-6
    )
    np.testing.assert_array_equal(luminance(image[..., :1]), [[np.float32(0.6)]])
    with pytest.raises(ValueError, match="3 channels"):
        luminance(np.zeros((2, 2, 2), dtype=np.float32), "rec709")


# --- arcsinh ----------------------------------------------------------------------------------


def test_arcsinh_of_a_mono_image_equals_its_formula() -> None:
    beta, black = 20.0, 0.05
    x = np.array([0.0, 0.04, 0.05, 0.1, 0.3, 1.0])
    out = arcsinh_stretch(x.astype(np.float32)[None], ArcsinhConfig(beta, black))
    prime = np.maximum(x - black, 0) / (1 - black)
    expected = np.arcsinh(beta * prime) / math.asinh(beta)
    # float32 arithmetic on O(1) values.
    np.testing.assert_allclose(out[0], expected, rtol=0, atol=2e-6)
    assert out[0, -1] == pytest.approx(1.0, abs=1e-6)


def test_arcsinh_keeps_the_colour_ratios_after_the_black_point() -> None:
    beta, black = 50.0, 0.01
    pixel = np.array([0.11, 0.06, 0.03])
    out = arcsinh_stretch(pixel.astype(np.float32)[None, None], ArcsinhConfig(beta, black))[0, 0]
    prime = (pixel - black) / (1 - black)
    lum = prime.mean()
    k = math.asinh(beta * lum) / (lum * math.asinh(beta))
    # float32 arithmetic; the stretched values are O(0.3).
    np.testing.assert_allclose(out, k * prime, rtol=1e-5)
    np.testing.assert_allclose(out[0] / out[1], prime[0] / prime[1], rtol=1e-5)
    np.testing.assert_allclose(out[2] / out[1], prime[2] / prime[1], rtol=1e-5)
    assert out[1] > 2 * pixel[1]  # and it did stretch


def test_arcsinh_rec709_luminance_and_highlight_protection() -> None:
    beta = 100.0
    pixel = np.array([0.9, 0.1, 0.05])
    image = pixel.astype(np.float32)[None, None]
    lum = 0.2126 * 0.9 + 0.7152 * 0.1 + 0.0722 * 0.05
    k = math.asinh(beta * lum) / (lum * math.asinh(beta))
    assert k * pixel[0] > 1  # red would saturate
    protected = arcsinh_stretch(image, ArcsinhConfig(beta, luminance="rec709"))[0, 0]
    # The whole pixel divided by its brightest channel: red at 1, ratios kept (float32).
    np.testing.assert_allclose(protected, pixel / pixel[0], rtol=1e-5)
    clipped = arcsinh_stretch(
        image, ArcsinhConfig(beta, protect_highlights=False, luminance="rec709")
    )[0, 0]
    np.testing.assert_allclose(clipped, [1.0, k * pixel[1], k * pixel[2]], rtol=1e-5)


def test_arcsinh_on_uint16_and_without_mutation(rgb_sky: np.ndarray) -> None:
    before = rgb_sky.copy()
    out = arcsinh_stretch(rgb_sky, ArcsinhConfig(10.0))
    np.testing.assert_array_equal(rgb_sky, before)
    assert out.dtype == np.float32
    assert out.shape == rgb_sky.shape
    assert out.min() >= 0.0
    assert out.max() <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"stretch": 0.5}, "stretch"),
        ({"stretch": 1001.0}, "stretch"),
        ({"stretch": 5.0, "black_point": 1.0}, "black_point"),
        ({"stretch": 5.0, "black_point": -0.1}, "black_point"),
        ({"stretch": 5.0, "luminance": "cie"}, "luminance"),
    ],
)
def test_arcsinh_config_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ArcsinhConfig(**kwargs)  # type: ignore[arg-type]


# --- generalised hyperbolic stretch -----------------------------------------------------------

# D = ln(D' + 1) = ln 11, so D' = 10 in the formulas below.
LN11 = math.log(11.0)


@pytest.mark.parametrize(
    ("b", "x", "expected"),
    [
        # b = 0, exponential: (1 - exp(-D'x)) / (1 - exp(-D'))
        (0.0, 0.1, (1 - math.exp(-1)) / (1 - math.exp(-10))),
        # b = -1, logarithmic: ln(1 + D'x) / ln(1 + D')
        (-1.0, 0.1, math.log(2) / math.log(11)),
        # b = 1, harmonic: 1 - 1 / (1 + D'x), normalised: x (1 + D') / (1 + D'x)
        (1.0, 0.1, 0.1 * 11 / 2),
        # b = -0.5: (1 - (1 + D'x / 2)^-1) / (D'/2), normalised: (1 - 1/(1 + 5x)) / (1 - 1/6)
        (-0.5, 0.1, (1 - 1 / 1.5) / (1 - 1 / 6)),
        # b = -2: (1 - (1 + 2D'x)^(1/2)) / (-D'), normalised: (sqrt(1 + 20x) - 1) / (sqrt 21 - 1)
        (-2.0, 0.1, (math.sqrt(3) - 1) / (math.sqrt(21) - 1)),
        # b = 3: 1 - (1 + 3D'x)^(-1/3), normalised by its value at 1
        (3.0, 0.05, (1 - 2.5 ** (-1 / 3)) / (1 - 31 ** (-1 / 3))),
    ],
)
def test_ghs_equals_the_published_forms(b: float, x: float, expected: float) -> None:
    out = ghs_transfer(np.array([0.0, x, 1.0]), GhsConfig(D=LN11, b=b))
    # float64 throughout; log1p/expm1 agree with the closed forms to a few ulps.
    np.testing.assert_allclose(out, [0.0, expected, 1.0], rtol=1e-12, atol=1e-15)


def test_ghs_piecewise_with_symmetry_and_protection_points() -> None:
    """b = 1 (harmonic): T(u) = 1 - 1/(1 + D'u), T'(u) = D'/(1 + D'u)^2, D' = 10."""
    sp, lp, hp, dp = 0.3, 0.1, 0.8, 10.0

    def t(u: float) -> float:
        return 1 - 1 / (1 + dp * u)

    def t_slope(u: float) -> float:
        return dp / (1 + dp * u) ** 2

    def g(x: float) -> float:
        if x < lp:
            return -t(sp - lp) - t_slope(sp - lp) * (lp - x)
        if x < sp:
            return -t(sp - x)
        if x <= hp:
            return t(x - sp)
        return t(hp - sp) + t_slope(hp - sp) * (x - hp)

    xs = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 0.9, 1.0]
    expected = [(g(x) - g(0)) / (g(1) - g(0)) for x in xs]
    out = ghs_transfer(np.array(xs), GhsConfig(D=LN11, b=1.0, SP=sp, LP=lp, HP=hp))
    # float64; the two evaluations round differently by a few ulps.
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
    assert out[0] == 0.0
    assert out[-1] == 1.0


@pytest.mark.parametrize(
    "config",
    [
        GhsConfig(D=10.0, b=15.0, SP=0.05, LP=0.01, HP=0.9),
        GhsConfig(D=10.0, b=-5.0, SP=0.0),
        GhsConfig(D=3.0, b=-1.0, SP=0.5, LP=0.5, HP=0.5),
        GhsConfig(D=6.0, b=0.5, SP=1.0, LP=0.2, HP=1.0),
    ],
)
def test_ghs_is_monotone_with_fixed_end_points(config: GhsConfig) -> None:
    x = np.linspace(0.0, 1.0, 20001)
    curve = ghs_transfer(x, config)
    assert curve[0] == 0.0
    assert curve[-1] == 1.0
    # Non-decreasing; strictly rising curves may still round to equal neighbours where flat.
    assert np.all(np.diff(curve) >= 0.0)
    assert np.all(np.isfinite(curve))


def test_ghs_forms_join_continuously_at_b_zero_and_minus_one() -> None:
    x = np.linspace(0.0, 1.0, 1001)
    for b in (0.0, -1.0):
        exact = ghs_transfer(x, GhsConfig(D=5.0, b=b, SP=0.2))
        for nearby in (b - 1e-9, b + 1e-9):
            # The curve moves by O(1e-9) for a 1e-9 change of b; log1p/expm1 keep it so.
            near = ghs_transfer(x, GhsConfig(D=5.0, b=nearby, SP=0.2))
            np.testing.assert_allclose(near, exact, rtol=0, atol=1e-7)


def test_ghs_zero_stretch_is_the_identity() -> None:
    x = np.array([-0.1, 0.0, 0.3, 1.0, 1.2])
    np.testing.assert_array_equal(ghs_transfer(x, GhsConfig(D=0.0, b=3.0)), np.clip(x, 0, 1))


def test_ghs_stretch_of_an_image_follows_the_curve(rgb_sky: np.ndarray) -> None:
    before = rgb_sky.copy()
    config = GhsConfig(D=8.0, b=2.0, SP=0.015, LP=0.005, HP=0.95)
    out = ghs_stretch(rgb_sky, config)
    np.testing.assert_array_equal(rgb_sky, before)
    assert out.dtype == np.float32
    assert out.shape == rgb_sky.shape
    expected = ghs_transfer(rgb_sky.astype(np.float64) / 65535, config)
    # float32 evaluation: input rounding (6e-8 relative) times the slope (~30 at SP) plus
    # the float32 log1p/expm1.
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"D": -0.1}, "D "),
        ({"D": 10.5}, "D "),
        ({"D": 1.0, "b": -5.5}, "b "),
        ({"D": 1.0, "b": 15.5}, "b "),
        ({"D": 1.0, "SP": 0.2, "LP": 0.3}, "LP, SP, HP"),
        ({"D": 1.0, "SP": 0.5, "HP": 0.4}, "LP, SP, HP"),
        ({"D": 1.0, "SP": 1.5, "HP": 1.5}, "LP, SP, HP"),
    ],
)
def test_ghs_config_names_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GhsConfig(**kwargs)
