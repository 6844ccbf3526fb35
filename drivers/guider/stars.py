"""Guide stars: choosing them in a frame and finding them again in the next ones.

Pure functions on `processing.stars.StarTable`s, in pixels with axes (y, x). The guider follows
a small set of stars together and averages their displacement: a guide camera sees only a few
catalog stars, each centroid is noisy (undersampled stars put most of their light in one
pixel, so a single centroid jumps by up to half a pixel), and the mean of several independent
centroids is both steadier and survives one star fading or being hit by a neighbour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from processing.stars import StarTable

FloatArray = npt.NDArray[np.float64]

# Width of the ring around a centroid box whose median is the local sky level.
_SKY_RING_PX = 2


@dataclass(frozen=True)
class SelectionConfig:
    """Which detections may serve as guide stars.

    - max_stars: how many to follow together (multi-star averaging).
    - edge_margin_px: keep this far from the border so that drift and dithers do not push a
      star off the sensor.
    - isolation_px: no other detection this close, so a neighbour never gets matched instead.
    - saturation_fraction: a star whose peak reaches this fraction of the saturation level
      counts as saturated; saturated stars are used only after all unsaturated ones, because
      their clipped cores make centroids coarser.
    """

    max_stars: int = 8
    edge_margin_px: float = 30.0
    isolation_px: float = 15.0
    saturation_fraction: float = 0.95

    def __post_init__(self) -> None:
        if self.max_stars < 1:
            raise ValueError(f"max_stars must be >= 1, got {self.max_stars}")
        if self.edge_margin_px < 0 or self.isolation_px < 0:
            raise ValueError("edge_margin_px and isolation_px must not be negative")
        if not 0 < self.saturation_fraction <= 1:
            raise ValueError("saturation_fraction must be within (0, 1]")


@dataclass(frozen=True, eq=False)
class GuideStars:
    """The reference positions of the stars followed, px; `saturated` flags clipped ones."""

    y: FloatArray
    x: FloatArray
    flux: FloatArray
    saturated: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.y)

    @property
    def primary(self) -> tuple[float, float]:
        """The first (best) star's position, (y, x): where the lock position is drawn."""
        return float(self.y[0]), float(self.x[0])


@dataclass(frozen=True)
class Fix:
    """Where the guide stars are now: their mean displacement from the reference positions.

    dy, dx: px; matched: stars used in the mean; scatter_px: RMS of the used stars' own
    displacements about the mean (how much the centroids disagree).
    """

    dy: float
    dx: float
    matched: int
    scatter_px: float


def select_guide_stars(
    stars: StarTable,
    shape: tuple[int, int],
    saturation_adu: float,
    config: SelectionConfig = SelectionConfig(),
) -> GuideStars:
    """Pick up to `config.max_stars` guide stars: inside the margin, isolated, unsaturated
    first, then brightest first. An empty result means no usable star."""
    height, width = shape
    y, x = stars.y, stars.x
    margin = config.edge_margin_px
    usable = (
        np.isfinite(y)
        & np.isfinite(x)
        & np.isfinite(stars.flux)
        & (stars.flux > 0)
        & (y >= margin)
        & (y <= height - 1 - margin)
        & (x >= margin)
        & (x <= width - 1 - margin)
    )
    if len(stars) > 1:
        distance = np.hypot(y[:, None] - y[None, :], x[:, None] - x[None, :])
        np.fill_diagonal(distance, np.inf)
        usable &= distance.min(axis=1) > config.isolation_px
    saturated = stars.peak_adu >= config.saturation_fraction * saturation_adu
    candidates = np.flatnonzero(usable)
    # Unsaturated before saturated, each group brightest first.
    order = np.lexsort((-stars.flux[candidates], saturated[candidates]))
    chosen = candidates[order[: config.max_stars]]
    return GuideStars(
        y=y[chosen].astype(np.float64),
        x=x[chosen].astype(np.float64),
        flux=stars.flux[chosen].astype(np.float64),
        saturated=saturated[chosen],
    )


