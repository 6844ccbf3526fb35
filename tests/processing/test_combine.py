"""Channel combination: RGB, linear fit, narrowband palettes, LRGB, FILTER names."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import xyz2lab

from processing.combine import (
    LRGB_CHANNELS,
    LinearFitConfig,
    LrgbConfig,
    Palette,
    channel_of,
    combine_lrgb,
    combine_palette,
    combine_rgb,
    fit_to,
    lab_to_linear_rgb,
    linear_fit,
    linear_rgb_to_lab,
    missing_channels,
    rgb_luminance,
)

SIZE_PX = 128
SKY = 0.002
# Rec. 709 / sRGB luminance weights of linear R, G, B (the Y row of the sRGB -> XYZ matrix).
Y_WEIGHTS = np.array([0.212671, 0.715160, 0.072169])


def blob(center: tuple[float, float], sigma_px: float, n: int = SIZE_PX) -> np.ndarray:
    y, x = np.mgrid[:n, :n]
    return np.asarray(np.exp(-((y - center[0]) ** 2 + (x - center[1]) ** 2) / (2 * sigma_px**2)))


def stars(rng: np.random.Generator, count: int, n: int = SIZE_PX) -> list[np.ndarray]:
    """`count` unit-peak stars (sigma 1.5 px) at random places."""
    return [blob((cy, cx), 1.5, n) for cy, cx in rng.uniform(4, n - 4, size=(count, 2))]


def mono_scene(rng: np.random.Generator) -> np.ndarray:
    """Sky 0.002 over most of the field, three nebulae (0.01-0.05) and 25 stars (0.02-0.5)."""
    scene = np.full((SIZE_PX, SIZE_PX), SKY)
    for _ in range(3):
        center = (float(rng.uniform(0, SIZE_PX)), float(rng.uniform(0, SIZE_PX)))
        scene += rng.uniform(0.01, 0.05) * blob(center, float(rng.uniform(5, 12)))
    for star in stars(rng, 25):
        scene += rng.uniform(0.02, 0.5) * star
    return scene


def colour_truth(rng: np.random.Generator) -> np.ndarray:
    """(y, x, 3) linear truth: a bluish sky, a red and a blue nebula, stars of many colours."""
    truth = np.empty((SIZE_PX, SIZE_PX, 3))
    truth[:] = (0.0020, 0.0022, 0.0026)
    truth += 0.04 * blob((40, 40), 12)[..., None] * np.array([1.0, 0.25, 0.3])
    truth += 0.03 * blob((85, 90), 10)[..., None] * np.array([0.3, 0.5, 1.0])
    for star in stars(rng, 30):
        colour = np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.3, 1.2)])
        truth += rng.uniform(0.02, 0.4) * star[..., None] * colour
    return truth


def luminance(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb @ Y_WEIGHTS)


# --- RGB ---------------------------------------------------------------------------------


def test_combine_rgb_puts_each_master_in_its_channel() -> None:
    rng = np.random.default_rng(1)
    truth = colour_truth(rng)
    sigma = 0.001
    r, g, b = (
        (truth[..., c] + rng.normal(0, sigma, truth.shape[:2])).astype(np.float32) for c in range(3)
    )
    image = combine_rgb(r, g[..., None], b)  # G as (y, x, 1): both mono layouts are accepted
    assert image.shape == (SIZE_PX, SIZE_PX, 3)
    assert image.dtype == np.float32
    # Gaussian noise: 49 152 samples never reach 5.5 sigma (p ~ 4e-8 each); a swapped channel
    # misses by the colour of the nebulae and stars (> 0.02).
    np.testing.assert_allclose(image, truth, atol=5.5 * sigma, rtol=0)


def test_combine_rgb_names_the_channel_whose_shape_differs() -> None:
    plane = np.zeros((16, 16), np.float32)
    with pytest.raises(ValueError, match=r"channel B has shape \(16, 15\), R has \(16, 16\)"):
        combine_rgb(plane, plane, np.zeros((16, 15), np.float32))
    with pytest.raises(ValueError, match="channel G must have axes"):
        combine_rgb(plane, np.zeros((16, 16, 3), np.float32), plane)


# --- linear fit --------------------------------------------------------------------------


def noisy_pair(seed: int, scale: float, offset: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A scene, a channel of it (noise 0.0005) and a reference = scale * scene + offset with
    its own, relatively smaller noise (0.001 / scale), as two masters of unequal depth."""
    rng = np.random.default_rng(seed)
    scene = mono_scene(rng)
    channel = (scene + rng.normal(0, 0.0005, scene.shape)).astype(np.float32)
    reference = scale * scene + offset + rng.normal(0, 0.001, scene.shape)
    return scene, channel, reference.astype(np.float32)


