"""Curves and desaturation: identity, points hit, monotone, channel order, saturation that
keeps hue and luminance, masks that leave their zeros untouched, validation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

from processing.curves import CurvesConfig, apply_curves, curve_table, desaturate

BOOST = ((0.0, 0.0), (0.5, 0.7), (1.0, 1.0))
# Table lookup: linear interpolation between 4096 entries errs by h^2/8 |f''| ~ 1e-8 for these
# gentle curves; float32 output adds 6e-8. 1e-6 leaves a margin and still catches a wrong
# curve (a misplaced point moves values by > 1e-2).
CURVE_TOLERANCE = 1e-6


def read_only(image: np.ndarray) -> np.ndarray:
    """Inputs are shared by the tests, so any write into one raises instead of leaking."""
    image.flags.writeable = False
    return image


@pytest.fixture(scope="module")
def colour() -> np.ndarray:
    """Random colours (64 x 64 RGB) in [0.05, 0.6], so a saturation boost is never capped
    by white, plus grey pixels in the first row."""
    rng = np.random.default_rng(31)
    image = rng.uniform(0.05, 0.6, size=(64, 64, 3)).astype(np.float32)
    image[0] = rng.uniform(0.0, 1.0, size=(64, 1)).astype(np.float32)  # grey: R = G = B
    return read_only(image)


def ramp() -> np.ndarray:
    x = np.linspace(0.0, 1.0, 1001, dtype=np.float32)
    return read_only(np.stack([x, x, x], axis=-1)[None])


def hsv_saturation(image: np.ndarray) -> np.ndarray:
    high = image.max(axis=-1)
    return np.where(high > 0, (high - image.min(axis=-1)) / np.where(high > 0, high, 1), 0.0)


def position_in_range(image: np.ndarray) -> np.ndarray:
    low, high = image.min(axis=-1, keepdims=True), image.max(axis=-1, keepdims=True)
    position: np.ndarray = (image - low) / np.where(high > low, high - low, 1)
    return position


# --- tone curves ------------------------------------------------------------------------------


def test_no_curves_is_the_identity(colour: np.ndarray) -> None:
    out = apply_curves(colour, CurvesConfig())
    np.testing.assert_array_equal(out, colour)
    assert out.dtype == np.float32


def test_identity_points_give_the_identity(colour: np.ndarray) -> None:
    straight = ((0.0, 0.0), (0.3, 0.3), (1.0, 1.0))
    config = CurvesConfig(rgb=straight, red=straight, saturation=straight)
    # PCHIP through collinear points is the line; only float rounding remains.
    np.testing.assert_allclose(apply_curves(colour, config), colour, rtol=0, atol=1e-6)


def test_a_curve_through_a_point_maps_it_there() -> None:
    out = apply_curves(ramp(), CurvesConfig(rgb=BOOST))
    np.testing.assert_allclose(out[0, 500], 0.7, rtol=0, atol=CURVE_TOLERANCE)
    np.testing.assert_allclose(out[0, [0, -1], 0], [0.0, 1.0], rtol=0, atol=CURVE_TOLERANCE)
    expected = PchipInterpolator([0.0, 0.5, 1.0], [0.0, 0.7, 1.0])(np.linspace(0, 1, 1001))
    np.testing.assert_allclose(out[0, :, 1], expected, rtol=0, atol=CURVE_TOLERANCE)


def test_curves_are_monotone_between_close_points() -> None:
    """Points that rise steeply then flatten: a natural cubic spline would overshoot and
    fall back; PCHIP rises everywhere."""
    points = ((0.0, 0.0), (0.1, 0.6), (0.15, 0.65), (1.0, 1.0))
    out = apply_curves(ramp(), CurvesConfig(rgb=points))[0, :, 0]
    assert np.all(np.diff(out) >= 0.0)
    assert out.max() <= 1.0


def test_channel_curves_run_before_the_rgb_curve() -> None:
    red = ((0.0, 0.0), (0.5, 0.3), (1.0, 1.0))
    out = apply_curves(ramp(), CurvesConfig(rgb=BOOST, red=red))
    x = np.linspace(0.0, 1.0, 1001)
    rgb_curve = PchipInterpolator([0.0, 0.5, 1.0], [0.0, 0.7, 1.0])
    red_curve = PchipInterpolator([0.0, 0.5, 1.0], [0.0, 0.3, 1.0])
    np.testing.assert_allclose(out[0, :, 0], rgb_curve(red_curve(x)), atol=CURVE_TOLERANCE)
    np.testing.assert_allclose(out[0, :, 1], rgb_curve(x), atol=CURVE_TOLERANCE)


def test_curve_table() -> None:
    table = curve_table(BOOST)
    assert table.shape == (4096,)
    np.testing.assert_allclose(table[[0, -1]], [0.0, 1.0])
    np.testing.assert_array_equal(curve_table(()), np.linspace(0.0, 1.0, 4096))


def test_mono_images_take_the_rgb_curve_only() -> None:
    mono = ramp()[..., :1]
    out = apply_curves(mono, CurvesConfig(rgb=BOOST))
    np.testing.assert_allclose(out[0, 500, 0], 0.7, rtol=0, atol=CURVE_TOLERANCE)
    out2d = apply_curves(mono[..., 0], CurvesConfig(rgb=BOOST))
    np.testing.assert_array_equal(out2d, out[..., 0])
    with pytest.raises(ValueError, match="RGB image"):
        apply_curves(mono, CurvesConfig(saturation=BOOST))


# --- saturation -------------------------------------------------------------------------------


def test_saturation_curve_raises_chroma_and_keeps_luminance_and_hue(colour: np.ndarray) -> None:
    out = apply_curves(colour, CurvesConfig(saturation=BOOST))
    chroma_before = colour.max(axis=-1) - colour.min(axis=-1)
    chroma_after = out.max(axis=-1) - out.min(axis=-1)
    coloured = chroma_before > 1e-3
    assert np.all(chroma_after[coloured] > chroma_before[coloured])
    # Luminance (the channel mean) is kept: float32 rounding of values ~0.3.
    np.testing.assert_allclose(out.mean(axis=-1), colour.mean(axis=-1), rtol=0, atol=1e-6)
    # HSV hue: where each channel sits between the pixel's min and max is kept. Float32
    # rounding (6e-8) over chroma above 0.02 leaves < 1e-5.
    clear = chroma_before > 0.02
    np.testing.assert_allclose(
        position_in_range(out)[clear], position_in_range(colour)[clear], rtol=0, atol=1e-5
    )
    # No pixel is capped (all stay below 1), so each saturation lands on the curve.
    expected = PchipInterpolator([0.0, 0.5, 1.0], [0.0, 0.7, 1.0])(hsv_saturation(colour))
    np.testing.assert_allclose(hsv_saturation(out)[coloured], expected[coloured], atol=1e-5)


def test_grey_stays_grey(colour: np.ndarray) -> None:
    out = apply_curves(colour, CurvesConfig(saturation=((0.0, 0.5), (1.0, 1.0))))
    np.testing.assert_array_equal(out[0], colour[0])


def test_saturation_is_capped_at_white_without_changing_the_hue() -> None:
    pixel = read_only(np.array([[[0.9, 0.5, 0.4]]], dtype=np.float32))
    out = apply_curves(pixel, CurvesConfig(saturation=((0.0, 0.0), (0.5, 1.0), (1.0, 1.0))))
    mean = pixel.mean()
    # The largest factor that keeps red <= 1: f = (1 - L) / (R - L).
    f = (1.0 - mean) / (0.9 - mean)
    np.testing.assert_allclose(out[0, 0], mean + f * (pixel[0, 0] - mean), rtol=0, atol=1e-6)
    assert out[0, 0, 0] == pytest.approx(1.0, abs=1e-6)


# --- masks ------------------------------------------------------------------------------------


def test_masked_curves_leave_mask_zero_pixels_exactly(colour: np.ndarray) -> None:
    config = CurvesConfig(rgb=BOOST, saturation=BOOST)
    mask = np.zeros(colour.shape[:2], dtype=np.float32)
    mask[:, 32:] = 1.0
    mask[:, 40:48] = 0.5
    out = apply_curves(colour, config, read_only(mask))
    full = apply_curves(colour, config)
    np.testing.assert_array_equal(out[:, :32], colour[:, :32])
    np.testing.assert_array_equal(out[:, 32:40], full[:, 32:40])
    # Half and half: float32 rounding of an average.
    np.testing.assert_allclose(
        out[:, 40:48], 0.5 * (colour[:, 40:48] + full[:, 40:48]), rtol=0, atol=1e-7
    )


def test_a_mask_must_fit_the_image(colour: np.ndarray) -> None:
    with pytest.raises(ValueError, match="differs"):
        apply_curves(colour, CurvesConfig(rgb=BOOST), np.zeros((8, 8), dtype=np.float32))


# --- desaturation -----------------------------------------------------------------------------


def test_desaturate_pulls_towards_the_channel_mean(colour: np.ndarray) -> None:
    mask = np.ones(colour.shape[:2], dtype=np.float32)
    mask[:, :16] = 0.0
    mean = colour.mean(axis=-1, keepdims=True)
    grey = desaturate(colour, 1.0, read_only(mask))
    np.testing.assert_allclose(grey[:, 16:], np.broadcast_to(mean, colour.shape)[:, 16:], atol=1e-6)
    np.testing.assert_array_equal(grey[:, :16], colour[:, :16])
    half = desaturate(colour, 0.5, mask)
    np.testing.assert_allclose(half[:, 16:], (0.5 * (colour + mean))[:, 16:], rtol=0, atol=1e-6)


def test_desaturate_by_default_greys_the_background_more_than_the_target() -> None:
    """A linear frame: a reddish sky at 0.02 and a bright green-blue disc; the default mask
    (inverted, auto-stretched luminance) desaturates the sky and spares the disc."""
    rng = np.random.default_rng(4)
    image = np.empty((96, 96, 3), dtype=np.float32)
    image[:] = (0.024, 0.02, 0.018)
    image += rng.normal(0.0, 0.0005, size=image.shape).astype(np.float32)
    y, x = np.mgrid[:96, :96]
    disc = (y - 48) ** 2 + (x - 48) ** 2 < 15**2
    image[disc] = (0.2, 0.5, 0.6)
    out = desaturate(read_only(image), 1.0)

    def chroma(a: np.ndarray) -> np.ndarray:
        spread: np.ndarray = a.max(axis=-1) - a.min(axis=-1)
        return spread

    sky = (y - 48) ** 2 + (x - 48) ** 2 > 30**2
    assert np.median(chroma(out)[sky] / chroma(image)[sky]) < 0.4
    assert np.median(chroma(out)[disc] / chroma(image)[disc]) > 0.9


def test_desaturate_refuses_a_bad_amount(colour: np.ndarray) -> None:
    with pytest.raises(ValueError, match="amount"):
        desaturate(colour, 1.5)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"red": ((0.0, 0.0),)}, "red needs at least 2"),
        ({"rgb": ((0.0, 0.0), (0.6, 0.5), (0.4, 0.7), (1.0, 1.0))}, "rgb: x must increase"),
        ({"saturation": ((0.0, 0.0), (1.0, 1.5))}, "saturation: every x and y"),
        ({"green": ((0.0, 0.0), (0.5, float("nan")), (1.0, 1.0))}, "green: every x and y"),
        ({"blue": ((0.1, 0.0), (1.0, 1.0))}, "blue must start at x = 0"),
        ({"rgb": ((0.0, 0.0), (0.9, 1.0))}, "rgb must start at x = 0 and end at x = 1"),
        ({"rgb": (0.0, 1.0)}, "rgb must be a sequence"),
    ],
)
def test_invalid_points_name_the_curve(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CurvesConfig(**kwargs)  # type: ignore[arg-type]


def test_points_from_json_lists_become_tuples() -> None:
    config = CurvesConfig(rgb=[[0, 0], [0.5, 0.7], [1, 1]])  # type: ignore[arg-type]
    assert config.rgb == BOOST
    assert hash(config) == hash(CurvesConfig(rgb=BOOST))


def test_integer_images_are_refused() -> None:
    with pytest.raises(ValueError, match="float"):
        apply_curves(np.zeros((4, 4, 3), dtype=np.uint16), CurvesConfig(rgb=BOOST))
