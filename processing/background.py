"""Background extraction: a smooth model of the sky fitted through sample boxes, then removed.

This is what PixInsight's DynamicBackgroundExtraction and Siril's background extraction do to
a linear stack: light pollution, moonlight and vignetting leave a smooth surface under the
target, which is measured where there is only sky and subtracted (additive gradients) or
divided out (multiplicative ones, such as uncorrected vignetting).

The steps, each separate so a UI can show and edit the samples:

1. Sample boxes of `box_px` on a regular grid (`samples_across` columns, rows following the
   aspect ratio). The outer boxes are centred on the frame's edges and clipped to it, so the
   model extrapolates over a quarter box at most. In the "mesh" mode the boxes are instead
   the cells of a tiling of about `mesh_px`, as photutils' Background2D does.
2. In each box the luminance (mean of the channels) decides. The box's sky level is its lower
   quartile raised by 0.674 noise sigma (the quartile of Gaussian noise lies that far below
   its median), which stays on the sky until structure covers three quarters of the box.
   Pixels more than `star_sigma` sigmas above it, grown by a disk of `star_grow_px`, are
   bright structure (stars, nebula); the other pixels within 3 sigma of it are sky (one
   sigma-clipping pass). Each channel's value is the median of its own sky pixels, and the
   sample sits at the centroid of those pixels: a star excluded on one side of a box does not
   shift the value a gradient gives it.
3. Rejection, with a reason kept on the sample: under a tenth of the box is usable sky
   ("empty": blank or NaN registration edges); more than `star_max_fraction` of the box is
   structure when `star_mask` is on ("structure"); the luminance median exceeds the sample
   medians' trend by more than `tolerance` x 1.4826 MAD of the deviations ("bright": faint
   nebulosity below the structure threshold raises a whole box).
4. A model per channel through the kept samples: a polynomial of `degree` (least squares), a
   thin-plate RBF (scipy's RBFInterpolator evaluated on a coarse grid, then resized), or the
   mesh (rejected cells filled by a local thin-plate spline, median-filtered, interpolated).
5. `apply_background` subtracts the model and adds back its median (the sky level is kept) or
   divides by the model over its median.

Structure smaller than `star_max_fraction` of a box does not reject it: its pixels are left
out of the box's median, as PixInsight's DBE leaves bright pixels out of a sample. Rejecting
every box a star touches would leave a Milky Way field with no samples at all.

The "trend" of step 3 is a robust quadratic fitted to the sample medians (iteratively clipped
at 3 sigma), not their global median: with a global median a light-pollution gradient of a
few percent puts the whole bright side above the threshold and the model would have to
extrapolate over it. On a flat sky the trend is the global median and the two rules agree.

The noise sigma is the median over the boxes of each box's 1.4826 MAD, a robust figure even
when some boxes hold stars. Everything is float32 ``(y, x, c)``; inputs are never modified.
A 6000 x 4000 x 3 frame takes 0.6-1.2 s to estimate and subtract with the RBF on one core;
the mesh mode, which measures every pixel, about 3 s.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.interpolate import RBFInterpolator

from processing.normalize import MAD_TO_SIGMA

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

# The RBF is evaluated on a grid whose long side has at most this many points (1/24 of a
# 6000 px frame, a dozen points between samples at samples_across = 20), then resized
# bilinearly: on a 24 MP frame the model differs from one evaluated on a 4x denser grid by
# under 0.04 % of the sky, and the evaluation takes a third of the time of a 1/16 grid.
# Bilinear rather than OpenCV's bicubic, whose kernel (a = -0.75) ripples on a plain ramp.
_RBF_GRID_LONG_SIDE = 256
# The model's median (the level kept by the correction) is taken on a strided subsample of
# about this many pixels: the median of a smooth surface needs no more.
_LEVEL_PIXELS = 250_000
# Sky pixels of a box lie within this many noise sigmas of its sky level (one clipping pass).
_SKY_CLIP_SIGMA = 3.0
# The lower quartile of Gaussian noise lies 0.674 sigma below its median.
_QUARTILE_TO_MEDIAN = 0.6745
# A box with fewer usable sky pixels than this fraction is empty (its median would be noise).
_MIN_SKY_FRACTION = 0.1
# The noise sigma is measured in at most this many boxes (a mesh can have thousands).
_NOISE_BOXES = 256
# The robust trend of the sample medians: clipping at 3 sigma, a few passes converge.
_TREND_CLIP_SIGMA = 3.0
_TREND_PASSES = 5
# Rejected mesh cells are filled by a thin-plate spline through this many nearest kept cells.
_MESH_FILL_NEIGHBOURS = 50
# The thin-plate spline carries a quadratic, not just a plane: near the frame's edges the
# spline itself flattens (it has no samples beyond to bend it), and a quadratic tail keeps a
# vignetting bowl's curvature there (halves the corner error on a 15 % vignetting).
_RBF_DEGREE = 2


class BackgroundModelKind(StrEnum):
    """The surface fitted through the samples."""

    POLYNOMIAL = "polynomial"
    RBF = "rbf"
    MESH = "mesh"


class Correction(StrEnum):
    """How the model is removed: subtract (additive light pollution) or divide (vignetting)."""

    SUBTRACT = "subtract"
    DIVIDE = "divide"


@dataclass(frozen=True)
class BackgroundConfig:
    """Options of background extraction (strings are accepted for the two enums).

    - model: polynomial, rbf (thin-plate spline, the default: follows any smooth shape) or
      mesh (automatic: every cell of a `mesh_px` tiling is a sample).
    - degree: polynomial degree, 1-4 (1: a plane; 2-3: typical light pollution; 4: vignetting).
    - smoothing: thin-plate smoothing (scipy's RBFInterpolator), >= 0, on coordinates scaled so
      the long side spans 1. 0 passes exactly through every sample, noise and all; the
      default 1e-3 cuts the model's noise by ~13 % on a noisy sky while bending a vignetting
      bowl near the corners by under 0.1 % of the sky; 1e-2 and more flatten the corners.
    - samples_across: sample boxes across the width, 2-500; rows follow the aspect ratio.
    - box_px: side of a sample box, 3-1000 px.
    - tolerance: a box is rejected when its median exceeds the trend of the sample medians by
      more than tolerance x 1.4826 MAD of the deviations (> 0; raise it to keep more boxes).
    - star_mask: reject boxes with more than star_max_fraction ([0, 1)) of bright structure:
      pixels over the box's sky level + star_sigma noise sigmas (> 0), grown by star_grow_px
      (0-50). With or without it, structure pixels never enter a sample's value.
    - correction: subtract (the model's median is added back) or divide (by model / median).
    - mesh_px: cell size of the mesh mode, 8-4096 px; mesh_filter: odd median-filter size in
      cells (1 = none), which removes cells left raised by a faint nebula.
    """

    model: BackgroundModelKind = BackgroundModelKind.RBF
    degree: int = 2
    smoothing: float = 1e-3
    samples_across: int = 20
    box_px: int = 25
    tolerance: float = 1.0
    star_mask: bool = True
    star_sigma: float = 4.0
    star_grow_px: int = 2
    star_max_fraction: float = 0.5
    correction: Correction = Correction.SUBTRACT
    mesh_px: int = 64
    mesh_filter: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", _as_enum(BackgroundModelKind, self.model, "model"))
        object.__setattr__(self, "correction", _as_enum(Correction, self.correction, "correction"))
        _check_int("degree", self.degree, 1, 4)
        _check_int("samples_across", self.samples_across, 2, 500)
        _check_int("box_px", self.box_px, 3, 1000)
        _check_int("star_grow_px", self.star_grow_px, 0, 50)
        _check_int("mesh_px", self.mesh_px, 8, 4096)
        _check_int("mesh_filter", self.mesh_filter, 1, 15)
        if self.mesh_filter % 2 == 0:
            raise ValueError(f"mesh_filter must be odd (1-15), got {self.mesh_filter}")
        if not (math.isfinite(self.smoothing) and self.smoothing >= 0):
            raise ValueError(f"smoothing must be finite and >= 0, got {self.smoothing}")
        if not (math.isfinite(self.tolerance) and self.tolerance > 0):
            raise ValueError(f"tolerance must be finite and > 0, got {self.tolerance}")
        if not (math.isfinite(self.star_sigma) and self.star_sigma > 0):
            raise ValueError(f"star_sigma must be finite and > 0, got {self.star_sigma}")
        if not 0.0 <= self.star_max_fraction < 1.0:
            raise ValueError(f"star_max_fraction must be in [0, 1), got {self.star_max_fraction}")


@dataclass(frozen=True)
class BackgroundSample:
    """One sample: where its value applies (y, x), in pixels: the centroid of the sky pixels
    used, which is the box centre unless structure was left out (or the box was empty); each
    channel's sky median (NaN when empty); why it was rejected (None when kept, else a reason
    starting "empty", "structure" or "bright"). size_px is the box side (the nominal cell size
    in mesh mode; boxes on the frame's edges are clipped to it)."""

    y: float
    x: float
    values: tuple[float, ...]
    rejected: str | None
    size_px: int


@dataclass(frozen=True, eq=False)
class BackgroundModel:
    """A fitted background: the full-size model ``(y, x, c)`` float32, the samples it came
    from, its kind, and `level`, each channel's model median (what the correction keeps)."""

    model: F32
    samples: tuple[BackgroundSample, ...]
    kind: BackgroundModelKind
    level: tuple[float, ...]

    def samples_json(self) -> list[dict[str, Any]]:
        """The samples as plain JSON values, for a UI to draw and list them."""
        return [
            {
                "y": sample.y,
                "x": sample.x,
                "size_px": sample.size_px,
                "values": list(sample.values),
                "rejected": sample.rejected,
            }
            for sample in self.samples
        ]


def estimate_background(
    image: npt.NDArray[np.generic], config: BackgroundConfig
) -> BackgroundModel:
    """Sample the sky of a ``(y, x, c)`` image and fit `config.model` through the kept samples.

    Raises ValueError for another shape, boxes or cells larger than the image, or when too few
    samples remain for the model (the message says how many and which setting to loosen).
    """
    data = _as_image(image)
    height, width, _ = data.shape
    size = config.mesh_px if config.model is BackgroundModelKind.MESH else config.box_px
    if size > min(height, width):
        name = "mesh_px" if config.model is BackgroundModelKind.MESH else "box_px"
        raise ValueError(f"{name} = {size} exceeds the image's {height} x {width} px")
    if config.model is BackgroundModelKind.MESH:
        y_edges, x_edges = _mesh_edges(height, config.mesh_px), _mesh_edges(width, config.mesh_px)
        boxes = [
            (y0, y1, x0, x1)
            for y0, y1 in itertools.pairwise(y_edges)
            for x0, x1 in itertools.pairwise(x_edges)
        ]
    else:
        boxes = _sample_boxes(height, width, config.samples_across, config.box_px)
    samples = _measure_samples(data, boxes, config, size)
    kept = [s for s in samples if s.rejected is None]
    _require_samples(samples, kept, config)
    if config.model is BackgroundModelKind.POLYNOMIAL:
        model = _polynomial_model(kept, (height, width), config.degree)
    elif config.model is BackgroundModelKind.RBF:
        model = _rbf_model(kept, (height, width), config.smoothing)
    else:
        model = _mesh_model(samples, (len(y_edges) - 1, len(x_edges) - 1), (height, width), config)
    step = max(1, int(math.sqrt(height * width / _LEVEL_PIXELS)))
    level = tuple(float(v) for v in np.median(model[::step, ::step], axis=(0, 1)))
    log.info(
        "background %s: %d of %d samples kept, level %s",
        config.model.value,
        len(kept),
        len(samples),
        ", ".join(f"{v:.5g}" for v in level),
    )
    return BackgroundModel(model=model, samples=tuple(samples), kind=config.model, level=level)


def apply_background(
    image: npt.NDArray[np.generic], model: BackgroundModel, config: BackgroundConfig
) -> F32:
    """`image` with the background removed as `config.correction` says, as new float32.

    Subtract: image - model + level, so the sky keeps its median level (and stays positive
    for later steps). Divide: image / model x level. Raises ValueError when the shapes differ,
    or, dividing, when the model is not positive everywhere (subtract instead).
    """
    data = _as_image(image)
    if data.shape != model.model.shape:
        raise ValueError(f"image shape {data.shape} differs from the model's {model.model.shape}")
    height, width, _ = data.shape
    # The level repeated along a row: adding it to rows of width x c values runs a contiguous
    # inner loop, twice as fast as broadcasting over a last axis of three.
    level_row = np.tile(np.asarray(model.level, dtype=np.float32), width)
    if config.correction is Correction.SUBTRACT:
        out = np.subtract(data, model.model, dtype=np.float32)
        rows = out.reshape(height, -1)
        rows += level_row
        return out
    lowest = float(model.model.min())
    if not lowest > 0:
        raise ValueError(
            f"the background model reaches {lowest:.4g}, and dividing needs it positive "
            "everywhere: use correction='subtract' or calibrate the data to a positive sky"
        )
    out = np.divide(data, model.model, dtype=np.float32)
    rows = out.reshape(height, -1)
    rows *= level_row
    return out


def _as_enum(kind: type[Any], value: object, name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}") from None


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not low <= value <= high
    ):
        raise ValueError(f"{name} must be an integer in {low}-{high}, got {value!r}")


def _as_image(image: npt.NDArray[np.generic]) -> F32:
    """The image as float32 ``(y, x, c)`` without a copy when it already is (never written)."""
    if image.ndim != 3 or image.shape[2] < 1:
        raise ValueError(f"images have axes (y, x, c), got shape {image.shape}")
    return np.asarray(image, dtype=np.float32)


def _sample_boxes(
    height: int, width: int, across: int, box_px: int
) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of a grid of boxes whose outer centres lie on the frame's edges, the
    boxes there clipped to the frame: their sky centroids sit a quarter box from the edge,
    half as far as with whole boxes, and a model extrapolates over half the distance."""
    rows = max(2, round(across * height / width))
    half = box_px // 2
    # Unique: more samples than pixels across would repeat boxes (and make the spline singular).
    ys = np.unique(np.rint(np.linspace(0, height - 1, rows)).astype(int))
    xs = np.unique(np.rint(np.linspace(0, width - 1, across)).astype(int))
    return [
        (
            max(0, y - half),
            min(height, y - half + box_px),
            max(0, x - half),
            min(width, x - half + box_px),
        )
        for y in ys
        for x in xs
    ]


def _mesh_edges(length: int, mesh_px: int) -> list[int]:
    """Edges of near-equal cells about mesh_px long that tile [0, length) exactly: cell k is
    centred at (k + 0.5) x length / cells - 0.5 px, which `_mesh_model` relies on."""
    cells = max(1, round(length / mesh_px))
    return [int(v) for v in np.rint(np.linspace(0, length, cells + 1))]


@dataclass(frozen=True)
class _BoxStats:
    median: float
    values: tuple[float, ...]
    structure_fraction: float
    centroid: tuple[float, float]
    usable: bool


def _measure_samples(
    data: F32, boxes: list[tuple[int, int, int, int]], config: BackgroundConfig, size_px: int
) -> list[BackgroundSample]:
    """Measure every box, then reject: empty, structure, bright (in this order)."""
    height, width, channels = data.shape
    grow = config.star_grow_px
    weights = np.full(channels, 1.0 / channels, dtype=np.float32)
    lums = []
    for y0, y1, x0, x1 in boxes:
        # A margin of star_grow_px, so a star just outside the box still grows into it.
        ey0, ey1 = max(0, y0 - grow), min(height, y1 + grow)
        ex0, ex1 = max(0, x0 - grow), min(width, x1 + grow)
        lums.append(data[ey0:ey1, ex0:ex1] @ weights)
    noise = _noise_sigma(lums)
    stats = [
        _box_stats(data, box, lum, noise, config) for box, lum in zip(boxes, lums, strict=True)
    ]
    reasons: list[str | None] = []
    for stat in stats:
        if not stat.usable:
            reasons.append(f"empty: under {100 * _MIN_SKY_FRACTION:.0f} % of the box is usable sky")
        elif config.star_mask and stat.structure_fraction > config.star_max_fraction:
            reasons.append(
                f"structure: {100 * stat.structure_fraction:.0f} % of the box is stars or "
                f"nebula (limit {100 * config.star_max_fraction:.0f} %)"
            )
        else:
            reasons.append(None)
    centres = np.array([stat.centroid for stat in stats])
    candidates = np.array([reason is None for reason in reasons])
    if candidates.any():
        medians = np.array([stat.median for stat in stats])
        trend = _robust_trend(centres[candidates], medians[candidates], (height, width))
        deviation = medians[candidates] - trend
        centre = float(np.median(deviation))
        spread = MAD_TO_SIGMA * float(np.median(np.abs(deviation - centre)))
        limit = centre + config.tolerance * spread
        for index, dev, expected in zip(np.flatnonzero(candidates), deviation, trend, strict=True):
            if spread > 0 and dev > limit:
                reasons[index] = (
                    f"bright: median {medians[index]:.5g} exceeds the expected "
                    f"{expected + centre:.5g} by {(dev - centre) / spread:.1f} x the "
                    f"samples' spread (tolerance {config.tolerance:g})"
                )
    return [
        BackgroundSample(
            y=float(cy), x=float(cx), values=stat.values, rejected=reason, size_px=size_px
        )
        for (cy, cx), stat, reason in zip(centres, stats, reasons, strict=True)
    ]


def _noise_sigma(lums: list[F32]) -> float:
    """Pixel noise of the luminance: the median of 1.4826 MAD over (at most
    _NOISE_BOXES evenly chosen) boxes, robust to the boxes that hold stars."""
    chosen = np.unique(np.linspace(0, len(lums) - 1, min(len(lums), _NOISE_BOXES)).astype(int))
    sigmas = []
    for index in chosen:
        lum = lums[index]
        finite = lum[np.isfinite(lum)]
        if finite.size:
            median = _quantile(finite, 0.5)
            sigmas.append(MAD_TO_SIGMA * _quantile(np.abs(finite - median), 0.5))
    return float(np.median(sigmas)) if sigmas else 0.0


def _quantile(values: F32, q: float) -> float:
    """The q quantile of a 1-D array by selection (no interpolation): statistics of
    hundreds of pixels per box do not need more, and this is ten times faster."""
    k = int(q * (values.size - 1))
    return float(np.partition(values, k)[k])


def _box_stats(
    data: F32, box: tuple[int, int, int, int], lum_ext: F32, noise: float, config: BackgroundConfig
) -> _BoxStats:
    """Sky statistics of one box; lum_ext is its luminance with the star_grow_px margin.

    The box's sky level is its luminance's lower quartile raised by 0.674 sigma (where the
    quartile of pure Gaussian noise lies below its median): unlike the median it stays on the
    sky until structure covers three quarters of the box. A sample's position is the centroid
    of the sky pixels used, so excluding a star on one side does not shift a gradient's value.
    """
    channels = data.shape[2]
    y0, y1, x0, x1 = box
    grow = config.star_grow_px
    oy, ox = y0 - max(0, y0 - grow), x0 - max(0, x0 - grow)
    centre = ((y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2)
    empty = _BoxStats(math.nan, (math.nan,) * channels, 1.0, centre, usable=False)
    lum_box = lum_ext[oy : oy + y1 - y0, ox : ox + x1 - x0]
    box_finite = np.isfinite(lum_box)
    if not box_finite.any():
        return empty
    sky = _quantile(lum_box[box_finite], 0.25) + _QUARTILE_TO_MEDIAN * noise
    with np.errstate(invalid="ignore"):
        bright = lum_ext > sky + config.star_sigma * noise
        if grow and bright.any():
            bright = ndimage.binary_dilation(bright, structure=_disk(grow))
        structure = bright[oy : oy + y1 - y0, ox : ox + x1 - x0]
        usable = box_finite & ~structure & (np.abs(lum_box - sky) <= _SKY_CLIP_SIGMA * noise)
    if usable.sum() < _MIN_SKY_FRACTION * usable.size:
        return empty
    pixels = data[y0:y1, x0:x1]
    values = tuple(_quantile(pixels[:, :, c][usable], 0.5) for c in range(channels))
    median = _quantile(lum_box[usable], 0.5)
    rows, cols = np.nonzero(usable)
    centroid = (y0 + float(rows.mean()), x0 + float(cols.mean()))
    return _BoxStats(median, values, float(structure.mean()), centroid, usable=True)


def _disk(radius: int) -> Mask:
    offsets = np.arange(-radius, radius + 1)
    disk: Mask = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius * radius
    return disk


def _normalised(yx: F64, shape: tuple[int, int]) -> tuple[F64, F64]:
    """(v, u) in [-1, 1] across each axis: well-conditioned polynomial terms."""
    height, width = shape
    v = (yx[:, 0] - (height - 1) / 2) / max((height - 1) / 2, 1.0)
    u = (yx[:, 1] - (width - 1) / 2) / max((width - 1) / 2, 1.0)
    return v, u


def _terms(degree: int) -> list[tuple[int, int]]:
    """Exponents (j of v, i of u) with i + j <= degree."""
    return [(j, i) for j in range(degree + 1) for i in range(degree + 1 - j)]


def _design(v: F64, u: F64, degree: int) -> F64:
    design: F64 = np.column_stack([v**j * u**i for j, i in _terms(degree)])
    return design


def _robust_trend(yx: F64, medians: F64, shape: tuple[int, int]) -> F64:
    """A quadratic through the sample medians, refitted without those beyond 3 sigma; a
    plane or the median when there are too few samples for it."""
    count = len(medians)
    degree = 2 if count >= 12 else 1 if count >= 6 else 0
    v, u = _normalised(yx, shape)
    design = _design(v, u, degree)
    keep = np.ones(count, dtype=bool)
    fit = np.full(count, float(np.median(medians)))
    for _ in range(_TREND_PASSES):
        if keep.sum() < design.shape[1]:
            break
        coeffs = np.linalg.lstsq(design[keep], medians[keep], rcond=None)[0]
        fit = design @ coeffs
        residual = medians - fit
        spread = MAD_TO_SIGMA * float(np.median(np.abs(residual[keep] - np.median(residual[keep]))))
        new_keep = np.abs(residual - np.median(residual[keep])) <= _TREND_CLIP_SIGMA * spread
        if spread == 0 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return fit


def _min_samples(config: BackgroundConfig) -> int:
    if config.model is BackgroundModelKind.POLYNOMIAL:
        return len(_terms(config.degree))
    if config.model is BackgroundModelKind.RBF:
        # The quadratic the spline carries has six terms.
        return 6
    # The spline filling rejected cells carries a plane.
    return 3


def _require_samples(
    samples: list[BackgroundSample], kept: list[BackgroundSample], config: BackgroundConfig
) -> None:
    needed = _min_samples(config)
    if len(kept) >= needed:
        return
    counts: dict[str, int] = {}
    for sample in samples:
        if sample.rejected is not None:
            reason = sample.rejected.split(":", 1)[0]
            counts[reason] = counts.get(reason, 0) + 1
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) or "none rejected"
    grid = "mesh_px" if config.model is BackgroundModelKind.MESH else "samples_across"
    raise ValueError(
        f"only {len(kept)} of {len(samples)} background samples remain ({why}); the "
        f"{config.model.value} model needs at least {needed}: raise tolerance or "
        f"star_max_fraction (or set star_mask=False), change {grid}, or lower degree"
    )


def _kept_arrays(kept: list[BackgroundSample]) -> tuple[F64, F64]:
    yx = np.array([(s.y, s.x) for s in kept], dtype=np.float64)
    values = np.array([s.values for s in kept], dtype=np.float64)
    return yx, values


def _polynomial_model(kept: list[BackgroundSample], shape: tuple[int, int], degree: int) -> F32:
    """Least squares per channel; evaluated exactly as V @ C @ U^T per channel (separable)."""
    height, width = shape
    yx, values = _kept_arrays(kept)
    v, u = _normalised(yx, shape)
    coeffs = np.linalg.lstsq(_design(v, u, degree), values, rcond=None)[0]
    grid_v = (np.arange(height) - (height - 1) / 2) / max((height - 1) / 2, 1.0)
    grid_u = (np.arange(width) - (width - 1) / 2) / max((width - 1) / 2, 1.0)
    powers_v = np.stack([grid_v**j for j in range(degree + 1)], axis=1).astype(np.float32)
    powers_u = np.stack([grid_u**i for i in range(degree + 1)], axis=0).astype(np.float32)
    model = np.empty((height, width, values.shape[1]), dtype=np.float32)
    for channel in range(values.shape[1]):
        matrix = np.zeros((degree + 1, degree + 1), dtype=np.float32)
        for (j, i), coeff in zip(_terms(degree), coeffs[:, channel], strict=True):
            matrix[j, i] = coeff
        model[:, :, channel] = powers_v @ matrix @ powers_u
    return model


def _coarse_grid(shape: tuple[int, int]) -> tuple[F64, F64, int]:
    """Pixel coordinates (y, x) of a coarse grid of integer `step` (long side at most
    _RBF_GRID_LONG_SIDE points) with one extra point beyond each edge, so that resizing it
    by `step` interpolates everywhere and never holds an edge value (see `_upsample`)."""
    height, width = shape
    step = max(1, math.ceil(max(height, width) / _RBF_GRID_LONG_SIDE))
    rows, cols = math.ceil(height / step) + 2, math.ceil(width / step) + 2
    # cv2.resize by `step` puts source point k at destination (k + 0.5) * step - 0.5, which
    # is image pixel (k - 1) * step + (step - 1) / 2 once the first `step` rows are cropped.
    gy = (np.arange(rows, dtype=np.float64) - 1.0) * step + (step - 1) / 2
    gx = (np.arange(cols, dtype=np.float64) - 1.0) * step + (step - 1) / 2
    return gy, gx, step


def _upsample(coarse: F32, shape: tuple[int, int], step: int) -> F32:
    """The coarse grid of `_coarse_grid` resized bilinearly to the frame, as new float32."""
    height, width = shape
    channels = coarse.shape[2]
    if step == 1:
        return np.ascontiguousarray(coarse[1 : 1 + height, 1 : 1 + width])
    rows, cols = coarse.shape[:2]
    big = cv2.resize(coarse, (cols * step, rows * step), interpolation=cv2.INTER_LINEAR)
    big = big.reshape(rows * step, cols * step, channels)
    out: F32 = np.ascontiguousarray(big[step : step + height, step : step + width])
    return out


def _rbf_model(kept: list[BackgroundSample], shape: tuple[int, int], smoothing: float) -> F32:
    """Thin-plate spline on coordinates scaled by the long side (isotropic), evaluated on the
    coarse grid and resized to the frame."""
    scale = float(max(shape))
    yx, values = _kept_arrays(kept)
    rbf = RBFInterpolator(
        yx / scale, values, kernel="thin_plate_spline", smoothing=smoothing, degree=_RBF_DEGREE
    )
    gy, gx, step = _coarse_grid(shape)
    points = np.stack(np.meshgrid(gy, gx, indexing="ij"), axis=-1).reshape(-1, 2) / scale
    coarse = rbf(points).reshape(len(gy), len(gx), -1).astype(np.float32)
    return _upsample(coarse, shape, step)


def _mesh_model(
    samples: list[BackgroundSample],
    cells: tuple[int, int],
    shape: tuple[int, int],
    config: BackgroundConfig,
) -> F32:
    """The mesh of cell values: rejected cells filled by a local thin-plate spline through
    the kept ones, a median filter of mesh_filter cells, then a cubic spline through the
    cells onto the coarse grid and a resize to the frame.

    The grid is extended by linear extrapolation before the median filter and the spline, so
    a gradient stays a gradient up to the frame's edges (a median filter padded with copies
    of the edge, or a resize that holds the outer cells' value, would bend it there).
    """
    rows, cols = cells
    height, width = shape
    channels = len(samples[0].values)
    centres = np.array([(s.y, s.x) for s in samples], dtype=np.float64)
    grid = np.array([s.values for s in samples], dtype=np.float64)
    rejected = np.array([s.rejected is not None for s in samples])
    if rejected.any():
        scale = float(max(shape))
        fill = RBFInterpolator(
            centres[~rejected] / scale,
            grid[~rejected],
            kernel="thin_plate_spline",
            degree=1,
            neighbors=min(int((~rejected).sum()), _MESH_FILL_NEIGHBOURS),
        )
        grid[rejected] = fill(centres[rejected] / scale)
    grid = grid.reshape(rows, cols, channels)
    radius = config.mesh_filter // 2
    if radius:
        padded = _extend(grid, radius)
        filtered = ndimage.median_filter(padded, size=(config.mesh_filter, config.mesh_filter, 1))
        grid = filtered[radius : radius + rows, radius : radius + cols]
    extended = _extend(grid, 2)
    gy, gx, step = _coarse_grid(shape)
    # Fractional cell index of each coarse point in the extended grid (cell k is centred at
    # (k + 0.5) * size / cells - 0.5 px).
    fy = (gy + 0.5) * rows / height - 0.5 + 2
    fx = (gx + 0.5) * cols / width - 0.5 + 2
    yy, xx = np.meshgrid(fy, fx, indexing="ij")
    order = 3 if min(rows, cols) >= 2 else 1
    coarse = np.stack(
        [
            ndimage.map_coordinates(extended[:, :, c], [yy, xx], order=order, mode="nearest")
            for c in range(channels)
        ],
        axis=-1,
    ).astype(np.float32)
    return _upsample(coarse, shape, step)


def _extend(grid: F64, width: int) -> F64:
    """The grid padded by `width` cells on each side, extrapolating linearly (odd reflection)."""
    rows, cols, _ = grid.shape
    if min(rows, cols) < 2:
        return np.pad(grid, ((width, width), (width, width), (0, 0)), mode="edge")
    extended: F64 = grid
    for axis, length in ((0, rows), (1, cols)):
        pad = [(0, 0)] * 3
        step = min(width, length - 1)
        pad[axis] = (step, step)
        extended = np.pad(extended, pad, mode="reflect", reflect_type="odd")
        if step < width:
            pad[axis] = (width - step, width - step)
            extended = np.pad(extended, pad, mode="edge")
    return extended