def test_linear_fit_recovers_a_known_scale_and_offset() -> None:
    scene, channel, reference = noisy_pair(seed=2, scale=2.3, offset=0.01)
    scale, offset = linear_fit(channel, reference)
    # 1 % is the requirement. Measured over 30 seeds: scale within 0.055 % (mean 0.02 %),
    # offset within 0.42 % (mean 0.15 %); this seed: 0.004 % and 0.30 %. The offset errs more:
    # faint nebula wings hidden in the noise lift each sky by an amount that depends on the
    # noise, and the two images' noise differs.
    np.testing.assert_allclose(scale, 2.3, rtol=0.01)
    np.testing.assert_allclose(offset, 0.01, rtol=0.01)
    fitted = fit_to(channel, reference)
    assert fitted.dtype == np.float32
    # What is left is the channel's noise times the scale (2.3 x 0.0005): 6 sigma.
    np.testing.assert_allclose(fitted, 2.3 * scene + 0.01, atol=6 * 2.3 * 0.0005, rtol=0)


def test_linear_fit_leaves_out_stars_saturated_in_one_image() -> None:
    rng = np.random.default_rng(3)
    scene = mono_scene(rng)
    for star in stars(rng, 12):
        scene += 0.6 * star  # peaks up to ~1.1 before clipping: a fifth of the top 0.5 %
    channel = np.clip(scene + rng.normal(0, 0.0005, scene.shape), 0, 1).astype(np.float32)
    # The reference saturates at full scale where the channel does not (2 x 0.5 > 1): with
    # those pixels in, its brightest pixels would be too faint and the scale ~5 % low.
    reference = np.clip(2.0 * scene + 0.01 + rng.normal(0, 0.001, scene.shape), 0, 1)
    scale, offset = linear_fit(channel, reference.astype(np.float32))
    # Same error budget as the unsaturated fit above.
    np.testing.assert_allclose(scale, 2.0, rtol=0.01)
    np.testing.assert_allclose(offset, 0.01, rtol=0.01)


def test_linear_fit_refuses_what_it_cannot_fit() -> None:
    flat = np.full((32, 32), 0.01, np.float32)
    ramp = np.linspace(0, 0.5, 32 * 32, dtype=np.float32).reshape(32, 32)
    with pytest.raises(ValueError, match="channel has shape"):
        linear_fit(ramp, ramp[:, :31])
    with pytest.raises(ValueError, match="channel has no signal above its sky"):
        linear_fit(flat, ramp)
    with pytest.raises(ValueError, match="reference has no signal above its sky"):
        linear_fit(ramp, flat)
    with pytest.raises(ValueError, match="below saturation"):
        linear_fit(np.full((8, 8), np.nan, np.float32), ramp[:8, :8])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"signal_percentile": 100.0}, "signal_percentile"),
        ({"signal_percentile": 50.0}, "signal_percentile"),
        ({"background_clip_sigma": 0.0}, "background_clip_sigma"),
        ({"saturation": 1.5}, "saturation"),
    ],
)
def test_linear_fit_config_names_the_bad_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LinearFitConfig(**kwargs)


# --- palettes ----------------------------------------------------------------------------

# Each line: scale and offset against the scene, and where its own extra nebula sits.
LINES = {
    "Ha": (1.0, 0.0, (30, 30)),
    "OIII": (0.4, 0.003, (30, 98)),
    "SII": (0.25, 0.001, (98, 64)),
}
LINE_NOISE = 0.0004


