"""Per-frame metrics of calibrated lights, frame weights, outlier frames and the reference.

Metrics reuse one star detection per frame (`processing.stars.detect_stars`, which the
registration needs anyway) and fill the same `FrameQuality` the capture-time acceptance
uses. The outlier rules are not the capture-time ones: at capture a frame meets absolute
limits and the night so far; here the whole group is known, so a light is judged against
the group's own median and spread (`SubframeRules`), as Siril and PixInsight's
SubframeSelector do, and what is normal for one telescope is normal for its set.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from processing.acceptance import Verdict
from processing.normalize import MAD_TO_SIGMA
from processing.stars import FrameQuality, StarTable

F64 = npt.NDArray[np.float64]

# Noise from at most this many pixel differences (~0.3 % precision, finer than the frames
# of a night differ; each halving of the sample halves the medians' time).
_NOISE_SAMPLES = 1 << 17
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
    alike and does not depend on the normalisation. psf_noise: the geometric mean of the
    two, peak / (g sigma^2): half psf_signal's reward for sharp stars.

    The peak of a star goes as 1 / HFR^2, so psf_signal weighs a frame by HFR^-4: over a
    night whose seeing varies by 20 %, a few sharp frames carry the stack and the others
    add little, so the sky noise is that of fewer frames (`effective_frames`)."""

    NONE = "none"
    NOISE = "noise"
    PSF_SIGNAL = "psf_signal"
    PSF_NOISE = "psf_noise"


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
        inverse_variance = 1.0 / (gain[i] * m.noise_adu) ** 2
        if weighting is Weighting.NOISE:
            raw[i] = inverse_variance
        elif m.psf_signal is not None and m.psf_signal > 0:
            psf_signal = (m.psf_signal / m.noise_adu) ** 2
            raw[i] = (
                psf_signal
                if weighting is Weighting.PSF_SIGNAL
                else math.sqrt(psf_signal * inverse_variance)
            )
    best = raw.max()
    weights: F64 = raw / best if best > 0 else np.ones(count)
    return weights


def effective_frames(weights: npt.ArrayLike) -> float:
    """(sum w)^2 / sum w^2: how many equal frames would leave the same noise in a weighted
    mean of frames of equal noise (N for equal weights, 1 when one frame has them all)."""
    w = np.asarray(weights, dtype=np.float64)
    total = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / total if total > 0 else 0.0


@dataclass(frozen=True)
class SubframeRules:
    """Outlier-frame rules, relative to the group of lights being integrated.

    In the spirit of Siril's and PixInsight's Blink/SubframeSelector: a light is an outlier
    when one of its figures lies more than `reject_sigma` robust standard deviations on the
    bad side of the group's median. The standard deviation is 1.4826 x the MAD of the whole
    group (the light itself included; the median and the MAD ignore a few outliers), but
    never less than a floor, so a very uniform set does not lose a light over a difference
    no one could see:

    - eccentricity: above median + k sigma; sigma >= `eccentricity_sigma_floor` (0.03,
      so at least +0.09 with k = 3: from 0.68 to 0.77 the minor/major axis ratio falls
      from 0.73 to 0.64, visible on a star; a per-frame median over a few dozen stars
      scatters by 0.01-0.02). Alt-az mounts and fast short exposures show 0.6-0.7 on every
      frame; that is the set's normal, not an outlier.
    - FWHM: above median + k sigma; sigma >= `fwhm_sigma_floor` x the median (0.05: at
      least +15 %, a focus shift or a seeing change one notices; seeing alone varies by
      ~20 % over a night, which widens the MAD instead).
    - background (the frame's median level, ADU): above median + k sigma; sigma >=
      `background_sigma_floor` x |median| (0.05) and >= the group's median pixel noise (a
      change of the sky below the pixel-to-pixel noise is invisible; this keeps the floor
      when a dark-subtracted sky is near zero). A sky brightening steadily through the
      night spreads the values evenly and widens the MAD, so only a sudden jump (moon,
      dawn, lit clouds) stands out.
    - star count: below median - k sigma; sigma >= `stars_sigma_floor` x the median (0.1,
      so at least -30 % with k = 3) and >= sqrt(median), the count's own Poisson scatter
      near the detection limit. Thin cloud takes stars away; 30 % fewer is about half a
      magnitude of extinction.

    Relative rules apply once at least `min_frames` lights have the figure: the median of
    one or two frames is just those frames. A light below `min_weight` x the median weight
    adds little signal and is most likely clouded, blurred or bright with moonlight.

    Absolute limits, off (None) by default because what is normal depends on the optics
    and the mount: `max_eccentricity` (0-1), `max_fwhm_px`, `min_stars`.

    Raises ValueError from construction for a value outside its range (named in the message).
    """

    reject_sigma: float = 3.0
    min_frames: int = 3
    eccentricity_sigma_floor: float = 0.03
    fwhm_sigma_floor: float = 0.05
    background_sigma_floor: float = 0.05
    stars_sigma_floor: float = 0.1
    min_weight: float = 0.25
    max_eccentricity: float | None = None
    max_fwhm_px: float | None = None
    min_stars: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.reject_sigma <= MAX_REJECT_SIGMA:
            raise ValueError(
                f"reject_sigma must be within (0, {MAX_REJECT_SIGMA:g}], got {self.reject_sigma}"
            )
        if self.min_frames < 2:
            raise ValueError(f"min_frames must be >= 2, got {self.min_frames}")
        floors = {
            "eccentricity_sigma_floor": self.eccentricity_sigma_floor,
            "fwhm_sigma_floor": self.fwhm_sigma_floor,
            "background_sigma_floor": self.background_sigma_floor,
            "stars_sigma_floor": self.stars_sigma_floor,
        }
        for name, value in floors.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if not 0.0 <= self.min_weight < 1.0:
            raise ValueError(f"min_weight must be within [0, 1), got {self.min_weight}")
        if self.max_eccentricity is not None and not 0.0 < self.max_eccentricity <= 1.0:
            raise ValueError(f"max_eccentricity must be within (0, 1], got {self.max_eccentricity}")
        if self.max_fwhm_px is not None and not self.max_fwhm_px > 0.0:
            raise ValueError(f"max_fwhm_px must be > 0, got {self.max_fwhm_px}")
        if self.min_stars is not None and self.min_stars < 0:
            raise ValueError(f"min_stars must be >= 0, got {self.min_stars}")


