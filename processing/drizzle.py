"""Drizzle: calibrated lights dropped onto a finer grid through their registration.

Undersampled data (stars of 1-2 px FWHM) loses resolution twice in a plain stack: once in
the pixels and again in the interpolation that registers them. Drizzle (Fruchter & Hook
2002; spacetelescope's `drizzle` package does the geometry) instead shrinks every input
pixel to `pixfrac` of its side, maps it through the frame's transform onto a grid `scale`
times finer than the reference's and adds its value to the output pixels it overlaps, in
proportion to the overlap and the frame's weight. With dithers that sample sub-pixel phases,
the result resolves what one frame cannot. Values keep their units per input pixel (a sky of
800 ADU stays 800): a star's flux is the sum over its output pixels divided by scale^2.

Defaults follow Siril: square kernel, pixfrac 1 (WBPP's drop shrink defaults to 0.9);
smaller drops sharpen further and need more frames and dithers, or output pixels stay empty
(NaN).

Rejection: Siril and WBPP integrate the registered frames first and drizzle only the samples
that integration kept. Here the same 1x integration serves as the model of the sky: it is
resampled into each frame's pixels (`model_in_frame`) and an input pixel is left out (weight
0) when it lies more than `reject_sigma` times the frame's noise, plus half the model's local
range, outside the model's range over the 3 x 3 pixels around it (`reject_pixels`). The local
range keeps the cores of undersampled stars, whose sharp input pixels the smoother model
cannot match, while a cosmic ray, a hot pixel or a satellite trail on the sky stands out by
many sigmas.

Nothing here reads or writes a file; `DrizzleStack` accumulates frame by frame in bands of
input rows, so memory is the output image and its weights (2 x 4 bytes per output pixel) plus
one frame.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from processing.normalize import clipped_location_scale
from processing.register import Interpolation, Transform, warp

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

MAX_SCALE = 3
MIN_PIXFRAC = 0.1
# Input rows mapped and drizzled at a time: the pixel map of a band of a 6000 px wide frame
# is ~25 MB (float64 x, y per pixel).
_BAND_ROWS = 256
# The noise of a frame is measured on at most this many pixels of its residual to the model.
_NOISE_SAMPLES = 1 << 16
# Share of the model's local range (max - min over 3 x 3 pixels) a sample may lie outside it,
# as `processing.register.warp` clamps its kernels' overshoot.
_RANGE_MARGIN = 0.5


class DrizzleKernel(enum.StrEnum):
    """The drop's shape: square (the classic drizzle kernel, flux-conserving)."""

    SQUARE = "square"


@dataclass(frozen=True)
class DrizzleConfig:
    """- scale: output pixels per input pixel along each axis (2 or 3; 1 is no drizzle).
    - pixfrac: side of the drop as a fraction of an input pixel's (0.1..1).
    - kernel: the drop's shape.
    - reject_sigma: an input pixel further than this many noise sigmas outside the model's
      local range is not drizzled."""

    scale: int = 2
    pixfrac: float = 1.0
    kernel: DrizzleKernel = DrizzleKernel.SQUARE
    reject_sigma: float = 3.0

    def __post_init__(self) -> None:
        if not 1 <= self.scale <= MAX_SCALE:
            raise ValueError(f"drizzle scale must be 1..{MAX_SCALE}, got {self.scale}")
        if not MIN_PIXFRAC <= self.pixfrac <= 1.0:
            raise ValueError(f"pixfrac must be {MIN_PIXFRAC}..1, got {self.pixfrac}")
        if self.reject_sigma <= 0:
            raise ValueError(f"reject_sigma must be positive, got {self.reject_sigma}")

    def describe(self) -> str:
        """The HISTORY line of the step (within a card's 72 characters)."""
        return (
            f"drizzle: scale {self.scale}, pixfrac {self.pixfrac:g}, {self.kernel.value} kernel, "
            f"rejection at {self.reject_sigma:g} sigma"
        )


def output_coordinates(
    transform: Transform, rows: slice, width: int, scale: int
) -> tuple[F64, F64]:
    """Where the centres of a frame's input pixels in `rows` (all `width` columns) land on
    the output grid, as (y, x) arrays: the frame -> reference map (the inverse of the
    registration's reference -> frame `transform`), then the finer grid, on which reference
    pixel (0, 0) covers output pixels 0..scale-1: o = scale (r + 0.5) - 0.5."""
    ys, xs = np.mgrid[rows, 0:width].astype(np.float64)
    reference = transform.inverse().apply(np.column_stack([ys.ravel(), xs.ravel()]))
    out = scale * (reference + 0.5) - 0.5
    return out[:, 0].reshape(ys.shape), out[:, 1].reshape(ys.shape)


