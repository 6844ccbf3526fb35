"""Frame acceptance: cull clouded, blurred, trailed or sky-flooded subframes as they arrive.

In the spirit of NINA's and PixInsight SubframeSelector's culling: a frame is compared with the
median of the session's earlier accepted frames of the same filter and exposure (the caller
picks that history), plus a few absolute limits. Relative rules wait until the history is long
enough for its median to mean something.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from processing.stars import FrameQuality


@dataclass(frozen=True)
class AcceptanceRules:
    """Thresholds of the culling rules; a frame failing any of them is rejected.

    - min_star_fraction 0.5: reject when star_count < 0.5 x the history median. Thin cloud
      dims every star, and halving the count takes about a magnitude of extinction; seeing
      changes alone rarely cost that many.
    - max_hfr_factor 1.5: reject when HFR > 1.5 x the history median. Seeing varies by ~20 %
      within a night; 50 % more is a focus drift, wind shake or fog on the optics.
    - max_eccentricity 0.6 (absolute): round stars measure up to ~0.4 from noise alone, and
      elongation becomes visible to the eye around 0.5-0.6 (a common SubframeSelector limit):
      above it are trailing, wind or lost guiding.
    - max_background_factor 2.0: reject when (background - pedestal) > 2 x the history median of
      the same. Twice the sky costs as much signal-to-noise as half the exposure: dawn, the
      moon rising, or clouds lit by the town.
    - pedestal_adu 0.0: the camera's bias level (offset) in ADU, subtracted before the
      background comparison; without it a doubled sky over a 300 ADU bias looks like +50 %.
    - min_history 3: relative rules apply only once this many earlier accepted frames exist;
      the median of one or two frames is just those frames.
    - min_stars 0 (off): absolute floor on star_count, for example 1 to drop empty frames
      before any history exists; off by default because a sparse narrowband field may
      legitimately show very few stars.
    """

    min_star_fraction: float = 0.5
    max_hfr_factor: float = 1.5
    max_eccentricity: float = 0.6
    max_background_factor: float = 2.0
    pedestal_adu: float = 0.0
    min_history: int = 3
    min_stars: int = 0

    def __post_init__(self) -> None:
        """Raise ValueError on limits that would reject every frame or none by accident."""
        factors = (self.min_star_fraction, self.max_hfr_factor, self.max_background_factor)
        if min(factors) <= 0 or not 0 < self.max_eccentricity <= 1:
            raise ValueError("factors must be positive and max_eccentricity within (0, 1]")
        if self.min_history < 1 or self.min_stars < 0:
            raise ValueError("min_history must be >= 1 and min_stars >= 0")


@dataclass(frozen=True)
class Verdict:
    """Accepted, or rejected with one human-readable reason per failed rule."""

    accepted: bool
    reasons: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        """All reasons in one line, "" when accepted (for a FITS card or a DB column)."""
        return "; ".join(self.reasons)


def judge(
    quality: FrameQuality, history: Sequence[FrameQuality], rules: AcceptanceRules
) -> Verdict:
    """Accept or reject `quality` against the absolute rules and the median of `history`.

    `history` holds the session's earlier accepted frames of the same filter and exposure; a
    rejected frame must not join it, or a slowly clouding sky drags the medians along.
    """
    reasons = _absolute_reasons(quality, rules)
    if len(history) >= rules.min_history:
        reasons += _relative_reasons(quality, history, rules)
    return Verdict(accepted=not reasons, reasons=tuple(reasons))


def _absolute_reasons(quality: FrameQuality, rules: AcceptanceRules) -> list[str]:
    reasons = []
    if quality.star_count < rules.min_stars:
        reasons.append(f"stars {quality.star_count} < minimum {rules.min_stars}")
    if quality.eccentricity is not None and quality.eccentricity > rules.max_eccentricity:
        reasons.append(
            f"eccentricity {quality.eccentricity:.2f} > {rules.max_eccentricity:.2f} "
            "(trailing, wind or guiding?)"
        )
    return reasons


def _relative_reasons(
    quality: FrameQuality, history: Sequence[FrameQuality], rules: AcceptanceRules
) -> list[str]:
    reasons = []
    median_stars = statistics.median(q.star_count for q in history)
    if quality.star_count < rules.min_star_fraction * median_stars:
        reasons.append(
            f"stars {quality.star_count} < {rules.min_star_fraction:g} x median "
            f"{median_stars:g} (clouds?)"
        )
    # Frames without stars have no HFR; the rule needs as many measured frames as the others.
    history_hfr = [q.hfr_px for q in history if q.hfr_px is not None]
    if quality.hfr_px is not None and len(history_hfr) >= rules.min_history:
        median_hfr = statistics.median(history_hfr)
        if quality.hfr_px > rules.max_hfr_factor * median_hfr:
            reasons.append(
                f"HFR {quality.hfr_px:.2f} px > {rules.max_hfr_factor:g} x median "
                f"{median_hfr:.2f} px (focus or seeing?)"
            )
    sky_adu = quality.background_adu - rules.pedestal_adu
    median_sky_adu = statistics.median(q.background_adu - rules.pedestal_adu for q in history)
    # A median at or below the pedestal means a wrong pedestal: no ratio can be trusted.
    if median_sky_adu > 0 and sky_adu > rules.max_background_factor * median_sky_adu:
        reasons.append(
            f"sky {sky_adu:.0f} ADU over pedestal > {rules.max_background_factor:g} x median "
            f"{median_sky_adu:.0f} ADU (dawn, moon or clouds?)"
        )
    return reasons
