"""Focus curves: fit HFR against focuser position and find the best focus.

The hyperbola ``hfr(x) = a * sqrt(1 + ((x - c) / b)^2)`` is NINA's default model: near focus it
is round (seeing), away from focus it is straight (defocus grows linearly). Its square is a
parabola in x, ``hfr^2 = a^2 + (a/b)^2 (x - c)^2``, so it is fitted by linear least squares on
hfr^2 with no iterative solver. A parabola on hfr itself is the simpler alternative.
Far from focus many setups (and the simulator) reach a plateau where HFR stops growing;
`trim_plateau` drops those points from the ends, since they would flatten the fit.
One sample spoilt on its own (a gust of wind, a passing cloud, a satellite across the
stars) can pull the fit far off; `fit_focus_robust` leaves out one such sample, as Ekos's
curve refinement does.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


class FocusModel(enum.StrEnum):
    HYPERBOLA = "hyperbola"
    PARABOLA = "parabola"


@dataclass(frozen=True)
class FocusFit:
    model: FocusModel
    best_position: float
    """Focuser steps at the fitted minimum."""
    best_hfr_px: float
    r_squared: float
    """Coefficient of determination of the fit on HFR (1 = perfect)."""
    coefficients: tuple[float, ...]
    """Hyperbola (a, b, c); parabola (p2, p1, p0) of hfr = p2 x^2 + p1 x + p0."""

    def hfr_at(self, position: npt.ArrayLike) -> npt.NDArray[np.float64]:
        x = np.asarray(position, dtype=np.float64)
        if self.model is FocusModel.HYPERBOLA:
            a, b, c = self.coefficients
            return np.asarray(a * np.sqrt(1.0 + ((x - c) / b) ** 2), dtype=np.float64)
        return np.asarray(np.polyval(self.coefficients, x), dtype=np.float64)


class FocusFitError(ValueError):
    """The points do not describe a focus minimum (too few, or the curve opens downwards)."""


def trim_plateau(
    positions: Sequence[float], hfr_px: Sequence[float], tolerance: float = 0.03
) -> tuple[list[float], list[float]]:
    """Drop points at either end whose HFR is within `tolerance` (fraction) of the largest.

    Points are returned sorted by position. Only runs at the ends are dropped: a high point in
    the middle is a bad measurement, not a plateau, and stays for the fit to judge.
    """
    pairs = sorted(zip(positions, hfr_px, strict=True))
    if not pairs:
        return [], []
    ceiling = max(h for _, h in pairs) * (1.0 - tolerance)
    start, end = 0, len(pairs)
    while start < end and pairs[start][1] >= ceiling:
        start += 1
    while end > start and pairs[end - 1][1] >= ceiling:
        end -= 1
    kept = pairs[start:end]
    return [p for p, _ in kept], [h for _, h in kept]


def fit_focus(
    positions: npt.ArrayLike, hfr_px: npt.ArrayLike, model: FocusModel = FocusModel.HYPERBOLA
) -> FocusFit:
    """Fit `model` to the points; raises `FocusFitError` when no minimum can be fitted."""
    x = np.asarray(positions, dtype=np.float64)
    y = np.asarray(hfr_px, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise FocusFitError("positions and hfr_px must be equal-length sequences")
    if len(x) < 4:
        raise FocusFitError(f"need at least 4 points to fit a focus curve, got {len(x)}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise FocusFitError("HFR values must be positive and finite")
    # Centre and scale the positions so the normal equations stay well conditioned.
    x0, scale = float(np.mean(x)), float(np.ptp(x)) or 1.0
    u = (x - x0) / scale
    if model is FocusModel.HYPERBOLA:
        p2, p1, p0 = np.polyfit(u, y**2, 2)
        if p2 <= 0:
            raise FocusFitError("the points do not curve upwards around a minimum")
        c_u = -p1 / (2.0 * p2)
        a_squared = p0 - p1**2 / (4.0 * p2)
        if a_squared <= 0:
            raise FocusFitError("the fitted hyperbola has no real minimum")
        a = math.sqrt(a_squared)
        b_u = a / math.sqrt(p2)
        fit = FocusFit(model, x0 + c_u * scale, a, 0.0, (a, b_u * scale, x0 + c_u * scale))
    else:
        q2, q1, q0 = np.polyfit(u, y, 2)
        if q2 <= 0:
            raise FocusFitError("the points do not curve upwards around a minimum")
        c_u = -q1 / (2.0 * q2)
        # Back to raw positions: hfr = q2 ((x - x0)/s)^2 + q1 (x - x0)/s + q0.
        p2 = q2 / scale**2
        p1 = q1 / scale - 2.0 * q2 * x0 / scale**2
        p0 = q2 * x0**2 / scale**2 - q1 * x0 / scale + q0
        best = x0 + c_u * scale
        fit = FocusFit(model, best, float(np.polyval((p2, p1, p0), best)), 0.0, (p2, p1, p0))
    residual = float(np.sum((y - fit.hfr_at(x)) ** 2))
    total = float(np.sum((y - np.mean(y)) ** 2))
    r_squared = 1.0 - residual / total if total > 0 else 0.0
    return FocusFit(fit.model, fit.best_position, fit.best_hfr_px, r_squared, fit.coefficients)


@dataclass(frozen=True)
class RobustFocusFit:
    """A focus fit and the index of the sample it left out (None: every sample fitted)."""

    fit: FocusFit
    left_out: int | None


# HFR measured on a few stars scatters by a few per cent from frame to frame: the floor of the
# scatter a sample is compared with, so a near-perfect curve does not make ordinary ones
# look far off.
_HFR_SCATTER_FLOOR = 0.02


def fit_focus_robust(
    positions: npt.ArrayLike,
    hfr_px: npt.ArrayLike,
    model: FocusModel = FocusModel.HYPERBOLA,
    *,
    outlier_sigma: float = 5.0,
    min_excess: float = 0.15,
) -> RobustFocusFit:
    """`fit_focus`, leaving out the one sample that lies farthest off the curve the others
    make, when it lies more than `outlier_sigma` times their scatter (at least 2 % of the
    median HFR) and more than `min_excess` (a fraction of the HFR there) away from it. At
    most one sample is left out, and only of 6 or more, so the fit keeps at least 5. Such a
    sample can keep all of them from making a curve at all; raises `FocusFitError` as
    `fit_focus` does when the samples make none with or without it."""
    x = np.asarray(positions, dtype=np.float64)
    y = np.asarray(hfr_px, dtype=np.float64)
    if x.shape != y.shape or len(x) < 6:
        return RobustFocusFit(fit_focus(positions, hfr_px, model), None)
    floor = _HFR_SCATTER_FLOOR * float(np.median(y))
    best: tuple[float, int, FocusFit] | None = None
    for i in range(len(x)):
        others = np.arange(len(x)) != i
        try:
            fit = fit_focus(x[others], y[others], model)
        except FocusFitError:
            continue
        residuals = y[others] - fit.hfr_at(x[others])
        # Three coefficients are fitted: the scatter has n - 1 - 3 degrees of freedom.
        scatter = max(float(np.sqrt(np.sum(residuals**2) / (len(residuals) - 3))), floor)
        expected = float(fit.hfr_at(x[i]))
        excess = abs(float(y[i]) - expected)
        if excess > outlier_sigma * scatter and excess > min_excess * expected:
            score = excess / scatter
            if best is None or score > best[0]:
                best = (score, i, fit)
    if best is None:
        return RobustFocusFit(fit_focus(x, y, model), None)
    return RobustFocusFit(best[2], best[1])