def refine_centroids(
    image: npt.NDArray[np.generic],
    stars: StarTable,
    *,
    max_hfr_px: float = 1.0,
    radius_px: int = 2,
) -> StarTable:
    """Replace the positions of small stars (HFR under `max_hfr_px`) by first moments in a
    box around each.

    A guider needs centroids that move smoothly with the star. sep's windowed positions
    weight pixels by a Gaussian as narrow as the star, which for stars of about one pixel
    ignores the wings and snaps the position towards the pixel centre (a staircase). The
    plain first moment of the sky-subtracted box (half-width `radius_px`; sky from the median
    of a ring just outside; one re-centring) keeps the wings' information. Wider stars keep
    sep's windowed position, the better estimator once the window spans pixels; so do stars
    too close to the border. `image` is not modified.
    """
    height, width = image.shape
    ys, xs = stars.y.copy(), stars.x.copy()
    radius = radius_px
    for i in range(len(stars)):
        if not (np.isfinite(ys[i]) and np.isfinite(xs[i]) and stars.hfr_px[i] < max_hfr_px):
            continue
        outer = radius + _SKY_RING_PX
        cy, cx = round(float(ys[i])), round(float(xs[i]))
        for _ in range(2):
            if not (outer <= cy < height - outer and outer <= cx < width - outer):
                break
            patch = np.asarray(
                image[cy - outer : cy + outer + 1, cx - outer : cx + outer + 1], dtype=np.float64
            )
            ring = np.ones(patch.shape, dtype=bool)
            ring[_SKY_RING_PX:-_SKY_RING_PX, _SKY_RING_PX:-_SKY_RING_PX] = False
            core = patch[_SKY_RING_PX:-_SKY_RING_PX, _SKY_RING_PX:-_SKY_RING_PX]
            core = np.clip(core - np.median(patch[ring]), 0.0, None)
            total = core.sum()
            if total <= 0:
                break
            offsets = np.arange(-radius, radius + 1, dtype=np.float64)
            y = cy + float((core.sum(axis=1) * offsets).sum() / total)
            x = cx + float((core.sum(axis=0) * offsets).sum() / total)
            ys[i], xs[i] = y, x
            if (round(y), round(x)) == (cy, cx):
                break
            cy, cx = round(y), round(x)
    return replace(stars, y=ys, x=xs)


def min_matches(reference: GuideStars, fraction: float) -> int:
    """Stars that must be found for a fix: `fraction` of the reference, at least one."""
    return max(1, math.ceil(fraction * len(reference)))


def locate(
    reference: GuideStars,
    stars: StarTable,
    predicted: tuple[float, float],
    *,
    search_radius_px: float,
    outlier_px: float,
    required: int,
) -> Fix | None:
    """Find the reference stars near their predicted places (reference + `predicted` (dy, dx)).

    Each reference star takes the nearest detection within `search_radius_px` (a detection
    claimed twice goes to the closer star). Displacements further than `outlier_px` from their
    median are dropped (a wrong match, a star merged with noise) and the rest averaged.
    None when fewer than `required` stars remain: the stars are lost here.
    """
    if len(reference) == 0 or len(stars) == 0:
        return None
    py = reference.y + predicted[0]
    px = reference.x + predicted[1]
    distance = np.hypot(py[:, None] - stars.y[None, :], px[:, None] - stars.x[None, :])
    nearest = np.argmin(distance, axis=1)
    nearest_distance = distance[np.arange(len(reference)), nearest]
    found = nearest_distance <= search_radius_px
    for detection in np.unique(nearest[found]):
        claimants = np.flatnonzero(found & (nearest == detection))
        if len(claimants) > 1:
            keep = claimants[np.argmin(nearest_distance[claimants])]
            found[claimants[claimants != keep]] = False
    index = np.flatnonzero(found)
    if len(index) < required:
        return None
    dy = stars.y[nearest[index]] - reference.y[index]
    dx = stars.x[nearest[index]] - reference.x[index]
    return _robust_mean(dy, dx, outlier_px, required)


