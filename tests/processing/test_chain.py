"""The whole chain on one small synthetic session: masters, calibration, cosmetic correction,
metrics and weights, registration, resampling, integration and auto-crop.

The session (`processing.synthetic.session_frames`) has dithered, rotated lights with cosmic
rays and a satellite trail on a sensor with hot pixels, vignetting and dust. Seeing is the
same in every light, so the integrated image must equal the first light's noiseless scene
(the reference grid) divided by the gain, within the stack's noise.
"""

from __future__ import annotations

import math

import numpy as np

from processing import synthetic
from processing.calibrate import CalibrationMasters, calibrate, correct_defects, find_defects
from processing.integrate import IntegrationConfig, integrate
from processing.masters import master_bias, master_dark, master_flat
from processing.register import Transform, common_area, crop_box, register, star_positions, warp
from processing.stars import detect_stars
from processing.subframes import (
    Weighting,
    choose_reference,
    frame_weights,
    judge_frames,
    measure_metrics,
)
from tests.helpers import SMALL_SESSION

CONFIG = SMALL_SESSION


def test_a_session_integrates_to_its_known_scene() -> None:
    frames = list(synthetic.session_frames(CONFIG))
    first = list(synthetic.session_frames(CONFIG))[-1]
    np.testing.assert_array_equal(first.data, frames[-1].data)  # seeded: reproducible
    by_kind = {kind: [f for f in frames if f.kind == kind] for kind in ("BIAS", "DARK", "FLAT")}
    lights = [f for f in frames if f.kind == "LIGHT"]
    assert len(lights) == 8
    assert lights[3].defects is not None

    bias = master_bias([f.data for f in by_kind["BIAS"]])
    dark = master_dark([f.data for f in by_kind["DARK"]])
    flat = master_flat([f.data for f in by_kind["FLAT"]], bias=bias.data)
    masters = CalibrationMasters(dark=dark.data, flat=flat.data)
    defects = find_defects(dark.data)
    calibrated = [correct_defects(calibrate(f.data, masters), defects) for f in lights]

    stars = [detect_stars(image) for image in calibrated]
    metrics = [
        measure_metrics(image, s, saturation_adu=60_000.0)
        for image, s in zip(calibrated, stars, strict=True)
    ]
    weights = frame_weights(metrics, Weighting.PSF_SIGNAL)
    verdicts = judge_frames(metrics, weights)
    assert all(v.accepted for v in verdicts), [v.reason for v in verdicts]
    reference = choose_reference(weights)

    reference_yx = star_positions(stars[reference])
    warped = []
    for index, (image, table) in enumerate(zip(calibrated, stars, strict=True)):
        registration = register(star_positions(table), reference_yx)
        truth = Transform(lights[index].transform @ np.linalg.inv(lights[reference].transform))
        assert registration.transform.max_distance_px(truth, CONFIG.sensor.shape) < 0.03
        warped.append(warp(image, registration.transform))
    rows, cols = crop_box(common_area(w.valid for w in warped))
    result = integrate([w.image for w in warped], IntegrationConfig(reference_index=reference))

    gain = CONFIG.sensor.gain_e_per_adu
    scene = synthetic.light_scene(CONFIG, lights[reference].transform, 1.8) / gain
    # Per-pixel noise of an 8-frame stack: sky and star Poisson noise plus read noise,
    # through the flat (down to ~0.7 with vignetting and dust): within 6 sigma everywhere in
    # the crop, trail and cosmic rays included. The mean offset is the rejection's: winsorized
    # clipping at 4 sigma low / 3 high drops more bright than dark samples, -0.01 sigma per
    # frame (-0.03 sigma of the stack, measured on pure noise); 0.05 leaves room for the
    # normalisation's and the masters' noise.
    truth_flat = synthetic.sensor_truth(CONFIG.sensor).flat
    sigma = np.sqrt(scene * gain / truth_flat + 25.0 / truth_flat**2) / gain / math.sqrt(8)
    z = ((result.image - scene) / sigma)[rows, cols]
    assert abs(float(np.mean(z))) < 0.05
    assert float(np.abs(z).max()) < 6.0
    assert rows.stop - rows.start > 150
    assert cols.stop - cols.start > 210