def model_in_frame(model: F32, transform: Transform, frame_shape: tuple[int, int]) -> F32:
    """The 1x integrated `model` (reference grid, NaN where empty) resampled into a frame's
    pixels by bicubic interpolation; NaN where it cannot say."""
    resampled = warp(model, transform.inverse(), frame_shape, Interpolation.BICUBIC, clamp=None)
    return resampled.image


def reject_pixels(frame: F32, model: F32, reject_sigma: float) -> tuple[Mask, Mask]:
    """Input pixels of a normalised `frame` too low and too high for the `model` of the sky in
    its pixels (`model_in_frame`), as (low, high) masks: outside [min, max] of the model over
    the 3 x 3 pixels around, widened by half that range plus `reject_sigma` times the frame's
    noise (the clipped 1.4826 MAD of frame - model). Pixels the model does not cover are
    kept. Raises ValueError when frame and model differ in shape."""
    if frame.shape != model.shape:
        raise ValueError(f"frame {frame.shape} and model {model.shape} differ")
    known = np.isfinite(model) & np.isfinite(frame)
    if not known.any():
        none = np.zeros(frame.shape, dtype=bool)
        return none, none.copy()
    residual = (frame - model)[known]
    step = max(1, residual.size // _NOISE_SAMPLES)
    _, sigma = clipped_location_scale(np.ascontiguousarray(residual[::step]))
    kernel = np.ones((3, 3), dtype=np.uint8)
    low = cv2.erode(np.where(known, model, np.inf).astype(np.float32), kernel)
    high = cv2.dilate(np.where(known, model, -np.inf).astype(np.float32), kernel)
    spread = np.zeros(frame.shape, dtype=np.float32)
    np.subtract(high, low, out=spread, where=known)
    margin = _RANGE_MARGIN * spread + np.float32(reject_sigma * sigma)
    too_low = known & (frame < low - margin)
    too_high = known & (frame > high + margin)
    return too_low, too_high


class DrizzleStack:
    """The drizzled sum of frames on an output grid `scale` times finer than a reference grid
    of `reference_shape` (y, x): `add` one frame at a time, then `image`."""

    def __init__(self, reference_shape: tuple[int, int], config: DrizzleConfig) -> None:
        self.config = config
        height, width = reference_shape
        self.shape = (height * config.scale, width * config.scale)
        self.weight = np.zeros(self.shape, dtype=np.float32)
        self._sum = np.zeros(self.shape, dtype=np.float32)
        from drizzle.resample import Drizzle  # only a drizzling job pays for its import

        self._drizzle = Drizzle(
            kernel=config.kernel.value,
            out_img=self._sum,
            out_wht=self.weight,
            fillval="0",
            disable_ctx=True,
        )

    def add(
        self,
        frame: npt.NDArray[np.floating],
        transform: Transform,
        weight: float,
        keep: Mask | None = None,
    ) -> None:
        """Drizzle `frame` ``(y, x)`` (normalised, in the units of the reference) whose
        registration is `transform` (reference -> frame) with the frame's `weight`; pixels
        outside `keep` or not finite are left out. Raises ValueError for a negative weight
        or a `keep` of another shape."""
        if weight < 0 or not np.isfinite(weight):
            raise ValueError(f"a frame's weight must be finite and >= 0, got {weight}")
        if keep is not None and keep.shape != frame.shape:
            raise ValueError(f"keep is {keep.shape}, the frame {frame.shape}")
        height, width = frame.shape
        for start in range(0, height, _BAND_ROWS):
            rows = slice(start, min(start + _BAND_ROWS, height))
            data = np.asarray(frame[rows], dtype=np.float32)
            usable = np.isfinite(data)
            if keep is not None:
                usable &= keep[rows]
            out_y, out_x = output_coordinates(transform, rows, width, self.config.scale)
            self._drizzle.add_image(
                np.where(usable, data, np.float32(0.0)),
                exptime=1.0,
                pixmap=np.dstack([out_x, out_y]),
                weight_map=usable.astype(np.float32) * np.float32(weight),
                pixfrac=self.config.pixfrac,
                pixel_scale_ratio=float(self.config.scale),
                in_units="cps",
            )

    def image(self) -> F32:
        """The weighted mean of the drops per output pixel; NaN where none fell."""
        image: F32 = np.where(self.weight > 0, self._sum, np.float32(np.nan))
        return image
