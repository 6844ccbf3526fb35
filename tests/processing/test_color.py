"""Background neutralisation and colour calibration on catalog star fields of known colour."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from astropy import units as u
from astropy.modeling.models import BlackBody
from astropy.wcs import WCS

from processing.catalog import load_gaia_stars
from processing.color import (
    BP_RP_RANGE,
    PASSBANDS_NM,
    ColorCalibration,
    ColorCalibrationConfig,
    NeutralizationConfig,
    apply_color_gains,
    background_levels,
    blackbody_ratios,
    color_temperature_k,
    estimate_color_gains,
    expected_channel_ratios,
    neutralize_background,
    wcs_from_header,
)
from processing.solve import Parity, Solution
from processing.synthetic import ColorFieldConfig, color_star_field, tan_wcs

# A camera whose red channel reads 30 % high and blue 30 % low.
TINT = np.array([1.3, 1.0, 0.7], dtype=np.float32)
# The field is rotated so that a swapped x/y or a sign error in the WCS finds no matches.
FIELD = ColorFieldConfig(rotation_deg=30.0)
# The photometric gains may be off by 3 %: a per-star ratio has ~1-2 % noise (SNR >= 20 in
# each channel) and ~100 stars take part, so the repeated-median fit lands well inside.
GAIN_RTOL = 0.03

Image = npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def catalog() -> npt.NDArray[np.void]:
    return load_gaia_stars()


@pytest.fixture(scope="module")
def field(catalog: npt.NDArray[np.void]) -> tuple[Image, WCS]:
    image, wcs = color_star_field(FIELD, catalog)
    # Read-only: a step that wrote into its input would raise instead of passing unseen.
    image.flags.writeable = False
    return image, wcs


@pytest.fixture(scope="module")
def tinted(field: tuple[Image, WCS]) -> Image:
    image = field[0] * TINT
    image.flags.writeable = False
    return image


@pytest.fixture(scope="module")
def photometric(
    field: tuple[Image, WCS], tinted: Image, catalog: npt.NDArray[np.void]
) -> ColorCalibration:
    return estimate_color_gains(tinted, wcs=field[1], catalog=catalog)


@pytest.fixture(scope="module")
def corner(field: tuple[Image, WCS]) -> Image:
    """A quarter of the field: enough background pixels for the neutralisation tests."""
    return field[0][:350, :500]


def catalog_in_frame(catalog: npt.NDArray[np.void], wcs: WCS) -> npt.NDArray[np.intp]:
    """Indices of the catalog stars with a colour that project onto the frame."""
    near = np.flatnonzero(np.abs(catalog["dec_deg"] - FIELD.dec_deg) < 1.5)
    x, y = wcs.world_to_pixel_values(catalog["ra_deg"][near], catalog["dec_deg"][near])
    height, width = FIELD.shape
    on_frame = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    on_frame &= np.isfinite(catalog["bp_mag"][near]) & np.isfinite(catalog["rp_mag"][near])
    indices: npt.NDArray[np.intp] = near[on_frame]
    return indices


def test_colour_temperature_follows_the_dwarf_sequence() -> None:
    # Rows of Pecaut & Mamajek's table: A0V, G2V, K5V, M0V.
    teff = color_temperature_k([-0.037, 0.823, 1.45, 1.84])
    np.testing.assert_allclose(teff, [9700, 5770, 4410, 3870], rtol=1e-9)
    outside = color_temperature_k([BP_RP_RANGE[0] - 0.01, BP_RP_RANGE[1] + 0.01, math.nan])
    assert np.isnan(outside).all()


def test_expected_ratios_are_white_for_the_sun_and_redden_with_colour() -> None:
    r_over_g, b_over_g = expected_channel_ratios(0.823)
    np.testing.assert_allclose([r_over_g, b_over_g], [1.0, 1.0], rtol=1e-12)
    colours = np.linspace(*BP_RP_RANGE, 50)
    r_over_g, b_over_g = expected_channel_ratios(colours)
    assert np.all(np.diff(r_over_g) > 0)
    assert np.all(np.diff(b_over_g) < 0)


@pytest.mark.parametrize("teff_k", [3500.0, 5770.0, 10_000.0])
def test_band_ratios_match_astropys_planck_function(teff_k: float) -> None:
    wavelength = np.arange(400.0, 700.5, 1.0)
    energy = BlackBody(temperature=teff_k * u.K)(wavelength * u.nm)
    energy_per_nm = (energy * (wavelength * u.nm) ** -2).value
    photons = energy_per_nm * wavelength  # photons = energy / (hc / lambda)
    counts = {}
    for band, (low, high) in PASSBANDS_NM.items():
        inside = (wavelength >= low) & (wavelength <= high)
        counts[band] = np.trapezoid(photons[inside], wavelength[inside])
    r_over_g, b_over_g = blackbody_ratios(teff_k)
    # Same grid and rule; only the physical constants' digits differ (hc/k to 7 digits).
    np.testing.assert_allclose(r_over_g, counts["R"] / counts["G"], rtol=1e-5)
    np.testing.assert_allclose(b_over_g, counts["B"] / counts["G"], rtol=1e-5)


def test_rendered_field_holds_enough_catalog_stars(
    field: tuple[Image, WCS], catalog: npt.NDArray[np.void]
) -> None:
    image, wcs = field
    assert image.shape == (*FIELD.shape, 3)
    assert image.dtype == np.float32
    assert image.max() <= 1.0
    assert len(catalog_in_frame(catalog, wcs)) >= 40
    height, width = FIELD.shape
    # The WCS puts the requested position at the centre pixel, +y at the position angle.
    centre = wcs.pixel_to_world_values((width - 1) / 2, (height - 1) / 2)
    np.testing.assert_allclose(centre, (FIELD.ra_deg, FIELD.dec_deg), atol=1e-9)
    cd = wcs.wcs.cd
    assert math.degrees(math.atan2(cd[0, 1], cd[1, 1])) == pytest.approx(FIELD.rotation_deg)
    # Sky noise is photon noise of 0.02 x 20000 e- with 5e-4 read noise: ~0.0011; the median
    # of the frame lies within a few percent of that of the sky level (stars are < 1 % of it).
    np.testing.assert_allclose(np.median(image, axis=(0, 1)), FIELD.sky, atol=2e-4)


def test_photometric_calibration_undoes_a_channel_tint(
    field: tuple[Image, WCS], tinted: Image, photometric: ColorCalibration
) -> None:
    # The fixture ran on the tinted image, which is read-only; its values are as rendered.
    np.testing.assert_array_equal(tinted, field[0] * TINT)
    calibration = photometric
    assert calibration.method == "photometric"
    assert calibration.stars_used >= 40
    np.testing.assert_allclose(np.array(calibration.gains) * TINT, 1.0, rtol=GAIN_RTOL)
    assert calibration.gains[1] == 1.0
    # The rendered stars have exactly the colours the relation predicts, so what scatter
    # remains is photon noise: a few percent at most.
    assert calibration.residual < 0.03
    assert calibration.note == (
        f"photometric: {calibration.stars_used} Gaia stars, "
        f"residual {100 * calibration.residual:.1f} %"
    )


def test_the_fit_shrugs_off_a_quarter_of_wrong_catalog_colours(
    field: tuple[Image, WCS],
    tinted: Image,
    catalog: npt.NDArray[np.void],
    photometric: ColorCalibration,
) -> None:
    """Variables, blends and mismatches give stars wrong expected colours: the repeated
    medians ignore them as long as they are well under half."""
    _, wcs = field
    in_field = catalog_in_frame(catalog, wcs)
    rng = np.random.default_rng(5)
    wrong = rng.choice(in_field, size=len(in_field) // 4, replace=False)
    corrupted = catalog.copy()
    corrupted["bp_mag"][wrong] += rng.choice([-0.6, 0.8], size=len(wrong)).astype(np.float32)
    calibration = estimate_color_gains(tinted, wcs=wcs, catalog=corrupted)
    assert calibration.method == "photometric"
    np.testing.assert_allclose(np.array(calibration.gains) * TINT, 1.0, rtol=GAIN_RTOL)
    # The robust scatter ignores most of the wrong quarter too, but widens (1.0 -> 1.7 %).
    assert calibration.residual > photometric.residual


def test_without_a_plate_solution_the_average_star_is_made_white(
    field: tuple[Image, WCS], tinted: Image
) -> None:
    image, _ = field
    calibration = estimate_color_gains(tinted, wcs=None)
    assert calibration.method == "average star"
    assert calibration.note == (
        "no plate solution: white balance on the average star colour of "
        f"{calibration.stars_used} stars"
    )
    assert calibration.stars_used >= 40
    # The same stars untinted need gains larger by the tint: the median colour is measured
    # alike (2 %: a few stars near saturation drop out in the tinted red channel only).
    untinted = estimate_color_gains(image, wcs=None)
    np.testing.assert_allclose(np.array(calibration.gains) * TINT, untinted.gains, rtol=0.02)


def test_too_few_catalog_stars_fall_back_to_the_average_star(
    catalog: npt.NDArray[np.void],
) -> None:
    small = ColorFieldConfig(shape=(200, 280), rotation_deg=30.0)
    image, wcs = color_star_field(small, catalog)
    calibration = estimate_color_gains(image * TINT, wcs=wcs, catalog=catalog)
    assert calibration.method == "average star"
    assert 0 < calibration.stars_used < 20
    assert "Gaia stars matched, 20 needed: white balance on the average star" in calibration.note


def test_an_image_without_stars_keeps_its_colours(catalog: npt.NDArray[np.void]) -> None:
    rng = np.random.default_rng(3)
    sky = rng.normal(0.02, 0.001, (128, 160, 3)).astype(np.float32)
    wcs = tan_wcs(160.0, -60.0, 6.0, (128, 160))
    calibration = estimate_color_gains(sky, wcs=wcs, catalog=catalog)
    assert calibration.gains == (1.0, 1.0, 1.0)
    assert calibration.stars_used == 0
    assert math.isnan(calibration.residual)
    assert "no usable stars" in calibration.note


def test_apply_color_gains_multiplies_each_channel(tinted: Image) -> None:
    calibration = ColorCalibration(
        gains=(0.5, 1.0, 2.0), method="average star", stars_used=9, residual=0.1, note=""
    )
    before = tinted.copy()
    out = apply_color_gains(tinted, calibration)
    np.testing.assert_array_equal(tinted, before)
    assert out.dtype == np.float32
    # Multiplying float32 by a power of two is exact.
    np.testing.assert_array_equal(out, tinted * np.array([0.5, 1.0, 2.0], dtype=np.float32))


# Per-channel background offsets: a light-polluted, orange sky.
OFFSETS = np.array([0.03, 0.0, 0.006], dtype=np.float32)


def test_background_levels_find_each_channels_sky(corner: Image) -> None:
    levels = background_levels(corner + OFFSETS)
    # Noise is ~0.0011 per pixel; the asymmetric clip (-2.8 / +2.0 sigma) moves the median of
    # pure noise by ~0.03 sigma and the stars cover < 1 % of the pixels: 2e-4 is ~0.2 sigma.
    np.testing.assert_allclose(levels, np.array(FIELD.sky) + OFFSETS, atol=2e-4)


def test_neutralisation_equalises_the_channel_backgrounds(corner: Image) -> None:
    polluted = corner + OFFSETS
    before = polluted.copy()
    out = neutralize_background(polluted)
    np.testing.assert_array_equal(polluted, before)
    assert out.dtype == np.float32
    medians = np.median(out, axis=(0, 1))
    # Within 1 % of one another, as the background levels are measured to ~0.2 sigma.
    np.testing.assert_allclose(medians, medians.mean(), rtol=0.01)
    # The mean background stays where it was; each channel only moves by a constant.
    levels = background_levels(polluted)
    np.testing.assert_allclose(background_levels(out), levels.mean(), atol=1e-6)
    shift = out - polluted
    np.testing.assert_allclose(shift, shift[:1, :1, :] * np.ones_like(shift), atol=1e-6)


def test_a_mono_image_is_its_own_neutral_background() -> None:
    rng = np.random.default_rng(8)
    mono = rng.normal(0.05, 0.002, (64, 80, 1)).astype(np.float32)
    np.testing.assert_array_equal(neutralize_background(mono), mono)


@pytest.mark.parametrize("shape", [(64, 80), (64, 80, 2), (64, 80, 4)])
def test_images_of_the_wrong_shape_are_refused(shape: tuple[int, ...]) -> None:
    image = np.zeros(shape, dtype=np.float32)
    with pytest.raises(ValueError, match=r"\(y, x, 1\) or \(y, x, 3\)"):
        neutralize_background(image)


def test_colour_calibration_needs_three_channels() -> None:
    mono = np.zeros((64, 80, 1), dtype=np.float32)
    with pytest.raises(ValueError, match="RGB"):
        estimate_color_gains(mono, wcs=None)
    gains = ColorCalibration((1.0, 1.0, 1.0), "average star", 0, math.nan, "")
    with pytest.raises(ValueError, match="RGB"):
        apply_color_gains(mono, gains)


@pytest.mark.parametrize(
    ("make", "field_name"),
    [
        (lambda: NeutralizationConfig(low_sigma=0.0), "low_sigma"),
        (lambda: NeutralizationConfig(high_sigma=-1.0), "high_sigma"),
        (lambda: NeutralizationConfig(iterations=0), "iterations"),
        (lambda: ColorCalibrationConfig(min_stars=1), "min_stars"),
        (lambda: ColorCalibrationConfig(match_radius_px=0.0), "match_radius_px"),
        (lambda: ColorCalibrationConfig(max_magnitude=math.inf), "max_magnitude"),
        (lambda: ColorCalibrationConfig(saturation=1.5), "saturation"),
        (lambda: ColorCalibrationConfig(min_snr=-1.0), "min_snr"),
        (lambda: ColorCalibrationConfig(aperture_hfr=0.0), "aperture_hfr"),
        (lambda: ColorCalibrationConfig(annulus=(2.0, 1.5)), "annulus"),
        (lambda: ColorFieldConfig(scale_arcsec_px=0.0), "scale_arcsec_px"),
    ],
)
def test_configs_name_the_bad_field(make: object, field_name: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match=field_name):
        make()


def test_wcs_round_trips_through_the_solvers_header_cards() -> None:
    shape = (480, 640)
    wcs = tan_wcs(83.8, -5.4, 1.9, shape, rotation_deg=123.0)
    solution = Solution(
        ra_deg=83.8,
        dec_deg=-5.4,
        scale_arcsec_px=1.9,
        rotation_deg=123.0,
        parity=Parity.NORMAL,
        wcs=wcs,
        matched=30,
        residual_arcsec=0.5,
        seconds=1.0,
        engine="tetra3rs",
    )
    header = {keyword: value for keyword, value, _ in solution.fits_cards()}
    header["EXPTIME"] = 120.0
    restored = wcs_from_header(header)
    assert restored is not None
    x = np.array([0.0, 639.0, 320.5, 17.25])
    y = np.array([0.0, 479.0, 240.0, 401.75])
    # Both evaluate the same TAN projection from the same numbers: agreement to rounding.
    np.testing.assert_allclose(
        restored.pixel_to_world_values(x, y), wcs.pixel_to_world_values(x, y), atol=1e-10
    )


@pytest.mark.parametrize(
    "header",
    [
        {},
        {"EXPTIME": 120.0, "OBJECT": "M42"},
        {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 10.0, "CRVAL2": 20.0},
        {
            "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 10.0, "CRVAL2": 20.0,
            "CRPIX1": 1.0, "CRPIX2": 1.0, "CD1_1": "junk", "CD1_2": 0.0, "CD2_1": 0.0,
            "CD2_2": 1e-3,
        },
    ],
)  # fmt: skip
def test_headers_without_a_usable_wcs_give_none(header: dict[str, object]) -> None:
    assert wcs_from_header(header) is None
