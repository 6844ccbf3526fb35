"""Frame metrics, weights, outlier frames and the reference, on seeded synthetic lights.

Lights share one star field; they differ in known ways: seeing (star sigma), transparency
(star and sky flux) and sky noise, so the ordering of their figures is known.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from processing import synthetic
from processing.stars import detect_stars
from processing.subframes import (
    FrameMetrics,
    Weighting,
    choose_reference,
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


def test_outlier_frames_are_rejected_with_reasons() -> None:
    images = [light(10 + i) for i in range(5)]
    images.append(light(20, sigma_px=3.2))  # focus or seeing gone
    images.append(light(21, transparency=0.15))  # cloud
    figures = [metrics(image) for image in images]
    weights = frame_weights(figures, Weighting.PSF_SIGNAL)
    verdicts = judge_frames(figures, weights)
    assert [v.accepted for v in verdicts] == [True] * 5 + [False, False]
    assert "HFR" in verdicts[5].reason
    assert "weight" in verdicts[6].reason
    reference = choose_reference(weights, [v.accepted for v in verdicts])
    assert reference == int(np.argmax(weights[:5]))


def test_reference_needs_an_accepted_frame() -> None:
    assert choose_reference([0.2, 0.9, 0.5], [True, False, True]) == 2
    with pytest.raises(ValueError, match="accepted"):
        choose_reference([1.0], [False])


def test_inputs_are_never_modified() -> None:
    image = light(30)
    copy = image.copy()
    metrics(image)
    np.testing.assert_array_equal(image, copy)
