"""Master frames from a seeded synthetic sensor with known bias, dark current and flat field.

`processing.synthetic.sensor_truth` draws the fixed patterns (column bias, hot and cold
pixels, vignetting, dust, PRNU); frames add Poisson and read noise, so every master has a
known truth and a known per-pixel noise to judge it against.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from processing import synthetic
from processing.masters import master_bias, master_dark, master_dark_flat, master_flat

SENSOR = synthetic.SensorModel(shape=(128, 160), gain_e_per_adu=2.0, seed=3)
FLAT_E = 60_000.0
FLATS = 20


@pytest.fixture(scope="module")
def truth() -> synthetic.SensorTruth:
    return synthetic.sensor_truth(SENSOR)


@pytest.fixture(scope="module")
def bias_frames(truth: synthetic.SensorTruth) -> list[npt.NDArray[np.uint16]]:
    rng = np.random.default_rng(30)
    return [synthetic.expose(truth, rng, exposure_s=0.0) for _ in range(16)]


def block_means(image: npt.NDArray[np.floating], size: int) -> npt.NDArray[np.float64]:
    height, width = image.shape
    blocks = image[: height - height % size, : width - width % size].reshape(
        height // size, size, width // size, size
    )
    means: npt.NDArray[np.float64] = blocks.mean(axis=(1, 3), dtype=np.float64)
    return means


def test_master_flat_recovers_the_known_vignetting_within_half_a_percent(
    truth: synthetic.SensorTruth, bias_frames: list[npt.NDArray[np.uint16]]
) -> None:
    rng = np.random.default_rng(31)
    flats = []
    for index in range(FLATS):
        # The panel drifts by up to 5 % between flats; one flat catches a cosmic ray shower.
        level = np.full(truth.shape, FLAT_E * (1.0 + 0.05 * np.sin(index)))
        hits, _ = synthetic.cosmic_rays(truth.shape, rng, 40 if index == 7 else 0, (2e4, 6e4))
        flats.append(synthetic.expose(truth, rng, exposure_s=1.0, light_e=level, direct_e=hits))
    bias = master_bias(bias_frames)
    master = master_flat(flats, bias=bias.data)

    np.testing.assert_allclose(np.mean(master.data, dtype=np.float64), 1.0, rtol=1e-6)
    # Vignetting and dust are large-scale: on 4 x 4 blocks the master's noise is ~0.03 %, so
    # the 0.5 % is a bound on systematic error (normalisation, rejection bias).
    np.testing.assert_allclose(block_means(master.data, 4), block_means(truth.flat, 4), rtol=0.005)
    np.testing.assert_allclose(master.data[::16, ::16], truth.flat[::16, ::16], rtol=0.005)
    # Pixel by pixel (PRNU and cold pixels included), within 6 sigma of the master's own noise:
    # Poisson noise of FLATS flats of the pixel's electrons, relative.
    relative_sigma = 1.0 / np.sqrt(FLATS * FLAT_E * truth.flat)
    z = (master.data - truth.flat) / (truth.flat * relative_sigma)
    assert float(np.abs(z).max()) < 6.0
    assert master.high_count.sum() >= 30, "the cosmic rays were rejected, not averaged in"


def test_master_dark_keeps_the_bias_and_drops_cosmic_rays(truth: synthetic.SensorTruth) -> None:
    rng = np.random.default_rng(32)
    exposure_s = 120.0
    darks = []
    for _ in range(12):
        hits, _ = synthetic.cosmic_rays(truth.shape, rng, 25, (2e3, 2e4))
        darks.append(synthetic.expose(truth, rng, exposure_s=exposure_s, direct_e=hits))
    master = master_dark(darks)
    gain = SENSOR.gain_e_per_adu
    expected = truth.bias_adu + truth.dark_e_s * exposure_s / gain
    # Per-pixel noise of a 12-dark mean: dark shot noise and read noise, plus 1/sqrt(12) ADU
    # of quantisation; winsorized rejection costs a few % of efficiency at 12 frames.
    sigma = np.sqrt(truth.dark_e_s * exposure_s + SENSOR.read_noise_e**2) / gain
    sigma = np.sqrt(sigma**2 + 1.0 / 12.0) / np.sqrt(12.0)
    z = (master.data - expected) / sigma
    assert float(np.abs(z).max()) < 6.0
    assert abs(float(np.mean(z))) < 0.05


def test_dark_flat_calibrates_flats_with_their_dark_current(
    truth: synthetic.SensorTruth,
) -> None:
    rng = np.random.default_rng(33)
    exposure_s = 30.0
    level = np.full(truth.shape, 40_000.0)
    flats = [synthetic.expose(truth, rng, exposure_s=exposure_s, light_e=level) for _ in range(8)]
    dark_flats = [synthetic.expose(truth, rng, exposure_s=exposure_s) for _ in range(8)]
    master = master_flat(flats, dark_flat=master_dark_flat(dark_flats).data)
    # Hot pixels gather up to 1500 e- in 30 s: left in, they would read up to 4 % bright.
    hot = truth.hot
    np.testing.assert_allclose(master.data[hot], truth.flat[hot], rtol=0.01)
    assert master.history[0].endswith("minus master dark-flat")


def test_flats_need_a_bias_or_dark_flat(truth: synthetic.SensorTruth) -> None:
    flats = [np.ones(truth.shape, dtype=np.float32)] * 3
    with pytest.raises(ValueError, match="bias"):
        master_flat(flats)


def test_inputs_are_never_modified(bias_frames: list[npt.NDArray[np.uint16]]) -> None:
    frames = [frame.astype(np.float32) for frame in bias_frames[:5]]
    copies = [frame.copy() for frame in frames]
    bias = master_bias(frames)
    offset = bias.data.copy()
    master_dark(frames)
    master_flat([frame + 1000.0 for frame in frames], bias=bias.data)
    for frame, copy in zip(frames, copies, strict=True):
        np.testing.assert_array_equal(frame, copy)
    np.testing.assert_array_equal(bias.data, offset)
