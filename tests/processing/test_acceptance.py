"""Frame acceptance rules against a steady history: each rule fires alone, with its numbers."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from processing.acceptance import AcceptanceRules, Verdict, judge
from processing.stars import FrameQuality

PEDESTAL_ADU = 300.0
GOOD = FrameQuality(
    star_count=40,
    hfr_px=2.0,
    fwhm_px=4.0,
    eccentricity=0.35,
    background_adu=PEDESTAL_ADU + 1000.0,
    noise_adu=32.0,
    saturated_fraction=0.0001,
)
# Medians: 40 stars, HFR 2.00 px, sky 1000 ADU over the pedestal.
HISTORY = (
    GOOD,
    replace(GOOD, star_count=44, hfr_px=2.1, background_adu=PEDESTAL_ADU + 1050.0),
    replace(GOOD, star_count=37, hfr_px=1.9, background_adu=PEDESTAL_ADU + 980.0),
)
RULES = AcceptanceRules(pedestal_adu=PEDESTAL_ADU)


def test_a_good_frame_is_accepted() -> None:
    verdict = judge(replace(GOOD, star_count=36, hfr_px=2.4), HISTORY, RULES)
    assert verdict == Verdict(accepted=True, reasons=())
    assert verdict.reason == ""


@pytest.mark.parametrize(
    ("quality", "reason"),
    [
        (replace(GOOD, star_count=12), "stars 12 < 0.5 x median 40 (clouds?)"),
        (replace(GOOD, hfr_px=3.2), "HFR 3.20 px > 1.5 x median 2.00 px (focus or seeing?)"),
        (
            replace(GOOD, eccentricity=0.72),
            "eccentricity 0.72 > 0.60 (trailing, wind or guiding?)",
        ),
        (
            replace(GOOD, background_adu=PEDESTAL_ADU + 2100.0),
            "sky 2100 ADU over pedestal > 2 x median 1000 ADU (dawn, moon or clouds?)",
        ),
    ],
)
def test_each_rule_fires_alone_with_its_numbers(quality: FrameQuality, reason: str) -> None:
    verdict = judge(quality, HISTORY, RULES)
    assert verdict == Verdict(accepted=False, reasons=(reason,))
    assert verdict.reason == reason


def test_the_pedestal_makes_a_doubled_sky_visible() -> None:
    """2100 ADU of sky over a 300 ADU bias: 2.1 x the sky, but only 1.85 x the raw level."""
    brighter = replace(GOOD, background_adu=PEDESTAL_ADU + 2100.0)
    assert not judge(brighter, HISTORY, RULES).accepted
    assert judge(brighter, HISTORY, AcceptanceRules(pedestal_adu=0.0)).accepted


def test_relative_rules_wait_for_min_history() -> None:
    awful = replace(GOOD, star_count=3, hfr_px=6.0, background_adu=PEDESTAL_ADU + 9000.0)
    assert judge(awful, HISTORY[:2], RULES).accepted
    verdict = judge(awful, HISTORY, RULES)
    assert not verdict.accepted
    assert [r.split()[0] for r in verdict.reasons] == ["stars", "HFR", "sky"]
    assert verdict.reason == "; ".join(verdict.reasons)


def test_absolute_rules_apply_from_the_first_frame() -> None:
    trailed = judge(replace(GOOD, eccentricity=0.8), [], RULES)
    assert not trailed.accepted
    empty = replace(GOOD, star_count=0, hfr_px=None, fwhm_px=None, eccentricity=None)
    assert judge(empty, [], RULES).accepted, "min_stars is off by default"
    verdict = judge(empty, [], replace(RULES, min_stars=1))
    assert verdict.reasons == ("stars 0 < minimum 1",)


def test_hfr_rule_needs_min_history_frames_with_stars() -> None:
    starless = replace(GOOD, star_count=0, hfr_px=None, fwhm_px=None, eccentricity=None)
    history = (*HISTORY[:2], starless)
    verdict = judge(replace(GOOD, hfr_px=9.0), history, RULES)
    assert verdict.accepted


def test_a_pedestal_above_the_sky_switches_the_sky_rule_off() -> None:
    """A wrong pedestal makes every sky level negative: no ratio of those can be trusted."""
    rules = replace(RULES, pedestal_adu=5000.0)
    assert judge(replace(GOOD, background_adu=PEDESTAL_ADU + 4000.0), HISTORY, rules).accepted


def test_judge_does_not_modify_its_inputs() -> None:
    history = list(HISTORY)
    before = copy.deepcopy(history)
    judge(replace(GOOD, star_count=1), history, RULES)
    assert history == before


def test_nonsense_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="max_eccentricity"):
        AcceptanceRules(max_eccentricity=1.5)
    with pytest.raises(ValueError, match="min_history"):
        AcceptanceRules(min_history=0)
