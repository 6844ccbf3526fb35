"""The guider's pure parts with known truth: star selection and tracking, calibration solving,
the axis controllers, the RMS window, the event fan-out, and a closed loop of all of them on a
simulated sky."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from drivers.base import GuideDirection, GuidePulse, GuiderFault, PierSide
from drivers.guider import AxisSettings, Calibration, calibration_from_guide_rates
from drivers.guider.calibration import fit_axis, pulse_direction
from drivers.guider.control import AxisController, GuideController, RmsWindow
from drivers.guider.errors import CalibrationFailed
from drivers.guider.events import Subscribers
from drivers.guider.stars import (
    GuideStars,
    Matcher,
    SelectionConfig,
    find_pattern,
    locate,
    refine_centroids,
    select_guide_stars,
)
from processing.stars import StarTable, detect_stars

SHAPE = (768, 1024)
SATURATION_ADU = 20_000.0


def table(y: list[float], x: list[float], flux: list[float], peak: list[float]) -> StarTable:
    n = len(y)
    return StarTable(
        y=np.array(y, dtype=np.float64),
        x=np.array(x, dtype=np.float64),
        flux=np.array(flux, dtype=np.float64),
        hfr_px=np.full(n, 1.0),
        fwhm_px=np.full(n, 2.0),
        eccentricity=np.zeros(n),
        peak_adu=np.array(peak, dtype=np.float64),
    )


def field(seed: int, n: int = 8) -> StarTable:
    """`n` well-separated stars inside the selection margin, brightest first."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(60, SHAPE[0] - 60, n)
    x = rng.uniform(60, SHAPE[1] - 60, n)
    flux = np.sort(rng.uniform(1e4, 1e5, n))[::-1]
    return table(list(y), list(x), list(flux), [5000.0] * n)


def guide_stars_of(stars: StarTable) -> GuideStars:
    return GuideStars(stars.y, stars.x, stars.flux, np.zeros(len(stars), dtype=bool))


def moved(stars: StarTable, dy: float, dx: float, noise_px: float, seed: int) -> StarTable:
    rng = np.random.default_rng(seed)
    n = len(stars)
    return table(
        list(stars.y + dy + rng.normal(0, noise_px, n)),
        list(stars.x + dx + rng.normal(0, noise_px, n)),
        list(stars.flux),
        list(stars.peak_adu),
    )


def test_selection_skips_edges_neighbours_and_puts_saturated_last() -> None:
    stars = table(
        y=[100, 400, 405, 10, 300, 600, 200],
        x=[100, 500, 503, 500, 800, 300, 600],
        flux=[9e4, 8e4, 7e4, 6e4, 5e4, 4e4, 3e4],
        peak=[20_300, 9000, 9000, 9000, 9000, 9000, 19_500],
    )
    chosen = select_guide_stars(stars, SHAPE, SATURATION_ADU, SelectionConfig(max_stars=4))
    # (400, 500) and (405, 503) are a pair: neither is isolated; (10, 500) is at the edge.
    # Unsaturated by flux first (300, 800) then (600, 300); then saturated by flux.
    np.testing.assert_array_equal(chosen.y, [300, 600, 100, 200])
    np.testing.assert_array_equal(chosen.saturated, [False, False, True, True])
    assert chosen.primary == (300.0, 800.0)


def test_selection_of_an_empty_frame_is_empty() -> None:
    empty = table([], [], [], [])
    assert len(select_guide_stars(empty, SHAPE, SATURATION_ADU)) == 0


def gaussian_frame(stars: list[tuple[float, float]], sigma_px: float) -> np.ndarray:
    """Pixel-integrated Gaussian stars (10^5 ADU each) on a flat 300 ADU sky, float64."""
    from math import erf, sqrt

    def integrated(edges: np.ndarray, centre: float) -> np.ndarray:
        cdf = np.array([0.5 * (1 + erf((e - centre) / (sqrt(2) * sigma_px))) for e in edges])
        return np.diff(cdf)

    frame = np.full(SHAPE, 300.0)
    for y, x in stars:
        rows = integrated(np.arange(SHAPE[0] + 1) - 0.5, y)
        cols = integrated(np.arange(SHAPE[1] + 1) - 0.5, x)
        frame += 1e5 * np.outer(rows, cols)
    return frame