def find_pattern(
    reference: GuideStars,
    stars: StarTable,
    *,
    tolerance_px: float,
    required: int,
    max_detections: int = 60,
) -> Fix | None:
    """Find the reference stars anywhere in the frame by their pattern (a wide reacquire).

    Every pairing of a reference star with a detection proposes a displacement; the one that
    brings the most reference stars within `tolerance_px` of a detection wins. A lone star
    matches anything, so at least two stars must agree (and `required`). None if none does.
    """
    need = max(2, required)
    if len(reference) < need or len(stars) == 0:
        return None
    count = min(len(stars), max_detections)
    sy, sx = stars.y[:count], stars.x[:count]  # StarTable is brightest first
    cand_dy = (sy[None, :] - reference.y[:, None]).ravel()
    cand_dx = (sx[None, :] - reference.x[:, None]).ravel()
    # For every candidate displacement, the distance of each shifted reference star to its
    # nearest detection: candidates x reference stars.
    shifted_y = reference.y[None, :] + cand_dy[:, None]
    shifted_x = reference.x[None, :] + cand_dx[:, None]
    gap = np.hypot(
        shifted_y[:, :, None] - sy[None, None, :], shifted_x[:, :, None] - sx[None, None, :]
    ).min(axis=2)
    hits = gap <= tolerance_px
    score = hits.sum(axis=1)
    best = int(score.max())
    if best < need:
        return None
    ties = np.flatnonzero(score == best)
    residual = np.where(hits[ties], gap[ties], 0.0).sum(axis=1)
    winner = int(ties[np.argmin(residual)])
    return locate(
        reference,
        stars,
        (float(cand_dy[winner]), float(cand_dx[winner])),
        search_radius_px=tolerance_px,
        outlier_px=tolerance_px,
        required=need,
    )


@dataclass(frozen=True)
class Matcher:
    """How the guide stars are found again in a frame's detections (see `locate` and
    `find_pattern`); the guider's settings of the same names."""

    search_radius_px: float
    outlier_px: float
    reacquire_tolerance_px: float
    min_matched_fraction: float

    def near(
        self, reference: GuideStars, stars: StarTable, predicted: tuple[float, float]
    ) -> Fix | None:
        """The reference stars near their predicted displacement (dy, dx), or None."""
        return locate(
            reference,
            stars,
            predicted,
            search_radius_px=self.search_radius_px,
            outlier_px=self.outlier_px,
            required=min_matches(reference, self.min_matched_fraction),
        )

    def anywhere(self, reference: GuideStars, stars: StarTable) -> Fix | None:
        """The reference stars anywhere in the frame by their pattern, or None."""
        return find_pattern(
            reference,
            stars,
            tolerance_px=self.reacquire_tolerance_px,
            required=min_matches(reference, self.min_matched_fraction),
        )

    def track(
        self, reference: GuideStars, stars: StarTable, predicted: tuple[float, float]
    ) -> Fix | None:
        """Near the prediction, else anywhere: for a mount that does not move by itself
        between pulses (calibration), where a find far off is not a passing jump."""
        fix = self.near(reference, stars, predicted)
        if fix is None:
            fix = self.anywhere(reference, stars)
        return fix


def _robust_mean(dy: FloatArray, dx: FloatArray, outlier_px: float, required: int) -> Fix | None:
    mid_y, mid_x = float(np.median(dy)), float(np.median(dx))
    keep = np.hypot(dy - mid_y, dx - mid_x) <= outlier_px
    if int(keep.sum()) < required:
        return None
    mean_y, mean_x = float(np.mean(dy[keep])), float(np.mean(dx[keep]))
    scatter = float(np.sqrt(np.mean((dy[keep] - mean_y) ** 2 + (dx[keep] - mean_x) ** 2)))
    return Fix(dy=mean_y, dx=mean_x, matched=int(keep.sum()), scatter_px=scatter)
