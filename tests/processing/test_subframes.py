"""Frame metrics, weights, outlier frames and the reference, on seeded synthetic lights.

Lights share one star field; they differ in known ways: seeing (star sigma), elongation
(star sigma along x over along y), transparency (star and sky flux) and sky noise, so the
ordering of their figures is known.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from processing import synthetic
from processing.stars import detect_stars
from processing.subframes import (
    FrameMetrics,
    SubframeRules,
    Weighting,
    choose_reference,
    effective_frames,
    frame_weights,
    judge_frames,
    measure_metrics,
)

SHAPE = (256, 320)
SKY_E = 900.0
READ_E = 5.0
SATURATION = 65535.0


def light(
    seed: int, sigma_px: float = 1.8, transparency: float = 1.0, sky_e: float = SKY_E
) -> npt.NDArray[np.float32]:
    field = synthetic.random_star_field(np.random.default_rng(50), SHAPE, 60, (1e4, 3e5), 6.0)
    scene = synthetic.sky_gradient(SHAPE, sky_e, (0.1, 0.1))
    synthetic.render_stars(SHAPE, field.yx, transparency * field.flux_e, sigma_px, scene)
    rng = np.random.default_rng(seed)
    return (rng.poisson(scene) + rng.normal(0.0, READ_E, SHAPE)).astype(np.float32)


def elongated_light(seed: int, sigma_yx: tuple[float, float]) -> npt.NDArray[np.float32]:
    """A light whose stars are Gaussians with sigma_y != sigma_x (an alt-az mount's field
    rotation, wind or trailing): point-like stars blurred by an anisotropic kernel. The
    eccentricity is sqrt(1 - (sigma_y / sigma_x)^2) of the total sigmas (0.5 px start)."""
    field = synthetic.random_star_field(np.random.default_rng(50), SHAPE, 60, (1e4, 3e5), 10.0)
    stars = synthetic.render_stars(SHAPE, field.yx, field.flux_e, 0.5)
    blur = [math.sqrt(max(s**2 - 0.25, 0.0)) for s in sigma_yx]
    blurred: npt.NDArray[np.float64] = ndimage.gaussian_filter(stars, blur)
    scene = synthetic.sky_gradient(SHAPE, SKY_E, (0.1, 0.1)) + blurred
    rng = np.random.default_rng(seed)
    return (rng.poisson(scene) + rng.normal(0.0, READ_E, SHAPE)).astype(np.float32)


def metrics(image: npt.NDArray[np.float32]) -> FrameMetrics:
    return measure_metrics(image, detect_stars(image), saturation_adu=SATURATION)


def test_noise_and_background_are_measured() -> None:
    m = metrics(light(1))
    # Pixel-difference MAD noise over ~80,000 differences: ~0.4 % sampling error; the
    # gradient (10 % across the frame) and the masked stars do not enter it.
    np.testing.assert_allclose(m.noise_adu, math.sqrt(SKY_E + READ_E**2), rtol=0.02)
    np.testing.assert_allclose(m.quality.background_adu, SKY_E, rtol=0.01)
    assert m.quality.star_count >= 50
    assert m.snr is not None
    assert m.snr > 10


def test_weights_prefer_sharp_transparent_quiet_frames() -> None:
    frames = {
        "good": light(2),
        "soft": light(3, sigma_px=2.6),
        "hazy": light(4, transparency=0.6),
        "bright sky": light(5, sky_e=3 * SKY_E),
    }
    figures = {name: metrics(image) for name, image in frames.items()}
    psf = frame_weights(list(figures.values()), Weighting.PSF_SIGNAL)
    by_name = dict(zip(figures, psf, strict=True))
    assert by_name["good"] == 1.0
    assert max(by_name["soft"], by_name["hazy"], by_name["bright sky"]) < 0.8
    noise = dict(zip(figures, frame_weights(list(figures.values()), Weighting.NOISE), strict=True))
    # Inverse variance: three times the sky is ~1/3 of the weight.
    np.testing.assert_allclose(noise["bright sky"], (SKY_E + 25) / (3 * SKY_E + 25), rtol=0.05)
    np.testing.assert_array_equal(frame_weights(list(figures.values()), Weighting.NONE), 1.0)
    # The geometric mean of the two: the soft frame loses half of psf_signal's penalty.
    combined = frame_weights(list(figures.values()), Weighting.PSF_NOISE)
    both = dict(zip(figures, combined, strict=True))
    assert both["good"] == 1.0
    relative_noise = noise["soft"] / noise["good"]  # each weighting's best frame has 1
    np.testing.assert_allclose(both["soft"], math.sqrt(by_name["soft"] * relative_noise), rtol=1e-9)
    assert by_name["soft"] < both["soft"] < noise["soft"]


def test_effective_frames_count_what_uneven_weights_cost() -> None:
    assert effective_frames(np.ones(8)) == pytest.approx(8.0)
    assert effective_frames([1.0, 0.0, 0.0]) == pytest.approx(1.0)
    # Two frames at full weight and two at half: (3)^2 / 2.5 = 3.6 of 4.
    assert effective_frames([1.0, 1.0, 0.5, 0.5]) == pytest.approx(3.6)


def test_outlier_frames_are_rejected_with_reasons() -> None:
    images = [light(10 + i) for i in range(5)]
    images.append(light(20, sigma_px=3.2))  # focus or seeing gone
    images.append(light(21, transparency=0.15))  # cloud
    figures = [metrics(image) for image in images]
    weights = frame_weights(figures, Weighting.PSF_SIGNAL)
    verdicts = judge_frames(figures, weights)
    assert [v.accepted for v in verdicts] == [True] * 5 + [False, False]
    assert "FWHM" in verdicts[5].reason
    assert "weight" in verdicts[6].reason
    reference = choose_reference(weights, [v.accepted for v in verdicts])
    assert reference == int(np.argmax(weights[:5]))


# Axis ratio 0.69 (eccentricity 0.72 in theory, 0.69 measured from the isophotal moments),
# as an alt-az smart telescope's stars on every frame.
ELONGATED_YX = (1.8, 2.6)
# Axis ratio 0.4 (eccentricity 0.92), a trailed frame.
TRAILED_YX = (1.8, 4.5)


@pytest.fixture(scope="module")
def elongated_set() -> list[FrameMetrics]:
    """Six lights with moderately elongated stars, one trailed, one with twice the FWHM."""
    images = [elongated_light(40 + i, ELONGATED_YX) for i in range(6)]
    images.append(elongated_light(50, TRAILED_YX))
    images.append(elongated_light(51, (2 * ELONGATED_YX[0], 2 * ELONGATED_YX[1])))
    return [metrics(image) for image in images]


def relative_limit(values: list[float], floor: float, k: float = 3.0) -> float:
    """median + k x max(1.4826 MAD, floor): the rule, computed here independently."""
    median = float(np.median(values))
    mad = float(np.median(np.abs(np.array(values) - median)))
    return median + k * max(1.4826 * mad, floor)


def test_a_set_of_elongated_stars_is_kept_and_its_outliers_are_named(
    elongated_set: list[FrameMetrics],
) -> None:
    eccentricity = [m.quality.eccentricity for m in elongated_set]
    assert all(e is not None for e in eccentricity)
    normal = [float(e) for e in eccentricity[:6] if e is not None]
    # Every light is over the 0.6 that capture-time acceptance uses as its absolute limit:
    # the set's normal, which must not cost a single light here.
    assert min(normal) > 0.6, normal
    weights = frame_weights(elongated_set, Weighting.PSF_SIGNAL)
    verdicts = judge_frames(elongated_set, weights)
    assert [v.accepted for v in verdicts[:6]] == [True] * 6, [v.reason for v in verdicts]

    trailed, blurred = verdicts[6], verdicts[7]
    assert not trailed.accepted
    assert not blurred.accepted
    # The reason gives the figure, the limit and how it was set; the limit is the group's
    # median + 3 sigma (1.4826 MAD, at least 0.03), recomputed here from the measured values.
    match = re.search(
        r"eccentricity (\d\.\d\d) > (\d\.\d\d) \(median (\d\.\d\d) \+ 3 x (\d\.\d\d)",
        trailed.reason,
    )
    assert match is not None, trailed.reason
    value, limit, median = (float(match.group(i)) for i in (1, 2, 3))
    every = [float(e) for e in eccentricity if e is not None]
    # Printed with two decimals: equal to 0.005.
    np.testing.assert_allclose(limit, relative_limit(every, 0.03), atol=0.005)
    np.testing.assert_allclose(median, float(np.median(every)), atol=0.005)
    assert value > 0.85
    fwhm = [float(m.quality.fwhm_px or 0.0) for m in elongated_set]
    assert "FWHM" in blurred.reason, blurred.reason
    assert "median" in blurred.reason
    assert "eccentricity" not in blurred.reason  # twice as wide, just as round
    # FWHM: sigma at least 5 % of the median.
    limit_fwhm = relative_limit(fwhm, 0.05 * float(np.median(fwhm)))
    assert f"> {limit_fwhm:.2f} px" in blurred.reason, (blurred.reason, limit_fwhm)


def test_absolute_limits_reject_by_themselves(elongated_set: list[FrameMetrics]) -> None:
    normal = elongated_set[:6]
    weights = frame_weights(normal, Weighting.PSF_SIGNAL)
    strict = judge_frames(normal, weights, SubframeRules(max_eccentricity=0.6))
    assert not any(v.accepted for v in strict)
    assert all(re.search(r"eccentricity 0\.\d\d > maximum 0\.6", v.reason) for v in strict)
    fwhm = sorted(float(m.quality.fwhm_px or 0.0) for m in normal)
    # A limit between the 3rd and 4th FWHM keeps exactly the three sharpest lights.
    cut = SubframeRules(max_fwhm_px=(fwhm[2] + fwhm[3]) / 2)
    assert sum(v.accepted for v in judge_frames(normal, weights, cut)) == 3
    few = judge_frames(normal, weights, SubframeRules(min_stars=10_000))
    assert all("< minimum 10000" in v.reason for v in few)
    # A large k turns the relative rules off: the trailed light passes on that count.
    loose = judge_frames(
        elongated_set, frame_weights(elongated_set, Weighting.NONE), SubframeRules(reject_sigma=50)
    )
    assert loose[6].accepted, loose[6].reason


def test_relative_rules_wait_for_enough_frames(elongated_set: list[FrameMetrics]) -> None:
    pair = [elongated_set[0], elongated_set[6]]  # a normal and a trailed light
    verdicts = judge_frames(pair, [1.0, 1.0])
    assert all(v.accepted for v in verdicts), [v.reason for v in verdicts]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reject_sigma", 0.0),
        ("reject_sigma", 1000.0),
        ("min_weight", 1.0),
        ("max_eccentricity", 1.5),
        ("max_fwhm_px", 0.0),
        ("min_stars", -1),
        ("fwhm_sigma_floor", -0.1),
        ("min_frames", 1),
    ],
)
def test_rules_out_of_range_name_the_field(field: str, value: float) -> None:
    changes: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=field):
        replace(SubframeRules(), **changes)


def test_reference_needs_an_accepted_frame() -> None:
    assert choose_reference([0.2, 0.9, 0.5], [True, False, True]) == 2
    with pytest.raises(ValueError, match="accepted"):
        choose_reference([1.0], [False])


def test_inputs_are_never_modified() -> None:
    image = light(30)
    copy = image.copy()
    metrics(image)
    np.testing.assert_array_equal(image, copy)
