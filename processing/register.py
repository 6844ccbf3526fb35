"""Registration: find the transform from a reference frame to each frame by star patterns,
then resample the frame onto the reference grid.

Matching is by triangles: each of the brightest stars with pairs of its nearest neighbours
forms triangles, described by the ratios of their sides, which do not change under shift,
rotation and scale. Every pair of similar triangles proposes a transform; the one most stars
agree with wins (a RANSAC whose hypotheses come from the pattern matches rather than random
draws). The winner then pairs up all detected stars, and a least-squares fit over those
pairs (after OpenCV's RANSAC drops the outliers) gives the final transform.

Transforms are 3 x 3 matrices on homogeneous ``(y, x, 1)`` column vectors mapping reference
pixel coordinates to frame pixel coordinates, (0, 0) the centre of the first pixel, as in
`processing.synthetic`; OpenCV's ``(x, y)`` order appears only at its calls.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations

import cv2
import numpy as np
import numpy.typing as npt
from numba import njit
from scipy.spatial import cKDTree

from processing.stars import StarTable

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

# (y, x) <-> (x, y): conjugating a matrix with this swaps its axis order.
_SWAP = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
# Lanczos-a kernels read pixels floor(x) - a + 1 .. floor(x) + a; the warp is exact only
# where all of them lie inside the frame. Lanczos-3 mostly runs in the 8-tap two-pass warp
# (its outer taps weigh 0), so it keeps Lanczos-4's area: one pixel less on each border.
_LANCZOS4_REACH = (3, 4)
_LANCZOS3_REACH = _LANCZOS4_REACH
_BICUBIC_REACH = (1, 2)
# Final fit: pairs further than this many robust sigmas from the fit are dropped, in up to
# this many rounds. 3 sigma of a 2-D Gaussian keeps 98.9 % of clean pairs.
_CLIP_SIGMAS = 3.0
_CLIP_ROUNDS = 3
_RAYLEIGH_MEDIAN = math.sqrt(2.0 * math.log(2.0))
# The two-pass Lanczos-4 warp: positions within a pixel its weight table has, and the
# transforms it takes: |a| >= 0.5 and |d / a| <= 0.1 (rotations within ~6 degrees of 0 or
# 180, as dithers and meridian flips give), so that the first pass's rows, sampled at the
# integer rows around the true point, stay inside the valid area; OpenCV's one-pass warp
# does the others.
_TABLE_STEPS = 1024
_SEPARABLE_MIN_SCALE = 0.5
_SEPARABLE_MAX_SHEAR = 0.1


class Motion(enum.StrEnum):
    """The transform model: similarity (shift, rotation, one scale: a rigid camera),
    affine (adds shear and unequal scales: differential refraction, another camera),
    homography (perspective: a wide field through another optical train)."""

    SIMILARITY = "similarity"
    AFFINE = "affine"
    HOMOGRAPHY = "homography"


class Interpolation(enum.StrEnum):
    """Resampling kernels: lanczos4 (8 x 8 taps), lanczos3 (6 x 6), both in two 1-D passes
    for dithers and flips (own, numba; other turns: OpenCV's warpAffine for lanczos4, an
    exact one-pass kernel for lanczos3), bicubic (OpenCV, 4 x 4). See bench/register.py for
    their measured sharpness, noise and speed."""

    LANCZOS4 = "lanczos4"
    LANCZOS3 = "lanczos3"
    BICUBIC = "bicubic"


@dataclass(frozen=True)
class RegistrationConfig:
    """How star lists are matched (resampling options are `warp`'s).

    - motion: transform model (similarity by default: lights of one camera on one mount).
    - pattern_stars: brightest stars of each frame that form triangles; 40 stars with 5
      neighbours make ~400 triangles (the tests match dithers, rotations and flips).
    - neighbours: each pattern star forms triangles with pairs of this many nearest stars.
    - invariant_tolerance: largest distance between the side-ratio pairs of two triangles
      that may match; 0.01 allows ~0.3 px of centroid error on a 30 px triangle.
    - match_radius_px: a star pairs with the reference star within this distance under a
      proposed transform (consensus counting and the final pairing).
    - ransac_threshold_px: OpenCV's inlier threshold for the final robust fit.
    - min_matches: fewer paired stars than this is a failed registration.
    """

    motion: Motion = Motion.SIMILARITY
    pattern_stars: int = 40
    neighbours: int = 5
    invariant_tolerance: float = 0.01
    match_radius_px: float = 2.0
    ransac_threshold_px: float = 1.0
    min_matches: int = 6

    def __post_init__(self) -> None:
        """Raise ValueError on settings that cannot form or accept a match."""
        if self.pattern_stars < 3 or self.neighbours < 2:
            raise ValueError("need at least 3 pattern stars and 2 neighbours")
        if self.invariant_tolerance <= 0 or self.match_radius_px <= 0:
            raise ValueError("invariant_tolerance and match_radius_px must be positive")
        if self.ransac_threshold_px <= 0 or self.min_matches < 4:
            raise ValueError("ransac_threshold_px must be positive and min_matches >= 4")


class RegistrationError(ValueError):
    """The frame could not be registered (too few stars, no pattern in common): exclude it
    from integration and report why."""


@dataclass(frozen=True, eq=False)
class Transform:
    """Reference -> frame pixel coordinates, 3 x 3 on ``(y, x, 1)``."""

    matrix: F64

    def __post_init__(self) -> None:
        if self.matrix.shape != (3, 3):
            raise ValueError(f"a transform is 3 x 3, got {self.matrix.shape}")

    @classmethod
    def identity(cls) -> Transform:
        return cls(np.eye(3, dtype=np.float64))

    def apply(self, yx: F64) -> F64:
        """Points ``(n, 2)`` in ``(y, x)`` order mapped into the frame."""
        homogeneous = np.column_stack([yx, np.ones(len(yx))]) @ self.matrix.T
        mapped: F64 = homogeneous[:, :2] / homogeneous[:, 2:3]
        return mapped

    def inverse(self) -> Transform:
        inverse = np.linalg.inv(self.matrix).astype(np.float64)
        return Transform(inverse)

    @property
    def shift_yx(self) -> tuple[float, float]:
        """Where the reference origin lands in the frame, px."""
        return float(self.matrix[0, 2]), float(self.matrix[1, 2])

    @property
    def rotation_deg(self) -> float:
        """Rotation turning +x towards +y (clockwise on a screen with y down), degrees."""
        return math.degrees(math.atan2(self.matrix[0, 1], self.matrix[1, 1]))

    @property
    def scale(self) -> float:
        """Mean linear scale (square root of the area ratio)."""
        return math.sqrt(abs(float(np.linalg.det(self.matrix[:2, :2]))))

    def max_distance_px(self, other: Transform, shape: tuple[int, int]) -> float:
        """Largest distance between where the two transforms put the corners and centre of a
        reference frame of `shape`: how far apart their registrations are anywhere."""
        height, width = shape
        points = np.array(
            [[0, 0], [0, width - 1], [height - 1, 0], [height - 1, width - 1]], dtype=np.float64
        )
        points = np.vstack([points, [[(height - 1) / 2, (width - 1) / 2]]])
        return float(np.max(np.linalg.norm(self.apply(points) - other.apply(points), axis=1)))


@dataclass(frozen=True, eq=False)
class Registration:
    """A frame's transform and how well it is supported.

    matched: star pairs in the final fit; rms_px: their residual after it.
    """

    transform: Transform
    matched: int
    rms_px: float


@dataclass(frozen=True, eq=False)
class Warped:
    """A frame resampled onto the reference grid: NaN where `valid` is False (outside the
    frame, or within the kernel's reach of its edge)."""

    image: F32
    valid: Mask


def star_positions(stars: StarTable) -> F64:
    """``(n, 2)`` ``(y, x)`` positions of a star table, brightest first."""
    return np.column_stack([stars.y, stars.x]).astype(np.float64)


def register(
    frame_yx: F64, reference_yx: F64, config: RegistrationConfig = RegistrationConfig()
) -> Registration:
    """The transform from reference to frame from two star lists, brightest first.

    Raises RegistrationError when either list is too short or no consistent match exists.
    """
    for name, stars in (("frame", frame_yx), ("reference", reference_yx)):
        if len(stars) < max(3, config.min_matches):
            raise RegistrationError(f"{name} has {len(stars)} stars; need {config.min_matches}")
    coarse = _pattern_match(frame_yx, reference_yx, config)
    if coarse is None:
        raise RegistrationError("no star pattern in common with the reference")
    transform = coarse
    matched, rms = 0, math.inf
    # Pair all stars under the current transform and refit; a second round picks up the
    # stars the coarse transform placed just outside the radius near the frame's corners.
    for _ in range(2):
        ref_pairs, frame_pairs = _pair(transform, reference_yx, frame_yx, config.match_radius_px)
        if len(ref_pairs) < config.min_matches:
            raise RegistrationError(
                f"only {len(ref_pairs)} stars agree with the pattern match; "
                f"need {config.min_matches}"
            )
        transform, matched, rms = _robust_fit(ref_pairs, frame_pairs, config)
    return Registration(transform=transform, matched=matched, rms_px=rms)


def warp(
    image: npt.NDArray[np.generic],
    transform: Transform,
    shape: tuple[int, int] | None = None,
    interpolation: Interpolation = Interpolation.LANCZOS4,
    *,
    clamp: float | None = 0.5,
) -> Warped:
    """Resample `image` onto a reference grid of `shape` (default: the image's own).

    Output pixel p takes the frame's value at transform(p). With `clamp` c, that value is
    kept within the range [lo, hi] of the 2 x 2 source pixels around transform(p), widened
    by c (hi - lo) on each side: Lanczos and bicubic kernels ring around a cosmic ray or hot
    pixel (lobes of up to -10 % of it a pixel away), which no rejection can tell from sky
    when two frames ring at one spot; ordinary noise rarely overshoots that far, so it keeps
    its texture (None: no clamping). Pixels whose kernel would reach outside the frame are
    invalid and NaN. The input is not modified.
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D frame (y, x), got shape {image.shape}")
    source = np.ascontiguousarray(image, dtype=np.float32)
    out_shape = shape or (source.shape[0], source.shape[1])
    matrix = transform.matrix
    if (
        interpolation in _LANCZOS_ORDER
        and np.array_equal(matrix[2], [0.0, 0.0, 1.0])
        and abs(matrix[0, 0]) >= _SEPARABLE_MIN_SCALE
        and abs(matrix[1, 0]) <= _SEPARABLE_MAX_SHEAR * abs(matrix[0, 0])
    ):
        resampled = np.empty(out_shape, dtype=np.float32)
        valid = np.empty(out_shape, dtype=np.bool_)
        rows = np.empty((source.shape[0], out_shape[1]), dtype=np.float32)
        clamping = -1.0 if clamp is None else float(clamp)
        table = _lanczos_table(_LANCZOS_ORDER[interpolation])
        _lanczos_two_pass(source, matrix, table, clamping, rows, resampled, valid)
        return Warped(image=resampled, valid=valid)
    if interpolation is Interpolation.LANCZOS3:
        resampled = _lanczos3_warp(source, transform, out_shape)
        reach = _LANCZOS3_REACH
    else:
        flag = cv2.INTER_LANCZOS4 if interpolation is Interpolation.LANCZOS4 else cv2.INTER_CUBIC
        reach = _LANCZOS4_REACH if interpolation is Interpolation.LANCZOS4 else _BICUBIC_REACH
        resampled = _cv2_warp(source, transform, out_shape, flag, cv2.BORDER_REFLECT_101)
    valid = _valid_mask(source.shape, transform, out_shape, reach)
    if clamp is None:
        return Warped(image=np.where(valid, resampled, np.float32(np.nan)), valid=valid)
    low, high = _cell_bounds(source, transform, out_shape)
    _clamp_in_place(resampled, low, high, valid, clamp)
    return Warped(image=resampled, valid=valid)


_LANCZOS_ORDER = {Interpolation.LANCZOS4: 4, Interpolation.LANCZOS3: 3}


@functools.cache
def _lanczos_table(order: int) -> F32:
    """Lanczos-`order` weights (order 3 or 4) of the 8 taps floor(s) - 3 .. floor(s) + 4 for
    each of _TABLE_STEPS positions of s within its pixel, each row normalised to 1; taps
    `order` or more pixels from s weigh 0 (Lanczos-3's outer two)."""
    fraction = np.arange(_TABLE_STEPS, dtype=np.float64) / _TABLE_STEPS
    distance = fraction[:, None] - np.arange(-3, 5, dtype=np.float64)[None, :]
    kernel = np.sinc(distance) * np.sinc(distance / order)
    weights = np.where(np.abs(distance) < order, kernel, 0.0)
    table: F32 = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
    return table


@njit(cache=True, nogil=True)
def _lanczos_two_pass(
    source: F32,
    matrix: F64,
    table: F32,
    clamp: float,
    rows: F32,
    out: F32,
    valid: Mask,
) -> None:
    """Lanczos resampling of an affine transform in two 1-D passes (Catmull & Smith), with
    `table`'s 8 taps (`_lanczos_table`: Lanczos-4, or Lanczos-3 with the outer two at 0):
    along each source row to the output columns, then along each output column to the
    output rows. Output (y, x) samples the frame at sy = a y + b x + c, sx = d y + e x + f;
    with y = (sy - b x - c) / a, a source row sy is sampled at sx = (d / a) sy +
    (e - d b / a) x + (f - d c / a). 16 taps a pixel instead of 64, with weights from a
    table 32 times finer than OpenCV's. Validity and clamping as `warp` describes, in the
    same pass.

    Speed (about twice the per-pixel loops'): each pass first finds every column's taps
    and weight row (once for all source rows under a pure shift), then sums the taps, the
    second pass over runs of an output row whose 8 tap rows are the same row views. The
    sums keep the tap order, so the result does not depend on how the loops are cut."""
    a, b, c = matrix[0, 0], matrix[0, 1], matrix[0, 2]
    d, e, f = matrix[1, 0], matrix[1, 1], matrix[1, 2]
    source_height, source_width = source.shape
    height, width = out.shape
    steps = table.shape[0]
    row_step, column_step, start = d / a, e - d * b / a, f - d * c / a
    first_tap = np.empty(width, dtype=np.int64)
    weight_row = np.empty(width, dtype=np.int64)
    for sy in range(source_height):
        if sy == 0 or row_step != 0.0:
            for x in range(width):
                sx = row_step * sy + column_step * x + start
                ix = math.floor(sx)
                first_tap[x] = ix - 3
                weight_row[x] = min(int((sx - ix) * steps), steps - 1)
        source_row, row = source[sy], rows[sy]
        for x in range(width):
            first = first_tap[x]
            if first < 0 or first > source_width - 8:
                row[x] = 0.0
                continue
            k = weight_row[x]
            total = np.float32(0.0)
            for i in range(8):
                total += table[k, i] * source_row[first + i]
            row[x] = total
    low_reach, high_reach = _LANCZOS4_REACH
    margin = np.float32(clamp)
    clamping = clamp >= 0
    cell_column = np.empty(width, dtype=np.int64)
    for y in range(height):
        inside, line = valid[y], out[y]
        for x in range(width):
            sy = a * y + b * x + c
            sx = d * y + e * x + f
            inside[x] = _inside(sy, source_height, low_reach, high_reach) and _inside(
                sx, source_width, low_reach, high_reach
            )
            iy = math.floor(sy)
            first_tap[x] = iy - 3
            cell_column[x] = math.floor(sx)
            weight_row[x] = min(int((sy - iy) * steps), steps - 1)
        x = 0
        while x < width:
            if not inside[x]:
                line[x] = np.nan
                x += 1
                continue
            first = first_tap[x]
            end = x + 1
            while end < width and inside[end] and first_tap[end] == first:
                end += 1
            r0, r1 = rows[first, x:end], rows[first + 1, x:end]
            r2, r3 = rows[first + 2, x:end], rows[first + 3, x:end]
            r4, r5 = rows[first + 4, x:end], rows[first + 5, x:end]
            r6, r7 = rows[first + 6, x:end], rows[first + 7, x:end]
            top, bottom = source[first + 3], source[first + 4]
            ks, columns, run = weight_row[x:end], cell_column[x:end], line[x:end]
            for i in range(end - x):
                k = ks[i]
                total = np.float32(0.0)
                total += table[k, 0] * r0[i]
                total += table[k, 1] * r1[i]
                total += table[k, 2] * r2[i]
                total += table[k, 3] * r3[i]
                total += table[k, 4] * r4[i]
                total += table[k, 5] * r5[i]
                total += table[k, 6] * r6[i]
                total += table[k, 7] * r7[i]
                if clamping:
                    ix = columns[i]
                    p, q = top[ix], top[ix + 1]
                    r, t = bottom[ix], bottom[ix + 1]
                    lo = min(min(p, q), min(r, t))
                    hi = max(max(p, q), max(r, t))
                    spread = margin * (hi - lo)
                    total = min(max(total, lo - spread), hi + spread)
                run[i] = total
            x = end


@njit(cache=True, nogil=True)
def _inside(s: float, size: int, reach_low: int, reach_high: int) -> bool:
    """Whether a kernel reading floor(s) - reach_low .. floor(s) + reach_high lies in the
    frame with a pixel to spare: the rounding `_valid_mask` applies."""
    nearest = math.floor(s + 0.5)
    return reach_low + 1 <= nearest <= size - reach_high - 2


@njit(cache=True, nogil=True)
def _clamp_in_place(resampled: F32, low: F32, high: F32, valid: Mask, clamp: float) -> None:
    """resampled within [low - c (high - low), high + c (high - low)], NaN where not valid:
    one pass over the image, where numpy needed six."""
    c = np.float32(clamp)
    height, width = resampled.shape
    for y in range(height):
        for x in range(width):
            if not valid[y, x]:
                resampled[y, x] = np.nan
                continue
            lo, hi = low[y, x], high[y, x]
            margin = c * (hi - lo)
            resampled[y, x] = min(max(resampled[y, x], lo - margin), hi + margin)


def valid_area(
    source_shape: tuple[int, int],
    transform: Transform,
    shape: tuple[int, int] | None = None,
    interpolation: Interpolation = Interpolation.LANCZOS4,
) -> Mask:
    """The `Warped.valid` mask `warp` would give, without resampling: for auto-crop plans."""
    reach = {
        Interpolation.LANCZOS4: _LANCZOS4_REACH,
        Interpolation.LANCZOS3: _LANCZOS3_REACH,
        Interpolation.BICUBIC: _BICUBIC_REACH,
    }[interpolation]
    return _valid_mask(source_shape, transform, shape or source_shape, reach)


def common_area(valid_masks: Iterable[Mask]) -> Mask:
    """Pixels valid in every mask: the area every registered frame covers.

    Reduces one mask at a time, so the masks may come from a generator.
    """
    common: Mask | None = None
    for mask in valid_masks:
        common = mask.copy() if common is None else common & mask
    if common is None:
        raise ValueError("no validity masks")
    return common


def crop_box(common: Mask) -> tuple[slice, slice]:
    """The largest axis-aligned rectangle of True pixels, as (rows, columns) slices.

    The area every frame covers is an intersection of (rotated) rectangles, so it is convex
    and each row's True pixels form one run [left, right). For rows y0 <= y1 of a convex
    region the widest common run is max(left) .. min(right) of those two rows alone (left is
    convex and right concave in y), so the search is over row pairs: O(rows^2), vectorised
    per top row. Raises ValueError for a mask without True pixels.
    """
    rows_any = common.any(axis=1)
    if not rows_any.any():
        raise ValueError("the frames have no area in common")
    width = common.shape[1]
    left = np.where(rows_any, np.argmax(common, axis=1), width)
    right = np.where(rows_any, width - np.argmax(common[:, ::-1], axis=1), 0)
    best, box = -1, (0, 0, 0, 0)
    ys = np.flatnonzero(rows_any)
    for y0 in ys:
        y1 = ys[ys >= y0]
        span = np.minimum(right[y0], right[y1]) - np.maximum(left[y0], left[y1])
        area = np.where(span > 0, span * (y1 - y0 + 1), 0)
        index = int(np.argmax(area))
        if area[index] > best:
            best = int(area[index])
            box = (
                int(y0),
                int(y1[index]) + 1,
                int(max(left[y0], left[y1[index]])),
                int(min(right[y0], right[y1[index]])),
            )
    y_start, y_stop, x_start, x_stop = box
    # A mask that is not quite convex (a ragged edge) still yields a valid box: shrink it
    # until every pixel in it is True. (A mask with a hole would get a valid but small box.)
    while not common[y_start:y_stop, x_start:x_stop].all():
        y_start, y_stop, x_start, x_stop = y_start + 1, y_stop - 1, x_start + 1, x_stop - 1
        if y_start >= y_stop or x_start >= x_stop:
            raise ValueError("the frames have no rectangular area in common")
    return slice(y_start, y_stop), slice(x_start, x_stop)


def _triangles(yx: F64, neighbours: int) -> tuple[F64, npt.NDArray[np.int64]]:
    """Side-ratio invariants (n, 2) and vertex indices (n, 3) of the stars' triangles.

    Vertices are ordered by the side opposite them, shortest first, so that matching
    triangles list corresponding stars in the same order. The invariants are
    (shortest / longest, middle / longest).
    """
    count = len(yx)
    k = min(neighbours, count - 1)
    _, nearest = cKDTree(yx).query(yx, k=k + 1)
    found: set[tuple[int, int, int]] = set()
    for star in range(count):
        for a, b in combinations(nearest[star, 1:], 2):
            first, second, third = sorted((star, int(a), int(b)))
            found.add((first, second, third))
    vertices = np.array(sorted(found), dtype=np.int64).reshape(-1, 3)
    points = yx[vertices]
    # Side i is opposite vertex i.
    sides = np.stack(
        [
            np.linalg.norm(points[:, 1] - points[:, 2], axis=1),
            np.linalg.norm(points[:, 0] - points[:, 2], axis=1),
            np.linalg.norm(points[:, 0] - points[:, 1], axis=1),
        ],
        axis=1,
    )
    order = np.argsort(sides, axis=1, kind="stable")
    sides = np.take_along_axis(sides, order, axis=1)
    vertices = np.take_along_axis(vertices, order, axis=1)
    usable = sides[:, 0] > 0
    invariants = sides[usable, :2] / sides[usable, 2:3]
    return invariants, vertices[usable]


def _pattern_match(
    frame_yx: F64, reference_yx: F64, config: RegistrationConfig
) -> Transform | None:
    """The transform proposed by a matching triangle pair that most stars agree with."""
    frame_pattern = frame_yx[: config.pattern_stars]
    reference_pattern = reference_yx[: config.pattern_stars]
    frame_inv, frame_tri = _triangles(frame_pattern, config.neighbours)
    ref_inv, ref_tri = _triangles(reference_pattern, config.neighbours)
    if len(frame_inv) == 0 or len(ref_inv) == 0:
        return None
    candidates = cKDTree(ref_inv).query_ball_point(frame_inv, r=config.invariant_tolerance)
    pairs = [(f, r) for f, matches in enumerate(candidates) for r in matches]
    if not pairs:
        return None
    f_index, r_index = np.array(pairs, dtype=np.int64).T
    # Each triangle pair proposes a similarity from its three corresponding vertices.
    src = reference_pattern[ref_tri[r_index]]
    dst = frame_pattern[frame_tri[f_index]]
    hypotheses = _similarities(src, dst)
    # Consensus: pattern stars of the reference that land within the radius of a frame star.
    tree = cKDTree(frame_pattern)
    homogeneous = np.column_stack([reference_pattern, np.ones(len(reference_pattern))])
    mapped = np.einsum("hij,nj->hni", hypotheses[:, :2, :], homogeneous)
    distance, _ = tree.query(mapped.reshape(-1, 2), distance_upper_bound=config.match_radius_px)
    votes = np.isfinite(distance).reshape(len(hypotheses), -1).sum(axis=1)
    best = int(np.argmax(votes))
    if votes[best] < min(config.min_matches, len(reference_pattern)):
        return None
    return Transform(hypotheses[best])


def _similarities(src: F64, dst: F64) -> F64:
    """Least-squares similarities (h, 3, 3) mapping each triple src[h] onto dst[h].

    In (y, x) order the model is y' = a y + b x + ty, x' = -b y + a x + tx; centring both
    point sets separates the translation, leaving a closed form for a and b.
    """
    src_mean, dst_mean = src.mean(axis=1, keepdims=True), dst.mean(axis=1, keepdims=True)
    s, d = src - src_mean, dst - dst_mean
    norm = np.maximum((s * s).sum(axis=(1, 2)), 1e-12)
    a = (s[..., 0] * d[..., 0] + s[..., 1] * d[..., 1]).sum(axis=1) / norm
    b = (s[..., 1] * d[..., 0] - s[..., 0] * d[..., 1]).sum(axis=1) / norm
    matrices = np.zeros((len(src), 3, 3))
    matrices[:, 0, 0], matrices[:, 0, 1] = a, b
    matrices[:, 1, 0], matrices[:, 1, 1] = -b, a
    matrices[:, 2, 2] = 1.0
    linear = matrices[:, :2, :2]
    shift = dst_mean[:, 0, :] - np.einsum("hij,hj->hi", linear, src_mean[:, 0, :])
    matrices[:, :2, 2] = shift
    return matrices


def _pair(
    transform: Transform, reference_yx: F64, frame_yx: F64, radius_px: float
) -> tuple[F64, F64]:
    """Reference and frame stars that are each other's nearest under `transform`."""
    mapped = transform.apply(reference_yx)
    distance, nearest = cKDTree(frame_yx).query(mapped, distance_upper_bound=radius_px)
    found = np.isfinite(distance)
    ref_index = np.flatnonzero(found)
    frame_index = nearest[found]
    # Keep one-to-one pairs only: a frame star claimed twice is ambiguous.
    unique, counts = np.unique(frame_index, return_counts=True)
    single = np.isin(frame_index, unique[counts == 1])
    return reference_yx[ref_index[single]], frame_yx[frame_index[single]]


def _robust_fit(
    ref_pairs: F64, frame_pairs: F64, config: RegistrationConfig
) -> tuple[Transform, int, float]:
    """RANSAC (OpenCV) to drop wrong pairs, then least squares over the inliers."""
    src = ref_pairs.astype(np.float32)
    dst = frame_pairs.astype(np.float32)
    threshold = config.ransac_threshold_px
    if config.motion is Motion.HOMOGRAPHY:
        _, inliers = cv2.findHomography(src, dst, cv2.RANSAC, threshold)
    elif config.motion is Motion.AFFINE:
        _, inliers = cv2.estimateAffine2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold
        )
    else:
        _, inliers = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold
        )
    keep = np.ones(len(src), dtype=bool) if inliers is None else inliers.ravel().astype(bool)
    if keep.sum() < config.min_matches:
        raise RegistrationError(
            f"only {int(keep.sum())} star pairs fit one {config.motion.value}; "
            f"need {config.min_matches}"
        )
    ref_in, frame_in = ref_pairs[keep], frame_pairs[keep]
    transform = Transform(_least_squares(ref_in, frame_in, config.motion))
    # RANSAC's threshold is loose enough for any field; stars blended with a neighbour or
    # clipped at saturation still sit a few tenths of a pixel off. Clip those at 3 robust
    # sigmas of the residuals and refit, so the transform rests on clean centroids.
    for _ in range(_CLIP_ROUNDS):
        residual = np.linalg.norm(transform.apply(ref_in) - frame_in, axis=1)
        # The median of a 2-D Gaussian's radial residual is 1.1774 sigma.
        sigma = float(np.median(residual)) / _RAYLEIGH_MEDIAN
        good = residual <= max(_CLIP_SIGMAS * sigma, 1e-6)
        if good.all() or good.sum() < config.min_matches:
            break
        ref_in, frame_in = ref_in[good], frame_in[good]
        transform = Transform(_least_squares(ref_in, frame_in, config.motion))
    residual = np.linalg.norm(transform.apply(ref_in) - frame_in, axis=1)
    return transform, len(ref_in), float(np.sqrt(np.mean(residual**2)))


def _least_squares(src: F64, dst: F64, motion: Motion) -> F64:
    """The model's least-squares transform mapping src onto dst, in float64."""
    n = len(src)
    y, x = src[:, 0], src[:, 1]
    if motion is Motion.SIMILARITY:
        design = np.zeros((2 * n, 4))
        design[:n] = np.column_stack([y, x, np.ones(n), np.zeros(n)])
        design[n:] = np.column_stack([x, -y, np.zeros(n), np.ones(n)])
        a, b, ty, tx = np.linalg.lstsq(design, np.concatenate([dst[:, 0], dst[:, 1]]))[0]
        return np.array([[a, b, ty], [-b, a, tx], [0.0, 0.0, 1.0]])
    if motion is Motion.AFFINE:
        design = np.column_stack([y, x, np.ones(n)])
        rows = np.linalg.lstsq(design, dst, rcond=None)[0].T
        return np.vstack([rows, [0.0, 0.0, 1.0]])
    # Homography: OpenCV's least squares (method 0) with its Levenberg-Marquardt refinement.
    matrix, _ = cv2.findHomography(src.astype(np.float64), dst.astype(np.float64), 0)
    if matrix is None:
        raise RegistrationError("the homography fit is degenerate")
    homography: F64 = np.asarray(matrix, dtype=np.float64) / matrix[2, 2]
    return homography


def _xy_matrix(transform: Transform) -> F64:
    """The 2 x 3 (x, y) matrix OpenCV expects for reference -> frame."""
    swapped: F64 = _SWAP @ transform.matrix @ _SWAP
    return swapped


def _cv2_warp(
    source: F32, transform: Transform, shape: tuple[int, int], flag: int, border: int
) -> F32:
    height, width = shape
    matrix = _xy_matrix(transform)
    flags = flag | cv2.WARP_INVERSE_MAP
    if np.allclose(matrix[2], [0.0, 0.0, 1.0]):
        out = cv2.warpAffine(source, matrix[:2], (width, height), flags=flags, borderMode=border)
    else:
        out = cv2.warpPerspective(source, matrix, (width, height), flags=flags, borderMode=border)
    return np.asarray(out, dtype=np.float32)


def _cell_bounds(source: F32, transform: Transform, shape: tuple[int, int]) -> tuple[F32, F32]:
    """Min and max of the 2 x 2 source pixels around each output pixel's sample point, from
    one 2-channel nearest-neighbour warp.

    Erosion / dilation with a 2 x 2 kernel anchored at its first pixel gives, at (i, j), the
    min / max of rows i..i+1 and columns j..j+1; nearest-neighbour lookup half a pixel
    up-left of the sample point s reads it at floor(s), the cell's first pixel.
    """
    kernel = np.ones((2, 2), dtype=np.uint8)
    border = cv2.BORDER_REPLICATE
    channels = np.empty((*source.shape, 2), dtype=np.float32)
    channels[..., 0] = cv2.erode(source, kernel, anchor=(0, 0), borderType=border)
    channels[..., 1] = cv2.dilate(source, kernel, anchor=(0, 0), borderType=border)
    half_back = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    cell = Transform(half_back @ transform.matrix)
    warped = _cv2_warp(channels, cell, shape, cv2.INTER_NEAREST, border)
    return warped[..., 0], warped[..., 1]


def _valid_mask(
    source_shape: tuple[int, ...],
    transform: Transform,
    shape: tuple[int, int],
    reach: tuple[int, int],
) -> Mask:
    """Output pixels whose kernel lies wholly inside the source frame.

    A source coordinate s reads pixels floor(s) - reach[0] .. floor(s) + reach[1], so s
    must lie in [reach[0], size - 1 - reach[1]]. Warping an image that marks that box with
    nearest-neighbour lookup (which rounds s) and shrinking it by one more pixel keeps
    rounding on the safe side.
    """
    inner = _inner_box(source_shape, reach)
    warped = _cv2_warp(inner, transform, shape, cv2.INTER_NEAREST, cv2.BORDER_CONSTANT)
    valid: Mask = warped > 0.5
    return valid


def _inner_box(source_shape: tuple[int, ...], reach: tuple[int, int]) -> F32:
    """1 where a sample point may fall with its whole kernel inside the frame, with one
    pixel of margin for the rounding of nearest-neighbour lookup; 0 elsewhere."""
    height, width = source_shape[0], source_shape[1]
    inner = np.zeros((height, width), dtype=np.float32)
    first, last = reach[0] + 1, reach[1] + 1
    inner[first : height - last, first : width - last] = 1.0
    return inner


def _lanczos3_warp(source: F32, transform: Transform, shape: tuple[int, int]) -> F32:
    """Lanczos-3 resampling of any transform: 36 taps per pixel, weights normalised to 1,
    edge pixels repeated."""
    out = np.empty(shape, dtype=np.float32)
    _lanczos3_kernel(source, np.ascontiguousarray(transform.matrix, dtype=np.float64), out)
    return out


# cos and sin of pi k / 3 for the taps k = -2 .. 3 of Lanczos-3 (sin(pi (f - k) / 3) from
# sin and cos of pi f / 3 alone), and cos(pi k) = (-1)^k.
_THIRD_COS = np.cos(np.pi * np.arange(-2, 4) / 3.0)
_THIRD_SIN = np.sin(np.pi * np.arange(-2, 4) / 3.0)
_PARITY = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])