@pytest.mark.parametrize(("sigma_px", "atol_px"), [(0.35, 0.05), (0.6, 0.01)])
def test_refined_centroids_of_small_stars_follow_sub_pixel_positions(
    sigma_px: float, atol_px: float
) -> None:
    truth = [(100.3, 200.7), (400.55, 600.1), (650.0, 900.45), (300.15, 100.85)]
    rng = np.random.default_rng(13)
    frame = gaussian_frame(truth, sigma_px) + rng.normal(0.0, 5.0, SHAPE)
    before = frame.copy()
    detected = detect_stars(frame)
    refined = refine_centroids(frame, detected)
    found = [int(np.argmin(np.hypot(detected.y - y, detected.x - x))) for y, x in truth]
    sep_error = np.hypot(
        detected.y[found] - [t[0] for t in truth], detected.x[found] - [t[1] for t in truth]
    )
    error = np.hypot(
        refined.y[found] - [t[0] for t in truth], refined.x[found] - [t[1] for t in truth]
    )
    # A star narrower than a pixel leans towards its pixel's centre in any moment (pixel-phase
    # bias): up to ~0.04 px at sigma 0.35 px, nothing left at 0.6 px. sep's windowed position
    # leans much further (0.26 px and 0.06 px here).
    assert error.max() < atol_px
    assert error.max() < 0.5 * sep_error.max()
    np.testing.assert_array_equal(frame, before)


def test_wide_stars_and_stars_at_the_border_keep_their_detected_positions() -> None:
    frame = gaussian_frame([(300.3, 400.6), (1.2, 500.0)], 1.2)
    stars = table([300.31, 1.0], [400.62, 500.0], [1e5, 1e5], [5000.0, 5000.0])
    wide = replace(stars, hfr_px=np.array([1.41, 0.5]))
    refined = refine_centroids(frame, wide)
    np.testing.assert_array_equal(refined.y, wide.y)
    np.testing.assert_array_equal(refined.x, wide.x)


def test_locate_averages_the_stars_and_drops_an_outlier() -> None:
    reference = field(1)
    now = moved(reference, 2.3, -1.7, noise_px=0.3, seed=2)
    # One star jumps by 3 px (a wrong match, a cosmic ray next to it); one is gone.
    y, x = now.y.copy(), now.x.copy()
    y[3] += 3.0
    now = table(list(np.delete(y, 5)), list(np.delete(x, 5)), [1e4] * 7, [5000.0] * 7)
    fix = locate(
        guide_stars_of(reference),
        now,
        (2.0, -2.0),
        search_radius_px=10.0,
        outlier_px=1.5,
        required=4,
    )
    assert fix is not None
    assert fix.matched == 6
    # Mean of 6 centroids with 0.3 px noise: sigma 0.12 px; 0.4 px is over 3 sigma.
    np.testing.assert_allclose((fix.dy, fix.dx), (2.3, -1.7), atol=0.4)


def test_locate_gives_up_when_too_few_stars_are_near() -> None:
    reference = field(3)
    far = moved(reference, 40.0, 0.0, noise_px=0.0, seed=4)
    fix = locate(
        guide_stars_of(reference), far, (0.0, 0.0), search_radius_px=10, outlier_px=1.5, required=4
    )
    assert fix is None


def test_pattern_search_finds_the_stars_after_a_big_jump_among_strangers() -> None:
    reference = field(5, n=6)
    jumped = moved(reference, -150.0, 220.0, noise_px=0.2, seed=6)
    strangers = field(7, n=20)
    frame = table(
        list(np.concatenate([jumped.y, strangers.y])),
        list(np.concatenate([jumped.x, strangers.x])),
        list(np.concatenate([jumped.flux, strangers.flux])),
        [5000.0] * 26,
    )
    fix = find_pattern(guide_stars_of(reference), frame, tolerance_px=2.0, required=3)
    assert fix is not None
    # 6 centroids with 0.2 px noise: a few strangers can fall near but the mean holds to 0.3.
    np.testing.assert_allclose((fix.dy, fix.dx), (-150.0, 220.0), atol=0.3)
    assert fix.matched >= 5


def test_pattern_search_does_not_match_a_lone_star_or_another_field() -> None:
    reference = guide_stars_of(field(8, n=6))
    assert find_pattern(reference, field(9, n=30), tolerance_px=2, required=3) is None
    lone = table([300.0], [400.0], [1e4], [5000.0])
    assert find_pattern(guide_stars_of(lone), field(10), tolerance_px=2, required=1) is None


def test_matcher_tracks_near_the_prediction_else_by_pattern() -> None:
    reference = guide_stars_of(field(11, n=6))
    jumped = moved(field(11, n=6), 60.0, -45.0, noise_px=0.1, seed=12)
    matcher = Matcher(
        search_radius_px=10.0, outlier_px=1.5, reacquire_tolerance_px=2.0, min_matched_fraction=0.5
    )
    assert matcher.near(reference, jumped, (0.0, 0.0)) is None
    # 0.1 px noise on 6 stars: the means hold to well under 0.2 px.
    for fix in (
        matcher.near(reference, jumped, (58.0, -44.0)),
        matcher.anywhere(reference, jumped),
        matcher.track(reference, jumped, (0.0, 0.0)),
    ):
        assert fix is not None
        np.testing.assert_allclose((fix.dy, fix.dx), (60.0, -45.0), atol=0.2)


