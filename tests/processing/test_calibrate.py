"""Calibration and cosmetic correction on a seeded synthetic sensor with a known scene.

A light is bias + (flat x scene + dark current) with Poisson and read noise; masters come
from synthetic bias, dark and flat frames. Calibration must give back scene / gain, judged
pixel by pixel against the noise each pixel is known to carry.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from processing import synthetic
from processing.calibrate import (
    CalibrationConfig,
    CalibrationMasters,
    CosmeticConfig,
    DefectMap,
    calibrate,
    correct_defects,
    find_defects,
)
from processing.debayer import BayerPattern, mosaic
from processing.masters import master_bias, master_dark, master_flat

SENSOR = synthetic.SensorModel(shape=(128, 160), gain_e_per_adu=2.0, seed=4)
GAIN = SENSOR.gain_e_per_adu
LIGHT_S = 120.0
FRAMES = 16
FLAT_E = 25_000.0
F64 = npt.NDArray[np.float64]


@pytest.fixture(scope="module")
def truth() -> synthetic.SensorTruth:
    return synthetic.sensor_truth(SENSOR)


@pytest.fixture(scope="module")
def masters(truth: synthetic.SensorTruth) -> dict[str, npt.NDArray[np.float32]]:
    rng = np.random.default_rng(40)
    bias = master_bias([synthetic.expose(truth, rng, exposure_s=0.0) for _ in range(FRAMES)])
    flats = [
        synthetic.expose(truth, rng, exposure_s=1.0, light_e=np.full(truth.shape, FLAT_E))
        for _ in range(FRAMES)
    ]
    return {
        "bias": bias.data,
        "dark": master_dark(
            [synthetic.expose(truth, rng, exposure_s=LIGHT_S) for _ in range(FRAMES)]
        ).data,
        "long_dark": master_dark(
            [synthetic.expose(truth, rng, exposure_s=3 * LIGHT_S) for _ in range(FRAMES)]
        ).data,
        "flat": master_flat(flats, bias=bias.data).data,
    }


@pytest.fixture(scope="module")
def scene(truth: synthetic.SensorTruth) -> F64:
    config = synthetic.SessionConfig(sensor=SENSOR, star_count=40, dither_px=0.0)
    return synthetic.light_scene(config, np.eye(3), sigma_px=1.8)


def expected_sigma_adu(truth: synthetic.SensorTruth, scene: F64, exposure_s: float) -> F64:
    """Noise of a calibrated pixel (ADU): the light's Poisson and read noise through the
    flat, the master dark's noise, and the master flat's relative error on the signal."""
    dark_e = truth.dark_e_s * exposure_s
    light_var = truth.flat * scene + dark_e + SENSOR.read_noise_e**2
    dark_var = (dark_e + SENSOR.read_noise_e**2) / FRAMES
    flat_relative = 1.0 / np.sqrt(FRAMES * FLAT_E * truth.flat)
    sigma_e = np.sqrt(light_var + dark_var + 2 / 12 * GAIN**2) / truth.flat
    sigma: F64 = np.hypot(sigma_e, scene * flat_relative) / GAIN
    return sigma


def test_calibration_restores_a_known_signal(
    truth: synthetic.SensorTruth, masters: dict[str, npt.NDArray[np.float32]], scene: F64
) -> None:
    light = synthetic.expose(truth, np.random.default_rng(41), exposure_s=LIGHT_S, light_e=scene)
    calibrated = calibrate(light, CalibrationMasters(dark=masters["dark"], flat=masters["flat"]))
    z = (calibrated - scene / GAIN) / expected_sigma_adu(truth, scene, LIGHT_S)
    # Unbiased, with exactly the noise the pixel should carry (vignetting, dust, hot and
    # cold pixels and stars included), and nothing beyond 6 sigma anywhere.
    assert abs(float(np.mean(z))) < 0.03
    np.testing.assert_allclose(float(np.std(z)), 1.0, atol=0.05)
    assert float(np.abs(z).max()) < 6.0


def test_dark_scaling_calibrates_with_a_longer_dark(
    truth: synthetic.SensorTruth, masters: dict[str, npt.NDArray[np.float32]], scene: F64
) -> None:
    light = synthetic.expose(truth, np.random.default_rng(42), exposure_s=LIGHT_S, light_e=scene)
    scaled = calibrate(
        light,
        CalibrationMasters(
            bias=masters["bias"],
            dark=masters["long_dark"],
            dark_exposure_s=3 * LIGHT_S,
            flat=masters["flat"],
        ),
        exposure_s=LIGHT_S,
        config=CalibrationConfig(dark_scaling=True),
    )
    hot = truth.hot
    # Hot pixels carry up to 50 e-/s: the scaled dark removes 120 s worth of it, to within
    # the noise (looser than above: the scaled dark's noise is the long dark's, not modelled).
    residual = (scaled - scene / GAIN) / expected_sigma_adu(truth, scene, LIGHT_S)
    assert float(np.abs(residual[hot]).max()) < 8.0
    assert abs(float(np.mean(residual))) < 0.05
    unscaled = calibrate(light, CalibrationMasters(dark=masters["long_dark"], flat=masters["flat"]))
    assert float((unscaled - scene / GAIN)[hot].min()) < -100.0, "the test needs hot pixels"


def test_dark_scaling_needs_bias_and_exposures(
    masters: dict[str, npt.NDArray[np.float32]],
) -> None:
    light = np.zeros(SENSOR.shape, dtype=np.float32)
    with pytest.raises(ValueError, match="bias"):
        calibrate(
            light,
            CalibrationMasters(dark=masters["dark"], dark_exposure_s=LIGHT_S),
            exposure_s=LIGHT_S,
            config=CalibrationConfig(dark_scaling=True),
        )
    with pytest.raises(ValueError, match="exposure"):
        calibrate(
            light,
            CalibrationMasters(bias=masters["bias"], dark=masters["dark"]),
            config=CalibrationConfig(dark_scaling=True),
        )


def test_hot_and_cold_pixels_are_found_in_the_master_dark(
    truth: synthetic.SensorTruth, masters: dict[str, npt.NDArray[np.float32]]
) -> None:
    defects = find_defects(masters["dark"])
    # Hot pixels gather >= 240 e- in 120 s, cold ones read 100 ADU low; the master dark's
    # noise (and column pattern) is a few ADU: the masks must be exactly the truth.
    np.testing.assert_array_equal(defects.hot, truth.hot)
    np.testing.assert_array_equal(defects.cold, truth.cold)


def test_defects_are_replaced_by_the_median_of_their_neighbours(
    truth: synthetic.SensorTruth, masters: dict[str, npt.NDArray[np.float32]], scene: F64
) -> None:
    light = synthetic.expose(truth, np.random.default_rng(43), exposure_s=LIGHT_S, light_e=scene)
    calibrated = calibrate(light, CalibrationMasters(dark=masters["dark"], flat=masters["flat"]))
    defects = find_defects(masters["dark"])
    corrected = correct_defects(calibrated, defects)
    mask = defects.defects
    np.testing.assert_array_equal(corrected[~mask], calibrated[~mask])
    # The replacement is a median of 8 noisy neighbours: within 5 sigma of the true value
    # wherever the scene is smooth (the sky; a defect on a star core is not judged).
    smooth = mask & (np.abs(scene - np.median(scene)) < 100.0)
    sigma = np.sqrt(np.median(scene) + 25.0) / GAIN
    assert smooth.sum() > 5
    assert float(np.abs(corrected[smooth] - scene[smooth] / GAIN).max()) < 5 * sigma


def test_cfa_defects_are_repaired_from_their_own_colour() -> None:
    rgb = np.empty((32, 32, 3), dtype=np.float32)
    rgb[...] = (100.0, 200.0, 300.0)
    cfa = mosaic(rgb, BayerPattern.RGGB)
    hot = np.zeros(cfa.shape, dtype=bool)
    hot[[4, 5, 10, 11], [6, 9, 10, 11]] = True
    broken = np.where(hot, np.float32(60_000.0), cfa)
    defects = DefectMap(hot=hot, cold=np.zeros_like(hot))
    repaired = correct_defects(broken, defects, CosmeticConfig(cfa=True))
    np.testing.assert_array_equal(repaired, cfa)
    # Without the CFA option the neighbours are of other colours: the repair is wrong.
    assert not np.array_equal(correct_defects(broken, defects), cfa)


def test_inputs_are_never_modified(
    truth: synthetic.SensorTruth, masters: dict[str, npt.NDArray[np.float32]], scene: F64
) -> None:
    light = synthetic.expose(truth, np.random.default_rng(44), exposure_s=LIGHT_S, light_e=scene)
    before = {name: data.copy() for name, data in masters.items()}
    light_copy = light.copy()
    result = calibrate(
        light,
        CalibrationMasters(
            bias=masters["bias"],
            dark=masters["dark"],
            dark_exposure_s=LIGHT_S,
            flat=masters["flat"],
        ),
        exposure_s=LIGHT_S,
        config=CalibrationConfig(dark_scaling=True),
    )
    defects = find_defects(masters["dark"])
    correct_defects(result, defects)
    np.testing.assert_array_equal(light, light_copy)
    for name, data in masters.items():
        np.testing.assert_array_equal(data, before[name])
