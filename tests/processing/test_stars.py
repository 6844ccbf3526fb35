"""Star detection and frame quality on seeded synthetic frames with known stars and sky.

Frames are 512 x 640 uint16: a flat sky of 1000 e- (gain 1 e-/ADU, Poisson) over a 300 ADU
pedestal with 5 ADU read noise, and circular or elongated Gaussian stars integrated over each
pixel at known sub-pixel positions. For a Gaussian of sigma s the half-flux radius is
s sqrt(2 ln 2) and the FWHM 2 s sqrt(2 ln 2).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from processing.stars import (
    StarConfig,
    StarTable,
    detect_stars,
    measure_frame,
    plate_scale_arcsec_px,
)

SHAPE = (512, 640)
PEDESTAL_ADU = 300.0
SKY_ADU = 1000.0
READ_NOISE_ADU = 5.0
SATURATION_ADU = 65535.0
SQRT_2LN2 = math.sqrt(2.0 * math.log(2.0))
# Pixel sampling widens what any pixel-based measurement sees: the detector integrates the star
# over each pixel (+1/12 px^2 of variance) and sep.flux_radius spreads each pixel's value evenly
# over its area (+1/12 px^2 again). The HFR sep can measure is that of sigma^2 + 1/6 px^2.
PIXEL_VARIANCE_PX2 = 1.0 / 6.0


def pixel_integrated(center: float, sigma: float, start: int, stop: int) -> npt.NDArray[np.float64]:
    """Fraction of a unit 1-D Gaussian falling in each pixel start..stop-1 (edges at +-0.5)."""
    edges = np.arange(start, stop + 1) - 0.5
    cdf = [0.5 * math.erf((edge - center) / (sigma * math.sqrt(2.0))) for edge in edges]
    return np.diff(cdf)


def render_field(
    rng: np.random.Generator,
    yx: npt.NDArray[np.float64],
    flux_e: npt.NDArray[np.float64] | float,
    sigma_yx_px: tuple[float, float] = (2.0, 2.0),
    sky_e: float = SKY_ADU,
) -> npt.NDArray[np.uint16]:
    """A uint16 frame with Gaussian stars of total `flux_e` at `yx`, clipped like a camera."""
    height, width = SHAPE
    sigma_y, sigma_x = sigma_yx_px
    half_y, half_x = math.ceil(8 * sigma_y), math.ceil(8 * sigma_x)
    expected = np.full(SHAPE, sky_e)
    for (y, x), flux in zip(yx, np.broadcast_to(flux_e, len(yx)), strict=True):
        y0, y1 = max(0, round(y) - half_y), min(height, round(y) + half_y + 1)
        x0, x1 = max(0, round(x) - half_x), min(width, round(x) + half_x + 1)
        profile = np.outer(
            pixel_integrated(y, sigma_y, y0, y1), pixel_integrated(x, sigma_x, x0, x1)
        )
        expected[y0:y1, x0:x1] += flux * profile
    adu = rng.poisson(expected) + rng.normal(PEDESTAL_ADU, READ_NOISE_ADU, SHAPE)
    return np.clip(np.round(adu), 0, SATURATION_ADU).astype(np.uint16)


def grid_positions(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """80 well separated (y, x) positions, 60 px apart, with random sub-pixel offsets."""
    grid_y, grid_x = np.meshgrid(
        np.arange(40, 512 - 40, 60), np.arange(40, 640 - 40, 60), indexing="ij"
    )
    grid = np.column_stack([grid_y.ravel(), grid_x.ravel()]).astype(np.float64)
    return grid + rng.uniform(-0.5, 0.5, grid.shape)


def nearest(stars: StarTable, truth_yx: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """Index of the true star nearest to each detection."""
    found = np.column_stack([stars.y, stars.x])
    distance = np.linalg.norm(found[:, None, :] - truth_yx[None, :, :], axis=2)
    index: npt.NDArray[np.intp] = np.argmin(distance, axis=1)
    return index


@pytest.fixture(scope="module")
def truth_yx() -> npt.NDArray[np.float64]:
    return grid_positions(np.random.default_rng(1))


@pytest.fixture(scope="module")
def round_field(truth_yx: npt.NDArray[np.float64]) -> npt.NDArray[np.uint16]:
    """80 bright round stars, sigma 2 px, 50,000 e- each (peak ~2,000 ADU over the sky)."""
    return render_field(np.random.default_rng(2), truth_yx, 50_000.0)


def test_known_positions_are_recovered_to_sub_pixel(
    round_field: npt.NDArray[np.uint16], truth_yx: npt.NDArray[np.float64]
) -> None:
    stars = detect_stars(round_field)
    assert len(stars) == len(truth_yx)
    match = nearest(stars, truth_yx)
    assert len(set(match.tolist())) == len(truth_yx), "two detections matched one star"
    # At SNR ~200 a windowed centroid scatters by ~sigma sqrt(2) / SNR = 0.015 px per axis;
    # 0.1 px is 6 x that and still 5 x finer than an integer-pixel centroid could be.
    np.testing.assert_allclose(stars.y, truth_yx[match, 0], atol=0.1)
    np.testing.assert_allclose(stars.x, truth_yx[match, 1], atol=0.1)


@pytest.mark.parametrize("sigma_px", [1.2, 2.0, 3.0])
def test_known_hfr_and_fwhm_are_recovered(
    truth_yx: npt.NDArray[np.float64], sigma_px: float
) -> None:
    frame = render_field(np.random.default_rng(3), truth_yx, 50_000.0, (sigma_px, sigma_px))
    quality = measure_frame(frame, saturation_adu=SATURATION_ADU)
    sampled_sigma_px = math.sqrt(sigma_px**2 + PIXEL_VARIANCE_PX2)
    assert quality.hfr_px is not None
    assert quality.fwhm_px is not None
    # The truth once pixel sampling is counted (+3.6 % at sigma 1.2, +1 % at 3); what is left
    # is the noise of a median of 80 HFRs (~0.3 %) and background error: 1 % covers both.
    np.testing.assert_allclose(quality.hfr_px, SQRT_2LN2 * sampled_sigma_px, rtol=0.01)
    np.testing.assert_allclose(quality.fwhm_px, 2 * SQRT_2LN2 * sampled_sigma_px, rtol=0.01)
    # Against the Gaussian's own HFR: pixel sampling (+5.6 % at sigma 1.2 px, +0.9 % at 3 px)
    # plus the 1 % above.
    np.testing.assert_allclose(quality.hfr_px, SQRT_2LN2 * sigma_px, rtol=0.07)


def test_trailed_stars_are_eccentric_and_round_stars_are_not(
    round_field: npt.NDArray[np.uint16], truth_yx: npt.NDArray[np.float64]
) -> None:
    trailed = render_field(np.random.default_rng(4), truth_yx, 50_000.0, (1.5, 4.0))
    trailed_quality = measure_frame(trailed, saturation_adu=SATURATION_ADU)
    round_quality = measure_frame(round_field, saturation_adu=SATURATION_ADU)
    assert trailed_quality.eccentricity is not None
    assert round_quality.eccentricity is not None
    # Truth sqrt(1 - (1.5 / 4)^2) = 0.927 along x; pixel sampling widens the short axis more
    # (0.925) and the isophotal moments of noisy pixels lower it by ~0.02: 0.03 covers both.
    np.testing.assert_allclose(
        trailed_quality.eccentricity, math.sqrt(1 - (1.5 / 4.0) ** 2), atol=0.03
    )
    # Round stars have eccentricity 0; the moments of ~30 noisy pixels per star give ~0.2.
    assert round_quality.eccentricity < 0.3


def test_clouds_dimming_stars_20x_leave_far_fewer_stars(
    truth_yx: npt.NDArray[np.float64],
) -> None:
    flux_e = np.exp(np.random.default_rng(5).uniform(math.log(1e4), math.log(2e5), len(truth_yx)))
    clear = measure_frame(
        render_field(np.random.default_rng(6), truth_yx, flux_e), saturation_adu=SATURATION_ADU
    )
    cloudy = measure_frame(
        render_field(np.random.default_rng(7), truth_yx, flux_e / 20), saturation_adu=SATURATION_ADU
    )
    assert clear.star_count == len(truth_yx)
    # 20 x dimmer is 3.3 magnitudes: only the brightest third of a 1e4..2e5 e- spread stays
    # above 5 sigma, so well under half the stars remain.
    assert cloudy.star_count < 0.5 * clear.star_count


def test_saturated_fraction_counts_saturated_pixels(round_field: npt.NDArray[np.uint16]) -> None:
    assert not (round_field >= SATURATION_ADU).any(), "the field itself must not saturate"
    frame = round_field.copy()
    frame[100:110, 200:220] = 65535
    quality = measure_frame(frame, saturation_adu=SATURATION_ADU)
    # Counting pixels is exact: 200 saturated of 512 x 640; rtol only absorbs float rounding.
    np.testing.assert_allclose(quality.saturated_fraction, 200 / (512 * 640), rtol=1e-12)


def test_saturated_stars_count_but_stay_out_of_the_medians(
    truth_yx: npt.NDArray[np.float64],
) -> None:
    """Three stars in five at 2e7 e- clip at 65535: flat tops, so their HFR reads too wide."""
    flux_e = np.where(np.arange(len(truth_yx)) % 5 < 3, 2e7, 5e4)
    frame = render_field(np.random.default_rng(8), truth_yx, flux_e)
    stars = detect_stars(frame)
    quality = measure_frame(frame, saturation_adu=SATURATION_ADU)
    saturated = stars.peak_adu >= SATURATION_ADU
    assert saturated.sum() == 48
    assert quality.star_count == len(truth_yx)
    expected_hfr_px = SQRT_2LN2 * math.sqrt(2.0**2 + PIXEL_VARIANCE_PX2)
    # The clipped stars would have moved the median by > 50 %; the unsaturated 32 stay within
    # the 1 % of the HFR test above (with fewer stars: 2 %).
    assert np.median(stars.hfr_px[saturated]) > 1.5 * expected_hfr_px
    assert quality.hfr_px is not None
    np.testing.assert_allclose(quality.hfr_px, expected_hfr_px, rtol=0.02)


def test_background_and_noise_match_the_sky(round_field: npt.NDArray[np.uint16]) -> None:
    quality = measure_frame(round_field, saturation_adu=SATURATION_ADU)
    # sep's clipped-mode sky over 327,680 pixels is good to a fraction of an ADU; 2 ADU (0.15 %)
    # leaves room for the faint star wings inside the background boxes.
    np.testing.assert_allclose(quality.background_adu, PEDESTAL_ADU + SKY_ADU, atol=2.0)
    # Truth sqrt(1000 + 5^2) = 32.0 ADU; sep's 3-sigma clipping trims ~1.3 % of a Gaussian's RMS.
    np.testing.assert_allclose(quality.noise_adu, math.sqrt(SKY_ADU + READ_NOISE_ADU**2), rtol=0.03)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
def test_input_is_not_modified_and_dtype_does_not_matter(
    round_field: npt.NDArray[np.uint16], dtype: type[np.generic]
) -> None:
    """float32 C-contiguous is the case where a careless ascontiguousarray would alias."""
    frame = round_field.astype(dtype)
    before = frame.copy()
    stars = detect_stars(frame)
    measure_frame(frame, saturation_adu=SATURATION_ADU)
    np.testing.assert_array_equal(frame, before)
    assert frame.dtype == before.dtype
    reference = detect_stars(round_field)
    # Every dtype goes through the same float32 copy, so the results are the same numbers.
    np.testing.assert_allclose(stars.hfr_px, reference.hfr_px, rtol=1e-12)
    np.testing.assert_allclose(stars.x, reference.x, rtol=1e-12)


def test_a_non_contiguous_view_is_measured_like_its_copy(
    round_field: npt.NDArray[np.uint16],
) -> None:
    view = round_field[::-1, :]
    assert not view.flags.c_contiguous
    np.testing.assert_allclose(detect_stars(view).flux, detect_stars(view.copy()).flux, rtol=1e-12)


def test_an_empty_frame_has_no_stars_and_no_medians() -> None:
    frame = render_field(np.random.default_rng(9), np.empty((0, 2)), 0.0)
    stars = detect_stars(frame)
    quality = measure_frame(frame, saturation_adu=SATURATION_ADU)
    assert len(stars) == 0
    assert quality.star_count == 0
    assert quality.hfr_px is None
    assert quality.fwhm_px is None
    assert quality.eccentricity is None
    # The sky is still measured: same 2 ADU as for the starry field.
    np.testing.assert_allclose(quality.background_adu, PEDESTAL_ADU + SKY_ADU, atol=2.0)


def test_stars_near_the_edge_are_dropped() -> None:
    yx = np.array([[3.2, 300.4], [250.3, 636.1], [250.6, 300.2]])
    frame = render_field(np.random.default_rng(10), yx, 50_000.0)
    assert len(detect_stars(frame)) == 1
    assert len(detect_stars(frame, StarConfig(edge_margin_px=0))) == 3


def test_max_stars_keeps_the_brightest(truth_yx: npt.NDArray[np.float64]) -> None:
    """Fluxes 6 % apart from star to star: far more than the ~1 % noise of a flux at SNR 200."""
    flux_e = np.geomspace(1e4, 1e6, len(truth_yx))
    frame = render_field(np.random.default_rng(11), truth_yx, flux_e)
    brightest = detect_stars(frame, StarConfig(max_stars=10))
    assert len(brightest) == 10
    np.testing.assert_array_equal(nearest(brightest, truth_yx), np.arange(79, 69, -1))


def test_a_close_neighbour_does_not_widen_or_pull_a_star() -> None:
    """Two equal stars 7 px apart (3.5 sigma): deblended, each measured with the other masked."""
    yx = np.array([[200.2, 300.0], [200.2, 307.0]])
    frame = render_field(np.random.default_rng(12), yx, 50_000.0)
    stars = detect_stars(frame)
    assert len(stars) == 2
    order = np.argsort(stars.x)
    # Unmasked, each aperture holds both stars and the HFR nearly doubles; masked, the cut
    # through the shared wings costs a few %: 6 %.
    np.testing.assert_allclose(
        stars.hfr_px, SQRT_2LN2 * math.sqrt(4.0 + PIXEL_VARIANCE_PX2), rtol=0.06
    )
    # sep.winpos's window would be pulled ~0.5 px towards the neighbour (0.47 px RMS over 100
    # seeds). The deblended isophotal barycentre is pulled ~0.1 px by the neighbour's wing
    # light in the star's own pixels and scatters by ~0.07 px per axis (noisy isophote and
    # deblending cut): bias + 4 sigma is 0.35 px along the pair, 0.3 px across it.
    np.testing.assert_allclose(stars.x[order], yx[:, 1], atol=0.35)
    np.testing.assert_allclose(stars.y[order], yx[:, 0], atol=0.3)


def test_a_star_in_an_over_subtracted_hole_is_dropped() -> None:
    """A dark ring (an under-corrected dust donut) makes the aperture sum negative."""
    yx = np.array([[200.3, 300.6]])
    frame = render_field(np.random.default_rng(13), yx, 5_000.0, (1.0, 1.0)).astype(np.float64)
    assert len(detect_stars(frame)) == 1
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    radius = np.hypot(yy - yx[0, 0], xx - yx[0, 1])
    frame[(radius > 3) & (radius < 8)] -= 300.0
    assert len(detect_stars(frame)) == 0


def test_plate_scale() -> None:
    # 3.76 um pixels at 530 mm: 206.265 x 3.76 / 530 = 1.4633 arcsec/px; binning scales it.
    np.testing.assert_allclose(plate_scale_arcsec_px(3.76, 530.0), 1.46332, rtol=1e-5)
    np.testing.assert_allclose(plate_scale_arcsec_px(3.76, 530.0, binning=2), 2.92664, rtol=1e-5)
    with pytest.raises(ValueError, match="focal length"):
        plate_scale_arcsec_px(3.76, 0.0)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="2-D"):
        detect_stars(np.zeros((3, 64, 64), dtype=np.uint16))
    with pytest.raises(ValueError, match="threshold_sigma"):
        StarConfig(threshold_sigma=0.0)
    with pytest.raises(ValueError, match="differ in length"):
        StarTable(*(np.zeros(2),) * 6, peak_adu=np.zeros(3))


def test_a_satellite_trail_is_not_a_star(
    round_field: npt.NDArray[np.uint16], truth_yx: npt.NDArray[np.float64]
) -> None:
    """A trail is one long object (sep's a of ~300 px): not in the list, and the stars
    beside it keep their positions and count."""
    trailed = round_field.astype(np.float64)
    rows = np.arange(SHAPE[1]) * 0.35 + 20.0
    for offset in (-1, 0, 1):
        trailed[np.round(rows).astype(int) + offset, np.arange(SHAPE[1])] += 400.0
    stars = detect_stars(np.clip(trailed, 0, SATURATION_ADU).astype(np.uint16))
    match = nearest(stars, truth_yx)
    distance = np.hypot(stars.y - truth_yx[match, 0], stars.x - truth_yx[match, 1])
    assert distance.max() < 0.5, "a detection that is not one of the stars"
    # Stars the trail crosses merge with it and go with it; every other star is found.
    clear = np.abs(truth_yx[:, 0] - (truth_yx[:, 1] * 0.35 + 20.0)) > 10.0
    assert set(np.flatnonzero(clear)) <= set(match.tolist())
    assert stars.hfr_px.max() < 3 * np.median(stars.hfr_px)
