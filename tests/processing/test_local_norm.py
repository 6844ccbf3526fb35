"""Local normalisation against frames whose only differences from the reference are known: a
per-frame scale and a per-frame planar sky gradient."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from processing.integrate import IntegrationConfig, integrate
from processing.local_norm import LocalNormConfig, estimate_local_normalization
from processing.synthetic import random_star_field, render_stars

SHAPE = (256, 256)
SKY = 500.0
NOISE = 10.0
F64 = npt.NDArray[np.float64]


def _plane(image: npt.NDArray[np.floating], sky: npt.NDArray[np.bool_]) -> F64:
    """Least-squares plane c0 + cy y + cx x through the sky pixels: (c0, cy, cx)."""
    y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    design = np.column_stack([np.ones(int(sky.sum())), y[sky], x[sky]])
    coefficients: F64 = np.linalg.lstsq(design, image[sky].astype(np.float64), rcond=None)[0]
    return coefficients


def _session(count: int) -> tuple[list[npt.NDArray[np.float32]], list[F64], npt.NDArray[np.bool_]]:
    """Reference (with its own gradient) first, then frames a (scene + noise) + plane; the
    planes' slopes (per px, y and x) and the sky mask (pixels far from every star)."""
    rng = np.random.default_rng(7)
    stars = random_star_field(rng, SHAPE, 60, (2e3, 4e4))
    scene = render_stars(SHAPE, stars.yx, stars.flux_e, 1.5) + SKY
    y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(np.float64)
    frames, slopes = [], []
    for i in range(count):
        scale = 1.0 if i == 0 else rng.uniform(0.7, 1.4)
        slope = rng.uniform(-0.3, 0.3, 2)
        gradient = slope[0] * (y - 128) + slope[1] * (x - 128) + rng.uniform(-50, 50)
        noisy = scene + rng.normal(0.0, NOISE, SHAPE)
        frames.append((scale * noisy + gradient).astype(np.float32))
        slopes.append(slope)
    return frames, slopes, scene - SKY < 1.0


def test_frames_lose_their_gradient_and_match_the_reference() -> None:
    frames, slopes, sky = _session(6)
    reference = frames[0]
    config = LocalNormConfig(tile_px=64)
    normalised = [reference]
    for frame, slope in zip(frames[1:], slopes[1:], strict=True):
        before = frame.copy()
        matched = estimate_local_normalization(frame, reference, config).apply(frame)
        np.testing.assert_array_equal(frame, before)  # the input is not modified
        _, cy, cx = _plane(matched - reference, sky)
        injected = np.hypot(*(slope - slopes[0]))
        # The residual slope is what the tiles' medians (each ~0.02 sigma uncertain over
        # ~64 px) can leave: 5 % of the injected one is far above that and far below a miss.
        assert np.hypot(cy, cx) < 0.05 * injected
        # The sky lands on the reference's level: well within one noise sigma.
        assert abs(float(np.median((matched - reference)[sky]))) < 0.2 * NOISE
        normalised.append(matched)
    stacked = integrate(normalised, IntegrationConfig(threads=1)).image
    _, cy, cx = _plane(stacked, sky)
    # The integrated background keeps the reference's gradient (0.3 px^-1 at most): within
    # 0.01 ADU per px, i.e. ~2.5 ADU across the frame, a quarter of the noise.
    np.testing.assert_allclose([cy, cx], slopes[0], atol=0.01)


def test_uncovered_margins_stay_empty_and_tiles_borrow_from_neighbours() -> None:
    frames, _slopes, sky = _session(2)
    frame = frames[1].copy()
    frame[:, :70] = np.nan  # a registered frame's empty margin: more than a whole tile
    matched = estimate_local_normalization(frame, frames[0], LocalNormConfig(tile_px=64)).apply(
        frame
    )
    assert np.isnan(matched[:, :70]).all()
    assert np.isfinite(matched[:, 70:]).all()
    residual = (matched - frames[0])[:, 70:][sky[:, 70:]]
    assert abs(float(np.median(residual))) < 0.5 * NOISE


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="tile_px"):
        LocalNormConfig(tile_px=8)
    with pytest.raises(ValueError, match="differ"):
        estimate_local_normalization(np.zeros((64, 64)), np.zeros((64, 32)))
    with pytest.raises(ValueError, match="no tile"):
        estimate_local_normalization(np.full((64, 64), np.nan), np.zeros((64, 64)))
