"""Per-frame metrics of calibrated lights, frame weights, outlier frames and the reference.

Metrics reuse one star detection per frame (`processing.stars.detect_stars`, which the
registration needs anyway) and fill the same `FrameQuality` the capture-time acceptance
uses, so the culling rules and their wording are those of `processing.acceptance`: each
frame is judged against the median of the others.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from processing.acceptance import AcceptanceRules, Verdict, judge
from processing.normalize import MAD_TO_SIGMA
from processing.stars import FrameQuality, StarTable

F64 = npt.NDArray[np.float64]

# Noise from at most this many pixel differences (~0.2 % precision).
_NOISE_SAMPLES = 1 << 19
# Star wings sink into the noise ~5 sigma = 4.2 HFR from a Gaussian star's centre; a
# detection with a huge HFR (a blend, a nebula knot) masks no more than the cap. Below the
# clear fraction the mask would leave too few pixels, and the whole frame is used instead.
_STAR_MASK_HFR = 4.0
_STAR_MASK_MAX_PX = 30
_MIN_CLEAR_FRACTION = 0.1
# The PSF signal is the median peak of this many brightest unsaturated stars: mostly the same
# stars in every dithered frame, so the figure compares frames rather than detection depth.
_SIGNAL_STARS = 25
# A Gaussian's HFR is sigma sqrt(2 ln 2); its peak is flux / (2 pi sigma^2).
_PEAK_PER_FLUX_HFR2 = math.log(2.0) / math.pi


class Weighting(enum.StrEnum):
    """none: equal weights. noise: inverse variance of the normalised frame (1 / (g sigma)^2,
    g its normalisation gain). psf_signal: (star peak / noise)^2, in the spirit of
    PixInsight's PSF Signal Weight: it rewards transparency, sharp stars and low noise
    alike and does not depend on the normalisation."""

    NONE = "none"
    NOISE = "noise"
    PSF_SIGNAL = "psf_signal"


@dataclass(frozen=True)
class FrameMetrics:
    """One calibrated light's figures.

    - quality: star count, median HFR / FWHM / eccentricity of unsaturated stars, background
      (median, ADU), noise (below) and saturated fraction, as capture-time acceptance uses.
    - noise_adu: 1.4826 MAD of horizontal pixel differences / sqrt 2, away from detected
      stars (unless they crowd the frame): the pixel-to-pixel noise of the background,
      blind to gradients and nebulae.
    - snr: median star flux / (noise x sqrt(area of a circle of radius 2 HFR)): the
      background-limited signal-to-noise of a typical star; None without stars.
    - psf_signal: median peak (ADU) of the brightest unsaturated stars, from flux and HFR as
      for a Gaussian; None without stars.
    """

    quality: FrameQuality
    noise_adu: float
    snr: float | None
    psf_signal: float | None


def measure_metrics(
    image: npt.NDArray[np.generic], stars: StarTable, *, saturation_adu: float
) -> FrameMetrics:
    """Metrics of a ``(y, x)`` frame from its detected stars. The input is not modified.

    Raises ValueError when `image` is not 2-D, has fewer than two columns, or no pixel
    clear of stars.
    """
    if image.ndim != 2 or image.shape[1] < 2:
        raise ValueError(f"expected a 2-D frame (y, x), got shape {image.shape}")
    row_step = max(1, image.size // _NOISE_SAMPLES)
    rows = np.asarray(image[::row_step], dtype=np.float32)
    clear = ~_star_mask(image.shape, stars)[::row_step]
    pairs = clear[:, 1:] & clear[:, :-1]
    all_differences = rows[:, 1:] - rows[:, :-1]
    # A crowded field may leave few star-free pixels: then all pixels, stars and all.
    enough = pairs.mean() >= _MIN_CLEAR_FRACTION
    differences = all_differences[pairs] if enough else all_differences.ravel()
    differences = differences[np.isfinite(differences)]
    if differences.size == 0:
        raise ValueError("the frame has no finite pixels")
    mad = float(np.median(np.abs(differences - np.median(differences))))
    noise = MAD_TO_SIGMA * mad / math.sqrt(2.0)
    finite = rows[np.isfinite(rows)]
    background = float(np.median(finite))
    unsaturated = stars.peak_adu < saturation_adu
    hfr = stars.hfr_px[unsaturated]
    flux = stars.flux[unsaturated]
    quality = FrameQuality(
        star_count=len(stars),
        hfr_px=_median(hfr),
        fwhm_px=_median(stars.fwhm_px[unsaturated]),
        eccentricity=_median(stars.eccentricity[unsaturated]),
        background_adu=background,
        noise_adu=noise,
        saturated_fraction=float(np.mean(finite >= saturation_adu)),
    )
    snr = psf_signal = None
    if len(hfr) and noise > 0:
        area = math.pi * (2.0 * hfr) ** 2
        snr = float(np.median(flux / (noise * np.sqrt(area))))
        bright = np.argsort(-flux, kind="stable")[:_SIGNAL_STARS]
        psf_signal = float(np.median(_PEAK_PER_FLUX_HFR2 * flux[bright] / hfr[bright] ** 2))
    return FrameMetrics(quality=quality, noise_adu=noise, snr=snr, psf_signal=psf_signal)


def frame_weights(
    metrics: Sequence[FrameMetrics],
    weighting: Weighting,
    normalization_gain: npt.ArrayLike | None = None,
) -> F64:
    """Weights (N,) scaled so the best frame has 1; 0 for a frame without a usable figure.

    `normalization_gain` (N,) is the gain each frame's normalisation applies (needed for
    noise weights; `FrameNormalization.gain`). Raises ValueError for an empty list or gains
    of the wrong length.
    """
    if not metrics:
        raise ValueError("no frames to weigh")
    count = len(metrics)
    gain = np.ones(count) if normalization_gain is None else np.asarray(normalization_gain, float)
    if gain.shape != (count,):
        raise ValueError(f"need {count} normalisation gains, got shape {gain.shape}")
    if weighting is Weighting.NONE:
        return np.ones(count)
    raw = np.zeros(count)
    for i, m in enumerate(metrics):
        if m.noise_adu <= 0:
            continue
        if weighting is Weighting.NOISE:
            raw[i] = 1.0 / (gain[i] * m.noise_adu) ** 2
        elif m.psf_signal is not None and m.psf_signal > 0:
            raw[i] = (m.psf_signal / m.noise_adu) ** 2
    best = raw.max()
    weights: F64 = raw / best if best > 0 else np.ones(count)
    return weights


@dataclass(frozen=True)
class SubframeRules:
    """Outlier-frame rules: `acceptance` as at capture time (relative to the median of the
    other frames), plus a floor on the weight: a frame below min_weight x the median weight
    adds little signal and is most likely clouded, blurred or bright with moonlight."""

    acceptance: AcceptanceRules = field(default_factory=AcceptanceRules)
    min_weight: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_weight < 1.0:
            raise ValueError(f"min_weight must be within [0, 1), got {self.min_weight}")


def judge_frames(
    metrics: Sequence[FrameMetrics], weights: npt.ArrayLike, rules: SubframeRules = SubframeRules()
) -> list[Verdict]:
    """Accept or reject every frame against the others (one `Verdict` per frame).

    Raises ValueError when weights and metrics differ in length.
    """
    weight = np.asarray(weights, dtype=np.float64)
    if weight.shape != (len(metrics),):
        raise ValueError(f"need {len(metrics)} weights, got shape {weight.shape}")
    median_weight = float(np.median(weight)) if len(weight) else 0.0
    verdicts = []
    for i, m in enumerate(metrics):
        others = [o.quality for j, o in enumerate(metrics) if j != i]
        verdict = judge(m.quality, others, rules.acceptance)
        reasons = list(verdict.reasons)
        if median_weight > 0 and weight[i] < rules.min_weight * median_weight:
            reasons.append(
                f"weight {weight[i]:.3g} < {rules.min_weight:g} x median {median_weight:.3g}"
            )
        verdicts.append(Verdict(accepted=not reasons, reasons=tuple(reasons)))
    return verdicts


def choose_reference(weights: npt.ArrayLike, accepted: Sequence[bool] | None = None) -> int:
    """Index of the best-weighted (accepted) frame: the grid everything is registered to.

    Raises ValueError when no frame is accepted.
    """
    weight = np.asarray(weights, dtype=np.float64)
    allowed = np.ones(len(weight), bool) if accepted is None else np.asarray(accepted, bool)
    if not allowed.any():
        raise ValueError("no accepted frame to choose a reference from")
    return int(np.argmax(np.where(allowed, weight, -np.inf)))


def _star_mask(shape: tuple[int, ...], stars: StarTable) -> npt.NDArray[np.bool_]:
    """Squares reaching 4 HFR (~5 sigma of a Gaussian star, capped) around detected stars:
    their wings would inflate the noise."""
    mask = np.zeros(shape[:2], dtype=bool)
    height, width = shape[0], shape[1]
    for y, x, hfr in zip(stars.y, stars.x, stars.hfr_px, strict=True):
        radius = min(math.ceil(_STAR_MASK_HFR * hfr) + 1, _STAR_MASK_MAX_PX)
        cy, cx = round(y), round(x)
        mask[
            max(0, cy - radius) : min(height, cy + radius + 1),
            max(0, cx - radius) : min(width, cx + radius + 1),
        ] = True
    return mask


def _median(values: F64) -> float | None:
    return float(np.median(values)) if len(values) else None
