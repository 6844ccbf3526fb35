"""Focus curve fits on synthetic V-curves with a known best focus."""

from __future__ import annotations

import numpy as np
import pytest

from processing.focus import (
    FocusFitError,
    FocusModel,
    fit_focus,
    fit_focus_robust,
    trim_plateau,
)

BEST = 10_037.0


def hyperbola(x: np.ndarray, a: float = 1.2, b: float = 150.0, c: float = BEST) -> np.ndarray:
    return a * np.sqrt(1.0 + ((x - c) / b) ** 2)


def test_hyperbola_recovers_the_minimum_exactly_without_noise() -> None:
    x = np.arange(9_700, 10_401, 100, dtype=float)
    fit = fit_focus(x, hyperbola(x))
    # Noise-free points of the model itself: only float rounding separates fit and truth.
    np.testing.assert_allclose(fit.best_position, BEST, atol=1e-6)
    np.testing.assert_allclose(fit.coefficients, (1.2, 150.0, BEST), rtol=1e-9)
    assert fit.r_squared == pytest.approx(1.0)


def test_hyperbola_with_noise_lands_within_a_tenth_of_a_step() -> None:
    rng = np.random.default_rng(7)
    x = np.arange(9_600, 10_501, 100, dtype=float)
    errors = []
    for _ in range(50):
        y = hyperbola(x) * (1 + rng.normal(0, 0.02, x.size))  # 2 % HFR noise, typical
        errors.append(fit_focus(x, y).best_position - BEST)
    # With 2 % noise on 10 points the minimum scatters by ~10 steps; 25 is a 2.5-sigma bound
    # on the median error, which would be ~0 for an unbiased fit.
    assert abs(float(np.median(errors))) < 25
    assert float(np.max(np.abs(errors))) < 100  # never off by a whole step


def test_parabola_model_finds_a_parabolas_vertex() -> None:
    x = np.arange(900, 1_101, 25, dtype=float)
    y = 0.0004 * (x - 1_013.0) ** 2 + 2.0
    fit = fit_focus(x, y, FocusModel.PARABOLA)
    np.testing.assert_allclose(fit.best_position, 1_013.0, atol=1e-6)
    np.testing.assert_allclose(fit.best_hfr_px, 2.0, atol=1e-9)
    np.testing.assert_allclose(fit.hfr_at(x), y, atol=1e-9)


def test_plateau_points_at_the_ends_are_dropped() -> None:
    x = [9_300, 9_400, 9_500, 9_600, 9_700, 9_800, 9_900, 10_000, 10_100]
    y = [1.07, 1.065, 1.069, 1.068, 0.91, 0.79, 0.68, 0.55, 0.68]
    kept_x, kept_y = trim_plateau(x, y)
    assert kept_x == [9_700, 9_800, 9_900, 10_000, 10_100]
    assert kept_y == [0.91, 0.79, 0.68, 0.55, 0.68]
    # A high point inside the curve is not a plateau.
    assert trim_plateau([1, 2, 3], [0.5, 1.0, 0.6]) == ([1, 2, 3], [0.5, 1.0, 0.6])


def test_points_without_a_minimum_are_refused() -> None:
    with pytest.raises(FocusFitError, match="at least 4 points"):
        fit_focus([1, 2, 3], [3.0, 2.0, 3.0])
    with pytest.raises(FocusFitError, match="curve upwards"):
        fit_focus([1, 2, 3, 4], [1.0, 2.0, 2.0, 1.0])
    with pytest.raises(FocusFitError, match="positive and finite"):
        fit_focus([1, 2, 3, 4], [1.0, 0.0, 2.0, 3.0])


def test_inputs_are_not_modified() -> None:
    x = np.arange(9_700, 10_401, 100, dtype=float)
    y = hyperbola(x)
    x_copy, y_copy = x.copy(), y.copy()
    fit_focus(x, y)
    trim_plateau(x, y)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(y, y_copy)


def test_one_spoilt_sample_is_left_out_and_the_minimum_recovered() -> None:
    """A sample twice as wide as the curve says (a gust during its exposure) beside 2 %
    noise: the plain fit is poor (below the autofocus's R^2 of 0.7 mostly) and off by up to
    70 steps; the robust fit names that sample and lands where the clean samples put the
    minimum."""
    rng = np.random.default_rng(11)
    x = np.arange(9_600, 10_401, 100, dtype=float)
    plain_misses, robust_misses = [], []
    for spoilt in (1, 2, 3, 5, 6, 7):
        y = hyperbola(x) * (1 + rng.normal(0, 0.02, x.size))
        clean = fit_focus(x, y).best_position
        y[spoilt] *= 2.0
        plain = fit_focus(x, y)
        robust = fit_focus_robust(x, y)
        assert robust.left_out == spoilt
        assert plain.r_squared < 0.8
        assert robust.fit.r_squared > 0.98
        plain_misses.append(abs(plain.best_position - clean))
        robust_misses.append(abs(robust.fit.best_position - clean))
    # Without the spoilt sample the fit is the clean one's but for that sample's own noise.
    assert max(robust_misses) < 15
    assert max(plain_misses) > 50


def test_a_spoilt_sample_that_breaks_the_curve_is_left_out() -> None:
    x = np.arange(9_600, 10_401, 100, dtype=float)
    y = hyperbola(x)
    y[3] *= 4.0
    with pytest.raises(FocusFitError):
        fit_focus(x, y)
    robust = fit_focus_robust(x, y)
    assert robust.left_out == 3
    np.testing.assert_allclose(robust.fit.best_position, BEST, atol=1e-6)


def test_ordinary_scatter_leaves_every_sample_in() -> None:
    rng = np.random.default_rng(5)
    x = np.arange(9_600, 10_401, 100, dtype=float)
    for _ in range(200):
        y = hyperbola(x) * (1 + rng.normal(0, 0.03, x.size))  # 3 % HFR noise
        robust = fit_focus_robust(x, y)
        assert robust.left_out is None
        assert robust.fit == fit_focus(x, y)


def test_too_few_samples_to_spare_one_are_all_fitted() -> None:
    x = np.arange(9_800, 10_201, 100, dtype=float)  # 5 samples
    y = hyperbola(x)
    y[1] *= 1.5
    robust = fit_focus_robust(x, y)
    assert robust.left_out is None
    assert robust.fit == fit_focus(x, y)