MAX_REJECT_SIGMA = 100.0
"""Largest `SubframeRules.reject_sigma`: beyond it the relative rules are off in effect."""


@dataclass(frozen=True)
class _Spread:
    """A figure's robust statistics over the group: median, sigma and whether the floor
    set sigma (rather than 1.4826 MAD)."""

    median: float
    sigma: float
    floored: bool

    def describe(self, sign: str, k: float, digits: str) -> str:
        basis = "sigma floor" if self.floored else "MAD sigma"
        return f"median {self.median:{digits}} {sign} {k:g} x {self.sigma:{digits}} {basis}"


def _spread(values: Sequence[float | None], floor: float, min_frames: int) -> _Spread | None:
    """Median and floored 1.4826 MAD of the known values; None with fewer than min_frames."""
    known = np.array([v for v in values if v is not None], dtype=np.float64)
    if len(known) < min_frames:
        return None
    median = float(np.median(known))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(known - median)))
    return _Spread(median, max(sigma, floor), sigma < floor)


@dataclass(frozen=True)
class _Test:
    """One figure's rule over a group: `high` True when a large value is the bad side."""

    name: str
    unit: str
    digits: str
    high: bool
    values: list[float | None]
    absolute: float | None
    spread: _Spread | None
    hint: str

    def reason(self, index: int, k: float) -> str | None:
        value = self.values[index]
        if value is None:
            return None
        sign, word, compare = ("+", "maximum", ">") if self.high else ("-", "minimum", "<")
        shown = f"{self.name} {value:{self.digits}}{self.unit}"
        if self.absolute is not None and self._worse(value, self.absolute):
            return f"{shown} {compare} {word} {self.absolute:g}{self.unit}"
        if self.spread is None:
            return None
        limit = self.spread.median + (k if self.high else -k) * self.spread.sigma
        if not self._worse(value, limit):
            return None
        return (
            f"{shown} {compare} {limit:{self.digits}}{self.unit} "
            f"({self.spread.describe(sign, k, self.digits)}): {self.hint}"
        )

    def _worse(self, value: float, limit: float) -> bool:
        return value > limit if self.high else value < limit


def _tests(metrics: Sequence[FrameMetrics], rules: SubframeRules) -> list[_Test]:
    """The group's rules with their medians, floored sigmas and absolute limits."""
    quality = [m.quality for m in metrics]
    n = rules.min_frames

    def floor_of(values: Sequence[float | None], fraction: float) -> float:
        known = [abs(v) for v in values if v is not None]
        return fraction * float(np.median(known)) if known else 0.0

    stars: list[float | None] = [float(q.star_count) for q in quality]
    median_stars = float(np.median([float(q.star_count) for q in quality]))
    star_floor = max(floor_of(stars, rules.stars_sigma_floor), math.sqrt(median_stars))
    eccentricity = [q.eccentricity for q in quality]
    fwhm = [q.fwhm_px for q in quality]
    background: list[float | None] = [q.background_adu for q in quality]
    noise = float(np.median([m.noise_adu for m in metrics]))
    background_floor = max(floor_of(background, rules.background_sigma_floor), noise)
    min_stars = None if rules.min_stars is None else float(rules.min_stars)
    return [
        _Test(
            "stars", "", ".0f", False, stars, min_stars, _spread(stars, star_floor, n), "clouds?"
        ),
        _Test(
            "eccentricity",
            "",
            ".2f",
            True,
            eccentricity,
            rules.max_eccentricity,
            _spread(eccentricity, rules.eccentricity_sigma_floor, n),
            "trailing, wind or guiding?",
        ),
        _Test(
            "FWHM",
            " px",
            ".2f",
            True,
            fwhm,
            rules.max_fwhm_px,
            _spread(fwhm, floor_of(fwhm, rules.fwhm_sigma_floor), n),
            "focus or seeing?",
        ),
        _Test(
            "background",
            " ADU",
            ".4g",
            True,
            background,
            None,
            _spread(background, background_floor, n),
            "moon, dawn or clouds?",
        ),
    ]


def judge_frames(
    metrics: Sequence[FrameMetrics], weights: npt.ArrayLike, rules: SubframeRules = SubframeRules()
) -> list[Verdict]:
    """Accept or reject every frame against its group (one `Verdict` per frame; each reason
    names the figure, the limit and how the limit was set, see `SubframeRules`).

    Raises ValueError when weights and metrics differ in length.
    """
    weight = np.asarray(weights, dtype=np.float64)
    if weight.shape != (len(metrics),):
        raise ValueError(f"need {len(metrics)} weights, got shape {weight.shape}")
    if not metrics:
        return []
    median_weight = float(np.median(weight))
    tests = _tests(metrics, rules)
    verdicts = []
    for i in range(len(metrics)):
        reasons = [r for test in tests if (r := test.reason(i, rules.reject_sigma)) is not None]
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