def truth_calibration() -> Calibration:
    """A rotated camera (33 deg) with axes 3 deg off perpendicular and unequal rates."""
    ra, dec = math.radians(33.0), math.radians(33.0 + 93.0)
    return Calibration(
        ra_px_s=(1.8 * math.sin(ra), 1.8 * math.cos(ra)),
        dec_px_s=(2.4 * math.sin(dec), 2.4 * math.cos(dec)),
        declination_deg=41.0,
        pier_side=PierSide.WEST,
    )


def test_fit_axis_recovers_velocity_from_noisy_steps() -> None:
    truth = truth_calibration()
    rng = np.random.default_rng(11)
    times = [0.0, 1100.0, 2200.0, 3300.0, 4400.0]
    positions = [
        (truth.ra_px_s[0] * t / 1000 + rng.normal(0, 0.1), truth.ra_px_s[1] * t / 1000)
        for t in times
    ]
    vy, vx = fit_axis(times, positions)
    # 0.1 px noise over an 8 px leg of 5 points: slope error ~0.5 %; 2 % is generous.
    np.testing.assert_allclose(math.hypot(vy, vx), 1.8, rtol=0.02)
    np.testing.assert_allclose(math.degrees(math.atan2(vy, vx)), 33.0, atol=1.0)
    with pytest.raises(CalibrationFailed):
        fit_axis([0.0], [(0.0, 0.0)])


def test_calibration_geometry_round_trips() -> None:
    cal = truth_calibration()
    assert cal.ra_angle_deg == pytest.approx(33.0)
    assert cal.dec_angle_deg == pytest.approx(126.0)
    assert cal.orthogonality_error_deg == pytest.approx(3.0)
    # Pulses computed for an axis move reproduce that move (non-orthogonal axes included).
    west_ms, north_ms = cal.pulses_ms(1.5, -0.7)
    dy, dx = cal.motion_px(west_ms, north_ms)
    assert cal.axis_components(dy, dx) == pytest.approx((1.5, -0.7))
    np.testing.assert_allclose(west_ms, 1000 * 1.5 / 1.8)

    south = cal.for_declination(70.0)
    ratio = math.cos(math.radians(70.0)) / math.cos(math.radians(41.0))
    assert south.ra_rate_px_s == pytest.approx(1.8 * ratio)
    assert south.dec_rate_px_s == pytest.approx(2.4)
    assert not south.measured

    flipped = cal.for_pier_side(PierSide.EAST)
    assert flipped.ra_px_s == pytest.approx((-cal.ra_px_s[0], -cal.ra_px_s[1]))
    assert flipped.dec_px_s == pytest.approx((-cal.dec_px_s[0], -cal.dec_px_s[1]))
    assert cal.for_pier_side(PierSide.UNKNOWN) is cal

    with pytest.raises(ValueError, match="parallel"):
        Calibration((1.0, 0.0), (2.0, 0.1), 0.0, PierSide.EAST)


def test_calibration_from_guide_rates_points_the_axes_from_the_sky_angles() -> None:
    rate = 0.5 * 15.041 / 3600.0
    # North towards -y and east towards -x (the simulator's sky): a North pulse moves stars
    # towards +y (south), a West pulse towards -x (east).
    cal = calibration_from_guide_rates(
        north_angle_deg=-90.0,
        east_angle_deg=180.0,
        guide_rate_ra_deg_s=rate,
        guide_rate_dec_deg_s=rate,
        pixel_scale_arcsec_px=3.094,
        declination_deg=60.0,
        pier_side=PierSide.UNKNOWN,
    )
    assert cal.dec_angle_deg == pytest.approx(90.0)
    assert abs(cal.ra_angle_deg) == pytest.approx(180.0)
    assert cal.dec_rate_px_s == pytest.approx(7.5205 / 3.094, rel=1e-4)
    assert cal.ra_rate_px_s == pytest.approx(0.5 * 7.5205 / 3.094, rel=1e-4)


def test_pulse_directions() -> None:
    assert pulse_direction(10, ra=True) is GuideDirection.WEST
    assert pulse_direction(-10, ra=True) is GuideDirection.EAST
    assert pulse_direction(10, ra=False) is GuideDirection.NORTH
    assert pulse_direction(-10, ra=False) is GuideDirection.SOUTH