@njit(cache=True, nogil=True)
def _lanczos3_weights(fraction: float, weights: F64) -> None:
    """The 6 weights sinc(t) sinc(t / 3) of taps floor(s) - 2 .. floor(s) + 3 for s's
    `fraction` of a pixel (t = fraction - tap), normalised to 1: three sines a position
    instead of twelve."""
    sin_pi = math.sin(math.pi * fraction)
    sin_third, cos_third = math.sin(math.pi * fraction / 3.0), math.cos(math.pi * fraction / 3.0)
    total = 0.0
    for j in range(6):
        t = fraction - (j - 2)
        if t == 0.0:
            value = 1.0
        else:
            numerator = (
                sin_pi * _PARITY[j] * (sin_third * _THIRD_COS[j] - cos_third * _THIRD_SIN[j])
            )
            value = 3.0 * numerator / (math.pi * math.pi * t * t)
        weights[j] = value
        total += value
    for j in range(6):
        weights[j] /= total


@njit(cache=True, nogil=True)
def _lanczos3_kernel(source: F32, matrix: F64, out: F32) -> None:
    """Each output (y, x) samples the frame at the (projective) transform of (y, x), with
    exact Lanczos-3 weights, in one pass; taps beyond the edge repeat the edge pixel."""
    source_height, source_width = source.shape
    height, width = out.shape
    wy = np.empty(6, dtype=np.float64)
    wx = np.empty(6, dtype=np.float64)
    for y in range(height):
        for x in range(width):
            w = matrix[2, 0] * y + matrix[2, 1] * x + matrix[2, 2]
            sy = (matrix[0, 0] * y + matrix[0, 1] * x + matrix[0, 2]) / w
            sx = (matrix[1, 0] * y + matrix[1, 1] * x + matrix[1, 2]) / w
            iy, ix = math.floor(sy), math.floor(sx)
            _lanczos3_weights(sy - iy, wy)
            _lanczos3_weights(sx - ix, wx)
            total = 0.0
            if 2 <= iy < source_height - 3 and 2 <= ix < source_width - 3:
                for j in range(6):
                    row = source[iy + j - 2]
                    line = 0.0
                    for k in range(6):
                        line += wx[k] * row[ix + k - 2]
                    total += wy[j] * line
            else:
                for j in range(6):
                    row = source[min(max(iy + j - 2, 0), source_height - 1)]
                    line = 0.0
                    for k in range(6):
                        line += wx[k] * row[min(max(ix + k - 2, 0), source_width - 1)]
                    total += wy[j] * line
            out[y, x] = total