@pytest.fixture
def narrowband() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Masters of three lines and each line's truth on Ha's levels.

    All share one scene; each adds a nebula of the same size and brightness at its own place,
    so the three have the same histogram (the fit is exact) but say where they landed.
    """
    rng = np.random.default_rng(4)
    scene = mono_scene(rng)
    masters, truths = {}, {}
    for name, (scale, offset, center) in LINES.items():
        own = scene + 0.05 * blob(center, 6)
        truths[name] = own
        noisy = scale * own + offset + rng.normal(0, LINE_NOISE * scale, own.shape)
        masters[name] = noisy.astype(np.float32)
    return masters, truths


# Each fitted line keeps noise 0.0004 on Ha's scale (its noise was made proportional to its
# scale), plus the fit's error (< 1 % of signals up to ~0.55, so < 0.006 at the brightest
# star peaks, far less on the sky): 0.006 still tells the 0.05 nebulae apart.
PALETTE_TOLERANCE = 0.006


def test_sho_puts_sii_ha_oiii_into_r_g_b(
    narrowband: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
) -> None:
    masters, truths = narrowband
    image = combine_palette(masters, Palette.SHO)
    assert image.shape == (SIZE_PX, SIZE_PX, 3)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image[..., 1], masters["Ha"])  # the reference is untouched
    np.testing.assert_allclose(image[..., 0], truths["SII"], atol=PALETTE_TOLERANCE, rtol=0)
    np.testing.assert_allclose(image[..., 2], truths["OIII"], atol=PALETTE_TOLERANCE, rtol=0)
    # The sky of every channel lands on Ha's sky: 5 x the noise of a mean of 1 000 pixels.
    corner = (slice(110, None), slice(0, 20))
    np.testing.assert_allclose(
        image[corner].reshape(-1, 3).mean(axis=0),
        masters["Ha"][corner].mean(),
        atol=5 * LINE_NOISE / np.sqrt(360) + 1e-4,
        rtol=0,
    )


def test_hoo_puts_ha_into_r_and_oiii_into_g_and_b(
    narrowband: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
) -> None:
    masters, truths = narrowband
    by_filter_name = {"H-alpha": masters["Ha"], "O3": masters["OIII"]}
    image = combine_palette(by_filter_name, Palette("HOO"))
    np.testing.assert_array_equal(image[..., 0], masters["Ha"])
    np.testing.assert_array_equal(image[..., 1], image[..., 2])
    np.testing.assert_allclose(image[..., 1], truths["OIII"], atol=PALETTE_TOLERANCE, rtol=0)


def test_a_palette_names_the_missing_channel(
    narrowband: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
) -> None:
    masters, _ = narrowband
    with pytest.raises(ValueError, match=r"^palette SHO needs SII; have Ha, OIII$"):
        combine_palette({"OIII": masters["OIII"], "Ha": masters["Ha"]}, Palette.SHO)
    with pytest.raises(ValueError, match=r"^palette HOO needs Ha, OIII; have SII$"):
        combine_palette({"SII": masters["SII"]}, Palette.HOO)
    with pytest.raises(ValueError, match=r"channel OIII has shape \(128, 127\), Ha has"):
        combine_palette({"Ha": masters["Ha"], "OIII": masters["OIII"][:, :-1]}, Palette.HOO)


# --- FILTER names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_name", "channel"),
    [
        ("R", "R"),
        ("red", "R"),
        ("G", "G"),
        ("Green", "G"),
        ("b", "B"),
        ("BLUE", "B"),
        ("L", "L"),
        ("Lum", "L"),
        ("Luminance", "L"),
        ("Clear", "L"),
        ("Ha", "Ha"),
        ("H-alpha", "Ha"),
        ("Halpha", "Ha"),
        ("H_Alpha", "Ha"),
        ("OIII", "OIII"),
        ("o3", "OIII"),
        ("SII", "SII"),
        ("S2", "SII"),
        (" sii ", "SII"),
        ("Dark", None),
        ("", None),
        ("UV/IR cut", None),
    ],
)
def test_channel_of_maps_filter_names(filter_name: str, channel: str | None) -> None:
    assert channel_of(filter_name) == channel


def test_missing_channels_reads_filter_names_and_palettes() -> None:
    assert missing_channels(["Red", "Green"], LRGB_CHANNELS) == ["L", "B"]
    assert missing_channels(["Ha", "O3"], Palette.SHO) == ["SII"]
    assert missing_channels(["S2"], "HOO") == ["Ha", "OIII"]
    assert missing_channels(["Lum", "R", "G", "B"], LRGB_CHANNELS) == []
    with pytest.raises(ValueError, match="no palette"):
        missing_channels([], "LRGB")


# --- Lab and LRGB ------------------------------------------------------------------------


def test_lab_of_linear_rgb_matches_skimage_and_inverts() -> None:
    rng = np.random.default_rng(5)
    rgb = rng.uniform(0, 1, size=(64, 64, 3))
    xyz_from_rgb = np.array(
        [
            [0.412453, 0.357580, 0.180423],
            [0.212671, 0.715160, 0.072169],
            [0.019334, 0.119193, 0.950227],
        ]
    )
    reference = xyz2lab(rgb @ xyz_from_rgb.T)
    lab = linear_rgb_to_lab(rgb.astype(np.float32))
    # skimage rounds the CIE constants (0.008856, 7.787) and its D65 white differs from the
    # white of the sRGB matrix by 2e-5: < 0.02 on the 0-100 scale of L*.
    np.testing.assert_allclose(lab, reference, atol=0.02, rtol=0)
    # Noisy data around zero (down to -0.01) round-trip too, unclipped: float32 rounding.
    dark = rng.normal(0.002, 0.004, size=(64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(lab_to_linear_rgb(linear_rgb_to_lab(dark)), dark, atol=1e-6)
    grey = np.full((1, 1, 3), 0.3, np.float32)  # equal channels are neutral: a* = b* = 0
    np.testing.assert_allclose(linear_rgb_to_lab(grey)[0, 0, 1:], 0, atol=1e-4)


RGB_NOISE = 0.002
L_NOISE_Y = 0.0005  # four times less than the RGB's, on the scale of the RGB luminance


@pytest.fixture
def lrgb_set() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth, noisy RGB, L): L is the true luminance x 3 + 0.05 (another exposure and sky)."""
    rng = np.random.default_rng(6)
    truth = colour_truth(rng)
    rgb = (truth + rng.normal(0, RGB_NOISE, truth.shape)).astype(np.float32)
    lum = 3.0 * (luminance(truth) + rng.normal(0, L_NOISE_Y, truth.shape[:2])) + 0.05
    return truth, rgb, lum.astype(np.float32)