def test_axis_controller_min_move_aggressiveness_hysteresis_and_limit() -> None:
    controller = AxisController(
        AxisSettings(aggressiveness=0.5, min_move_px=0.2, hysteresis=0.25, max_pulse_ms=800)
    )
    assert controller.correction_px(0.1) == 0.0
    assert controller.correction_px(2.0) == pytest.approx(0.5 * 0.75 * 2.0)
    # The previous correction (0.75) is blended in.
    assert controller.correction_px(1.0) == pytest.approx(0.5 * (0.75 * 1.0 + 0.25 * 0.75))
    controller.reset()
    assert controller.correction_px(1.0) == pytest.approx(0.375)
    assert controller.limit_ms(1234.4) == 800
    assert controller.limit_ms(-1234.4) == -800
    assert controller.limit_ms(12.6) == 13
    with pytest.raises(ValueError, match="aggressiveness"):
        AxisSettings(aggressiveness=0.0)


def test_guide_controller_pulses_back_and_sends_nothing_while_output_is_off() -> None:
    cal = truth_calibration()
    controller = GuideController(AxisSettings(hysteresis=0.0), AxisSettings(hysteresis=0.0))
    ra_pulse, dec_pulse = controller.pulses(cal, 1.0, -0.05)
    # RA: 0.7 x 1 px back at 1.8 px/s is 389 ms East; Dec: under min_move, no pulse.
    assert ra_pulse == GuidePulse(GuideDirection.EAST, 389)
    assert dec_pulse is None
    controller.output_enabled = False
    assert controller.pulses(cal, 1.0, 1.0) == (None, None)
    controller.output_enabled = True
    assert controller.pulses(cal, 0.0, 0.0) == (None, None)


def test_subscribers_each_get_every_event_and_a_full_queue_loses_its_oldest() -> None:
    subscribers = Subscribers()
    small, large = subscribers.subscribe(maxsize=2), subscribers.subscribe()
    events = [GuiderFault(datetime.now(UTC), f"fault {i}", i) for i in range(3)]
    for event in events:
        subscribers.emit(event)
    assert [small.get_nowait(), small.get_nowait()] == events[1:]
    assert [large.get_nowait() for _ in range(3)] == events
    subscribers.unsubscribe(small)
    subscribers.unsubscribe(small)  # unsubscribing twice is harmless
    subscribers.emit(events[0])
    assert small.empty()
    assert large.get_nowait() is events[0]


def test_rms_window_is_from_the_lock_and_resettable() -> None:
    window = RmsWindow(size=3)
    assert window.value() is None
    for ra, dec in [(9.0, 9.0), (3.0, 0.0), (-3.0, 4.0), (0.0, -4.0)]:
        window.add(ra, dec)
    rms = window.value()
    assert rms is not None
    # Only the last 3 steps: RA sqrt((9 + 9 + 0) / 3), Dec sqrt((0 + 16 + 16) / 3).
    assert rms.steps == 3
    assert rms.ra_arcsec == pytest.approx(math.sqrt(6.0))
    assert rms.dec_arcsec == pytest.approx(math.sqrt(32.0 / 3.0))
    assert rms.total_arcsec == pytest.approx(math.sqrt(6.0 + 32.0 / 3.0))
    window.reset()
    assert window.value() is None


def test_closed_loop_on_a_simulated_sky_holds_a_drift() -> None:
    """Calibration, controller and axis split together, against a drifting sky with centroid
    noise, 300 steps: the error stays near the noise floor instead of growing with the drift."""
    cal = truth_calibration()
    ra_ctl, dec_ctl = AxisController(AxisSettings()), AxisController(AxisSettings(hysteresis=0))
    rng = np.random.default_rng(12)
    drift = (0.08, -0.06)  # px per step: ~0.3 " per step at 3 "/px
    star = np.zeros(2)
    errors = []
    for _ in range(300):
        star += drift
        measured = star + rng.normal(0, 0.1, 2)
        ra_px, dec_px = cal.axis_components(*measured)
        west, north = cal.pulses_ms(-ra_ctl.correction_px(ra_px), -dec_ctl.correction_px(dec_px))
        star += cal.motion_px(ra_ctl.limit_ms(west), dec_ctl.limit_ms(north))
        errors.append(np.hypot(*star))
    # Unguided, the star would end 30 px away. The steady-state lag of a proportional
    # controller is about drift / aggressiveness (0.1-0.15 px) plus the noise it passes on.
    assert float(np.sqrt(np.mean(np.square(errors)))) < 0.35
