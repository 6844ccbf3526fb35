"""The rejection table: one entry per algorithm, its own parameters, unknown ones refused.

Stacks are seeded Gaussian noise with planted outliers of known size, so which samples a
threshold must reject is known.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from processing.integrate import IntegrationConfig, combine_stack
from processing.rejection import (
    REJECTIONS,
    Esd,
    LinearFit,
    NoRejection,
    Percentile,
    Rejection,
    RejectionConfig,
    SigmaClip,
    Winsorized,
    describe,
    rejection_config,
    rejection_name,
)

LEVEL = 1000.0
SIGMA = 10.0


def test_every_name_has_an_entry_with_a_config_of_its_own() -> None:
    assert set(REJECTIONS) == set(Rejection)
    classes = {type(rejection_config(algorithm)) for algorithm in Rejection}
    assert len(classes) == len(Rejection)
    for algorithm in Rejection:
        assert rejection_name(rejection_config(algorithm)) is algorithm
        assert rejection_config(algorithm.value) == rejection_config(algorithm)


def test_the_defaults_are_the_documented_ones() -> None:
    assert IntegrationConfig().rejection == Winsorized(low=4.0, high=3.0, max_iterations=10)
    assert rejection_config("sigma") == SigmaClip(low=4.0, high=3.0, max_iterations=10)
    assert rejection_config("linear_fit") == LinearFit(low=4.0, high=3.0, max_iterations=10)
    assert rejection_config("percentile") == Percentile(low=0.2, high=0.1)
    assert rejection_config("esd") == Esd(outliers_fraction=0.3, significance=0.05)
    assert rejection_config("none") == NoRejection()


def test_an_unknown_algorithm_is_an_error_not_a_fallback() -> None:
    with pytest.raises(ValueError, match="bogus"):
        rejection_config("bogus")

    @dataclass(frozen=True)
    class Unregistered(RejectionConfig):
        low: float = 1.0

    for config in (RejectionConfig(), Unregistered()):
        with pytest.raises(ValueError, match="no rejection algorithm"):
            IntegrationConfig(rejection=config)
        with pytest.raises(ValueError, match="no rejection algorithm"):
            rejection_name(config)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SigmaClip(low=0.0),
        lambda: Winsorized(high=-1.0),
        lambda: LinearFit(max_iterations=0),
        lambda: Percentile(low=0.0),
        lambda: Esd(significance=1.0),
        lambda: Esd(outliers_fraction=0.0),
    ],
)
def test_parameters_that_would_reject_everything_or_loop_are_refused(make: object) -> None:
    with pytest.raises(ValueError, match="must be"):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("strict", "lenient"),
    [
        (SigmaClip(high=3.0), SigmaClip(high=100.0)),
        (Winsorized(high=3.0), Winsorized(high=100.0)),
        (LinearFit(high=3.0), LinearFit(high=100.0)),
        (Percentile(high=0.1), Percentile(high=1.0)),
        # 1 % of 20 samples: the test may reject none.
        (Esd(outliers_fraction=0.3), Esd(outliers_fraction=0.01)),
    ],
)
def test_each_algorithm_applies_its_own_parameters(
    strict: RejectionConfig, lenient: RejectionConfig
) -> None:
    rng = np.random.default_rng(21)
    stack = rng.normal(LEVEL, SIGMA, (20, 32, 32)).astype(np.float32)
    # 30 sigma (30 % of the level) in one frame: far beyond 3 sigma and 10 % of the median,
    # within 100 % of it and 100 sigma. (Not 50 sigma: the winsorized sigma and the line's
    # slope of 20 samples scatter enough that 3 and 44 pixels of 1024 still rejected it.)
    stack[7] += 30 * SIGMA
    strict_result = combine_stack(stack, IntegrationConfig(rejection=strict))
    lenient_result = combine_stack(stack, IntegrationConfig(rejection=lenient))
    assert strict_result.frame_high[7] == 32 * 32
    assert lenient_result.frame_high[7] == 0


def test_provenance_names_the_algorithm_and_only_its_parameters() -> None:
    assert describe(Percentile(low=0.25, high=0.1)) == "rejection percentile low 0.25 high 0.1"
    assert describe(Esd()) == "rejection esd outliers_fraction 0.3 significance 0.05"
    assert describe(NoRejection()) == "rejection none"


def test_loading_the_kernels_ahead_loads_the_variant_integration_calls() -> None:
    """A job forked after `load_kernels` finds the kernel its integration needs already
    loaded: integrating frames afterwards, small (one chunk per block) and large (several),
    adds no variant (a fresh interpreter, so nothing this test process loaded counts)."""
    script = (
        "import numpy as np\n"
        "from processing import clip_kernels, rejection\n"
        "from processing.integrate import integrate\n"
        "rejection.load_kernels()\n"
        "loaded = list(clip_kernels.clip_and_combine.signatures)\n"
        "rng = np.random.default_rng(1)\n"
        "for shape in ((64, 48), (600, 800)):\n"
        "    integrate([rng.normal(100, 5, shape).astype(np.float32) for _ in range(7)])\n"
        "print(len(loaded), len(clip_kernels.clip_and_combine.signatures))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    assert run.stdout.split() == ["2", "2"], run.stderr


def _converged_winsorized_sigma(samples: np.ndarray, center: float, start: float) -> float:
    """The winsorized sigma iterated in float64 until it no longer moves."""
    sigma = start
    for _ in range(10_000):
        clipped = np.clip(samples, center - 1.5 * sigma, center + 1.5 * sigma)
        updated = 1.134 * float(np.std(clipped, ddof=1))
        if abs(updated - sigma) <= 1e-13 * sigma:
            return updated
        sigma = updated
    return sigma


def test_the_winsorized_sigma_is_the_fixed_point_of_its_update() -> None:
    """The kernel solves for the sigma that reproduces itself: the sigma that iterating the
    update to the end reaches (an iteration stopped at a 1 % step is up to a few % off)."""
    from processing import clip_kernels

    rng = np.random.default_rng(21)
    relative = []
    for _ in range(400):
        n = int(rng.integers(5, 40))
        samples = np.sort(rng.normal(LEVEL, SIGMA, n)).astype(np.float32)
        for i in rng.choice(n, size=int(rng.integers(0, 3)), replace=False):
            samples[i] += rng.choice([-1.0, 1.0]) * rng.uniform(5 * SIGMA, 30 * SIGMA)
        samples.sort()
        ref = float(samples[(n - 1) // 2])
        d = samples.astype(np.float64) - ref
        c1 = np.concatenate([[0.0], np.cumsum(d)])
        c2 = np.concatenate([[0.0], np.cumsum(d * d)])
        center = float(np.median(samples))
        q1, q3 = np.quantile(samples, [0.25, 0.75])
        start = float(q3 - q1) / 1.349
        solved = clip_kernels._winsorized_sigma(
            samples, c1, c2, n, 0, n, center, start, ref, 1.5, 1.134, 1e-2, 50
        )
        expected = _converged_winsorized_sigma(samples.astype(np.float64), center, start)
        relative.append(abs(solved / expected - 1.0))
    errors = np.array(relative)
    # Exact but for a few pixels whose counts do not settle (an outlier's pull), where the
    # kernel iterates as before and stops within 1 % per step of the fixed point.
    assert np.mean(errors < 1e-9) >= 0.95, np.sort(errors)[-20:]
    assert errors.max() < 0.05, np.sort(errors)[-20:]
