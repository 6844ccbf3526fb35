"""The live stack against known truth: shifted noisy copies of one star field fold into
the field, a trail after the warm-up is rejected, and the state survives a save."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from processing import synthetic
from processing.live import LiveConfig, LiveStack
from processing.register import star_positions
from processing.stars import detect_stars
from processing.subframes import FrameMetrics, measure_metrics

SHAPE = (256, 256)
SKY_E = 100.0
SHIFTS = [(0.0, 0.0), (3.3, -2.1), (-4.6, 5.2), (1.7, 6.4), (-2.2, -5.5), (5.1, 1.2)]
F32 = npt.NDArray[np.float32]


def field() -> synthetic.StarField:
    return synthetic.random_star_field(
        np.random.default_rng(3), SHAPE, 80, (4e3, 2e5), margin_px=12
    )


def scene(shift: tuple[float, float], sigma_px: float = 1.6) -> npt.NDArray[np.float64]:
    stars = field()
    transform = synthetic.dither(SHAPE, shift)
    yx = synthetic.apply_transform(transform, stars.yx)
    return synthetic.render_stars(SHAPE, yx, stars.flux_e, sigma_px) + SKY_E


def light(
    index: int, shift: tuple[float, float], extra: npt.NDArray[np.float64] | None = None
) -> tuple[F32, npt.NDArray[np.float64], FrameMetrics]:
    """A noisy light (Poisson), its stars and figures, as the calibrate stage gives them."""
    rng = np.random.default_rng(100 + index)
    expected = scene(shift) + (0.0 if extra is None else extra)
    image = rng.poisson(expected).astype(np.float32)
    stars = detect_stars(image)
    metrics = measure_metrics(image, stars, saturation_adu=1e9)
    return image[None], star_positions(stars), metrics


def stack_of(
    lights: list[tuple[F32, npt.NDArray[np.float64], FrameMetrics]], config: LiveConfig
) -> LiveStack:
    stack = LiveStack.start(*lights[0])
    for cube, stars, metrics in lights[1:]:
        stack, folded = stack.add(cube, stars, metrics, config)
        assert not folded.new_reference
    return stack


def test_shifted_noisy_copies_fold_into_the_field() -> None:
    lights = [light(i, s) for i, s in enumerate(SHIFTS)]
    stack = stack_of(lights, LiveConfig())
    assert stack.frames == len(SHIFTS)
    truth = scene(SHIFTS[0])
    inner = (slice(16, -16), slice(16, -16))  # every light covers it (shifts < 7 px)
    residual = stack.image()[0][inner] - truth[inner]
    single = lights[0][0][0][inner] - truth[inner]
    # Six frames: noise falls by sqrt(6) = 2.45 where nothing is rejected; resampling of
    # star cores and clean-pixel rejection (~0.3 %) cost some of that: ask for 2.
    assert np.std(residual) < np.std(single) / 2.0
    # Levels match the reference: the mean residual is a fraction of the stack's noise.
    assert abs(float(np.median(residual))) < 0.1 * np.std(residual)
    # Clean frames: what k = 3 rejects of Gaussian noise (0.3 %) and a little at star cores.
    assert stack.rejected_fraction < 0.02


def test_a_trail_after_the_warm_up_is_rejected() -> None:
    trail, _ = synthetic.satellite_trail(SHAPE, np.random.default_rng(9), peak_e=3000.0)
    lights = [light(i, s, trail if i == 4 else None) for i, s in enumerate(SHIFTS)]
    truth = scene(SHIFTS[0])
    # The trail in frame 4's pixels, seen on the reference grid.
    on_grid = np.roll(trail, (-round(SHIFTS[4][0]), -round(SHIFTS[4][1])), axis=(0, 1))
    core = on_grid > 1000.0
    core[:16], core[-16:], core[:, :16], core[:, -16:] = False, False, False, False
    assert core.sum() > 100
    kept = stack_of(lights, LiveConfig(k_sigma=1e6))  # no rejection: the trail shows
    clipped = stack_of(lights, LiveConfig())
    raised = kept.image()[0][core] - truth[core]
    assert np.median(raised) > 300.0  # 3000 e- over six frames, ~500
    left = clipped.image()[0][core] - truth[core]
    # Rejected: the trail's pixels are as close to the truth as the stack's noise (~5 e-).
    assert abs(float(np.median(left))) < 5.0, np.median(left)


def test_a_clearly_better_light_during_the_warm_up_becomes_the_reference() -> None:
    rng = np.random.default_rng(5)
    poor = rng.poisson(scene(SHIFTS[0], sigma_px=3.2) + 400.0).astype(np.float32)
    stars = detect_stars(poor)
    first = (poor[None], star_positions(stars), measure_metrics(poor, stars, saturation_adu=1e9))
    stack = LiveStack.start(*first)
    stack, folded = stack.add(*light(1, SHIFTS[1]))
    assert folded.new_reference
    assert stack.frames == 1
    stack, folded = stack.add(*light(2, SHIFTS[2]))
    assert not folded.new_reference
    assert stack.frames == 2


def test_the_state_survives_a_save_and_a_load(tmp_path: Path) -> None:
    lights = [light(i, s) for i, s in enumerate(SHIFTS[:4])]
    stack = stack_of(lights[:3], LiveConfig())
    stack.save(tmp_path / "stack")
    loaded = LiveStack.load(tmp_path / "stack")
    stack, _ = stack.add(*lights[3])
    loaded, _ = loaded.add(*lights[3])
    np.testing.assert_array_equal(stack.image(), loaded.image())
    assert (loaded.frames, loaded.rejected_px) == (stack.frames, stack.rejected_px)
