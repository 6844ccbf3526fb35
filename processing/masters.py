"""Master bias, dark and flat frames: many calibration frames combined into one each.

Each master is an `integrate` of its frames with pixel rejection (winsorized sigma clipping by
default), so a cosmic ray in one dark or a passing shadow on one flat does not print into
every calibrated light. Bias and darks are combined without normalisation (their level is the
signal); flats are first calibrated by subtracting the master bias (or a master dark-flat,
which also removes the flats' dark current), combined with multiplicative normalisation (the
panel or sky brightness drifts between flats), and the result is divided by its mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from processing.integrate import IntegrationConfig, IntegrationResult, integrate
from processing.normalize import FrameSource, Normalization

F32 = npt.NDArray[np.float32]
U16 = npt.NDArray[np.uint16]


@dataclass(frozen=True)
class MasterConfig:
    """Integration settings for masters; normalisation is set per kind by the functions.

    The default memory budget and rejection are `IntegrationConfig`'s.
    """

    integration: IntegrationConfig = field(default_factory=IntegrationConfig)


@dataclass(frozen=True, eq=False)
class Master:
    """A master frame (float32 ADU, or relative response for a flat) and its provenance.

    - kind: IMAGETYP of the master: 'BIAS', 'DARK', 'DARKFLAT' or 'FLAT'.
    - low_count / high_count: rejected samples per pixel (see `IntegrationResult`).
    - flat_mean_adu: for a flat, the mean of the calibrated, combined flats before the
      division (how bright the flats were; 0 for other kinds).
    - history: one line per step and its parameters, for FITS HISTORY cards.
    """

    kind: str
    data: F32
    frame_count: int
    low_count: U16
    high_count: U16
    flat_mean_adu: float = 0.0
    history: tuple[str, ...] = ()


def master_bias(frames: Sequence[FrameSource], config: MasterConfig = MasterConfig()) -> Master:
    """Combine bias frames (no normalisation). Raises ValueError as `integrate` does."""
    return _combine("BIAS", frames, config)


def master_dark(frames: Sequence[FrameSource], config: MasterConfig = MasterConfig()) -> Master:
    """Combine darks into a master dark that keeps its bias (no normalisation).

    Keeping the bias lets a light of the same exposure be calibrated with one subtraction;
    dark scaling subtracts the master bias first (`processing.calibrate`).
    """
    return _combine("DARK", frames, config)


def master_dark_flat(
    frames: Sequence[FrameSource], config: MasterConfig = MasterConfig()
) -> Master:
    """Combine darks taken with the flats' exposure (bias included, no normalisation)."""
    return _combine("DARKFLAT", frames, config)


def master_flat(
    frames: Sequence[FrameSource],
    *,
    bias: FrameSource | None = None,
    dark_flat: FrameSource | None = None,
    config: MasterConfig = MasterConfig(),
) -> Master:
    """Calibrate flats by the dark-flat (else the bias), combine, divide by the mean.

    The statistic is the arithmetic mean over every pixel of the combined flat, as the
    calibration formula (L - D) / (F / mean F) needs so that a light keeps its mean level.
    Raises ValueError without a bias or dark-flat (an uncalibrated flat divides by its
    offset too), for a non-positive mean, or as `integrate` does.
    """
    offset = dark_flat if dark_flat is not None else bias
    if offset is None:
        raise ValueError("a master flat needs a master bias or a master dark-flat")
    integration = replace(config.integration, normalization=Normalization.MULTIPLICATIVE)
    result = integrate(frames, integration, subtract=offset)
    mean = float(np.nanmean(result.image, dtype=np.float64))
    if not mean > 0:
        raise ValueError(f"the calibrated flats have a mean of {mean} ADU; expected > 0")
    subtracted = "dark-flat" if dark_flat is not None else "bias"
    return Master(
        kind="FLAT",
        data=(result.image / np.float32(mean)).astype(np.float32),
        frame_count=len(frames),
        low_count=result.low_count,
        high_count=result.high_count,
        flat_mean_adu=mean,
        history=(
            f"Nightowl master flat: {len(frames)} flats minus master {subtracted}",
            *result.history,
            f"divided by the mean {mean:.6g} ADU",
        ),
    )


def _combine(kind: str, frames: Sequence[FrameSource], config: MasterConfig) -> Master:
    integration = replace(config.integration, normalization=Normalization.NONE)
    result: IntegrationResult = integrate(frames, integration)
    return Master(
        kind=kind,
        data=result.image,
        frame_count=len(frames),
        low_count=result.low_count,
        high_count=result.high_count,
        history=(f"Nightowl master {kind.lower()}: {len(frames)} frames", *result.history),
    )