def test_lrgb_lab_keeps_the_colour_and_takes_the_lightness_of_l(
    lrgb_set: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    truth, rgb, lum = lrgb_set
    image = combine_lrgb(lum, rgb)
    assert image.dtype == np.float32
    assert image.shape == rgb.shape
    # The chrominance is the RGB's own: a*, b* survive the round trip to float32 rounding.
    np.testing.assert_allclose(
        linear_rgb_to_lab(image)[..., 1:], linear_rgb_to_lab(rgb)[..., 1:], atol=2e-3
    )
    # The lightness is L's, fitted to the RGB levels: the error is L's noise (0.0005) and the
    # fit's (< 1 % of the level); far below the RGB luminance noise (0.75 x 0.002 = 0.0015).
    # Measured: 0.000496 against 0.00151 (20 seeds: at most 1.01 x L's noise).
    lightness_error = luminance(image) - luminance(truth)
    rgb_lightness_error = luminance(rgb) - luminance(truth)
    assert np.std(lightness_error) < 1.2 * L_NOISE_Y
    assert np.std(lightness_error) < 0.5 * np.std(rgb_lightness_error)
    # No level jump (L came in 3x brighter on a sky of 0.05): the sky stays where it was, to
    # 0.2 of L's noise sigma (measured 0.03; 20 seeds: at most 0.09).
    assert abs(np.median(lightness_error)) < 0.2 * L_NOISE_Y
    # The colour is the truth's: in the red nebula's core (325 px) the mean R/G and B/G are
    # the truth's to 4 %: the noise of a mean of 325 pixels is ~1 % of the faint B and G, and
    # the nebula's lightness differs between the noisy RGB and L (measured 0.1 %; 20 seeds:
    # at most 3.3 %). A grey result would miss R/G = 4 by 75 %.
    core = blob((40, 40), 12) > 0.7
    for channel in (0, 2):
        ratio = image[core][:, channel].mean() / image[core][:, 1].mean()
        true_ratio = truth[core][:, channel].mean() / truth[core][:, 1].mean()
        np.testing.assert_allclose(ratio, true_ratio, rtol=0.04)
    # Pixel by pixel the result is the truth within the RGB's colour noise, which L does not
    # reduce: blue weighs 7 % in Y, so its noise is nearly all colour. Where L raises a pixel
    # in the cube-root part of L*, fixed a*, b* mean a linear colour difference larger by
    # (new Y / old Y)^(2/3), up to ~1.3 here: 6 sigma x 1.3 ~ 8 sigma (measured 5.9; 20 seeds:
    # at most 7.2).
    np.testing.assert_allclose(image, truth, atol=8 * RGB_NOISE, rtol=0)


def test_lrgb_ratio_keeps_channel_ratios_exactly(
    lrgb_set: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    truth, rgb, lum = lrgb_set
    config = LrgbConfig(method="ratio", ratio_floor=0.001)
    image = combine_lrgb(lum, rgb, config)
    bright = luminance(rgb) > config.ratio_floor
    assert bright.mean() > 0.8  # the sky (~0.0022) is above the floor almost everywhere
    # Above the floor each pixel is the RGB times one gain, new Y / old Y, so the channel
    # ratios are the RGB's: equal to float32 rounding (1e-6 relative, 1e-8 absolute).
    gain = rgb_luminance(image)[bright] / rgb_luminance(rgb)[bright]
    np.testing.assert_allclose(image[bright], rgb[bright] * gain[:, None], rtol=1e-5, atol=1e-8)
    # Y of the result is the fitted L: its error is L's noise, not the RGB's.
    assert np.std(luminance(image) - luminance(truth)) < 1.2 * L_NOISE_Y


@pytest.mark.parametrize("method", ["lab", "ratio"])
def test_lrgb_with_no_weight_on_l_returns_the_rgb(
    lrgb_set: tuple[np.ndarray, np.ndarray, np.ndarray], method: str
) -> None:
    _, rgb, lum = lrgb_set
    image = combine_lrgb(lum, rgb, LrgbConfig(method=method, lightness_weight=0.0))  # type: ignore[arg-type]
    # The Lab round trip in float32: ~1e-7 relative of values up to ~0.5.
    np.testing.assert_allclose(image, rgb, atol=2e-6, rtol=0)


def test_lrgb_chroma_zero_gives_grey(
    lrgb_set: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    _, rgb, lum = lrgb_set
    image = combine_lrgb(lum, rgb, LrgbConfig(chroma=0.0))
    # Equal channels, to float32 rounding of the Lab round trip.
    np.testing.assert_allclose(image, image[..., 1:2].repeat(3, axis=2), atol=2e-6, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "hsl"}, "method"),
        ({"lightness_weight": 1.5}, "lightness_weight"),
        ({"chroma": -0.1}, "chroma"),
        ({"ratio_floor": 0.0}, "ratio_floor"),
    ],
)
def test_lrgb_config_names_the_bad_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LrgbConfig(**kwargs)  # type: ignore[arg-type]


def test_lrgb_names_a_luminance_of_another_shape(
    lrgb_set: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    _, rgb, lum = lrgb_set
    with pytest.raises(ValueError, match="channel L has shape"):
        combine_lrgb(lum[:-1], rgb)


def test_no_function_writes_into_its_inputs(
    lrgb_set: tuple[np.ndarray, np.ndarray, np.ndarray],
    narrowband: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
) -> None:
    _, rgb, lum = lrgb_set
    masters, _ = narrowband
    inputs = [rgb, lum, *masters.values()]
    before = [array.copy() for array in inputs]
    for array in inputs:
        array.flags.writeable = False  # a write would raise, not just be seen afterwards
    combine_rgb(rgb[..., 0], rgb[..., 1], rgb[..., 2])
    linear_fit(masters["OIII"], masters["Ha"])
    fit_to(masters["SII"], masters["Ha"])
    combine_palette(masters, Palette.SHO)
    combine_palette(masters, Palette.HOO)
    rgb_luminance(rgb)
    lab_to_linear_rgb(linear_rgb_to_lab(rgb))
    combine_lrgb(lum, rgb)
    combine_lrgb(lum, rgb, LrgbConfig(method="ratio", chroma=1.5, lightness_weight=0.5))
    for array, copy in zip(inputs, before, strict=True):
        np.testing.assert_array_equal(array, copy)
