"""Local normalisation: match a registered frame to the reference region by region.

A global normalisation (`processing.normalize`) gives each frame one offset and scale, which
cannot undo a sky gradient that differs from frame to frame (the Moon or a town's glow moving
across the field through the night); rejection then clips the gradient's ends and the stack
inherits a mixture of gradients. Like PixInsight's LocalNormalization (``.xnml``), the frame
and the reference are measured tile by tile: the sky's location (median) and scale (1.4826
MAD), both clipped at 3 sigma so stars and other bright outliers drop out
(`processing.normalize.clipped_location_scale`), on the pixels finite in both. The tile grids
are interpolated smoothly by bicubic splines through the tile centres (linear beyond the
outer centres: a plane is reproduced exactly up to the frame's edges), and each pixel maps as

    x' = (x - m_frame(p)) * s_ref(p) / s_frame(p) + m_ref(p)

so the sky lands on the reference's level everywhere, whatever error the tile's scale carries.
The scale is that of the background's dispersion (noise and faint signal), as in PixInsight's
and Siril's additive + scaling normalisation; see `processing.normalize.Normalization` for
when that dispersion measures the noise rather than the signal.

Estimating (`estimate_local_normalization`) is separate from applying (`LocalNormalization`);
nothing here reads or writes a file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from processing.normalize import clipped_location_scale

if TYPE_CHECKING:
    from scipy.interpolate import RectBivariateSpline

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

MIN_TILE_PX = 32
MAX_TILE_PX = 4096
# Statistics of a tile come from at most ~128 x 128 pixels of it (a regular subsample): the
# clipped MAD then carries ~1 % error and the median ~0.01 sigma, at a sixteenth of the cost
# of a 512 px tile. A tile with fewer than a quarter of its samples finite in both frames (a
# registered frame's empty margin) takes its nearest measured neighbour's values.
_TILE_SAMPLES_ACROSS = 128
_MIN_FINITE_FRACTION = 0.25
# The maps are evaluated this many rows at a time (three float64 maps of a 6000 px wide
# frame: ~37 MB).
_APPLY_ROWS = 256


@dataclass(frozen=True)
class LocalNormConfig:
    """tile_px: side of the square tiles measured, px (PixInsight's scale of 256 or 128 px is
    typical: smaller follows steeper gradients, larger keeps a bright nebula from being
    taken for sky)."""

    tile_px: int = 256

    def __post_init__(self) -> None:
        if not MIN_TILE_PX <= self.tile_px <= MAX_TILE_PX:
            raise ValueError(f"tile_px must be {MIN_TILE_PX}..{MAX_TILE_PX}, got {self.tile_px}")


@dataclass(frozen=True, eq=False)
class LocalNormalization:
    """A frame's local map onto the reference: per tile the frame's and the reference's sky
    location and their scale ratio, at the tile centres ``centres_y`` / ``centres_x`` (px of
    the reference grid of `shape`)."""

    shape: tuple[int, int]
    centres_y: F64
    centres_x: F64
    frame_location: F64
    reference_location: F64
    gain: F64

    def maps_at(self, y: F64, x: F64) -> tuple[F64, F64, F64]:
        """(frame location, reference location, gain) at reference coordinates (y, x) of any
        shape (clamped to the grid): for a frame not on the grid (drizzle)."""
        height, width = self.shape
        yy = np.clip(y, 0.0, height - 1.0).ravel()
        xx = np.clip(x, 0.0, width - 1.0).ravel()
        values = tuple(spline.ev(yy, xx).reshape(np.shape(y)) for spline in self._splines())
        return values[0], values[1], values[2]

    def apply(self, image: npt.NDArray[np.floating]) -> F32:
        """`image` ``(y, x)`` on the reference grid, normalised; NaN stays NaN. The input is
        not modified."""
        if image.shape != self.shape:
            raise ValueError(f"image is {image.shape}, the normalisation is for {self.shape}")
        height, width = self.shape
        splines = self._splines()
        xs = np.arange(width, dtype=np.float64)
        out = np.empty(self.shape, dtype=np.float32)
        for start in range(0, height, _APPLY_ROWS):
            stop = min(start + _APPLY_ROWS, height)
            ys = np.arange(start, stop, dtype=np.float64)
            frame_m, reference_m, gain = (spline(ys, xs) for spline in splines)
            out[start:stop] = (image[start:stop] - frame_m) * gain + reference_m
        return out

    def _splines(self) -> tuple[RectBivariateSpline, ...]:
        # Imported here: scipy.interpolate is a sixth of a second of every job's start.
        from scipy.interpolate import RectBivariateSpline

        height, width = self.shape
        bbox = [
            min(0.0, float(self.centres_y[0])),
            max(height - 1.0, float(self.centres_y[-1])),
            min(0.0, float(self.centres_x[0])),
            max(width - 1.0, float(self.centres_x[-1])),
        ]
        degree_y, degree_x = min(3, len(self.centres_y) - 1), min(3, len(self.centres_x) - 1)
        return tuple(
            RectBivariateSpline(
                self.centres_y, self.centres_x, grid, bbox=bbox, kx=degree_y, ky=degree_x, s=0
            )
            for grid in (self.frame_location, self.reference_location, self.gain)
        )


def tile_edges(size_px: int, tile_px: int) -> npt.NDArray[np.int64]:
    """Edges of the tiles along one axis: at least two tiles, of about `tile_px` each."""
    count = max(2, round(size_px / tile_px))
    return np.linspace(0, size_px, count + 1).round().astype(np.int64)


def estimate_local_normalization(
    frame: npt.NDArray[np.floating],
    reference: npt.NDArray[np.floating],
    config: LocalNormConfig = LocalNormConfig(),
) -> LocalNormalization:
    """The map of registered `frame` onto `reference` (both ``(y, x)`` on one grid, NaN where
    not covered). Raises ValueError for differing shapes, an image smaller than two tiles'
    worth of samples, or no tile with enough pixels finite in both."""
    if frame.shape != reference.shape or frame.ndim != 2:
        raise ValueError(f"frame {frame.shape} and reference {reference.shape} differ")
    height, width = frame.shape
    edges_y, edges_x = tile_edges(height, config.tile_px), tile_edges(width, config.tile_px)
    shape = (len(edges_y) - 1, len(edges_x) - 1)
    frame_m, reference_m, gain = (np.full(shape, np.nan) for _ in range(3))
    for i in range(shape[0]):
        for j in range(shape[1]):
            y0, y1, x0, x1 = edges_y[i], edges_y[i + 1], edges_x[j], edges_x[j + 1]
            step = max(1, math.ceil(max(y1 - y0, x1 - x0) / _TILE_SAMPLES_ACROSS))
            f = np.asarray(frame[y0:y1:step, x0:x1:step], dtype=np.float32)
            r = np.asarray(reference[y0:y1:step, x0:x1:step], dtype=np.float32)
            both = np.isfinite(f) & np.isfinite(r)
            if both.sum() < max(16, _MIN_FINITE_FRACTION * both.size):
                continue
            frame_m[i, j], frame_s = clipped_location_scale(f[both])
            reference_m[i, j], reference_s = clipped_location_scale(r[both])
            if frame_s > 0 and reference_s > 0:
                gain[i, j] = reference_s / frame_s
    measured = np.isfinite(gain)
    if not measured.any():
        raise ValueError("no tile has enough pixels finite in both the frame and the reference")
    if not measured.all():
        # Imported here: only a tile without pixels needs it, and it costs a job 0.07 s to load.
        from scipy import ndimage

        nearest = ndimage.distance_transform_edt(
            ~measured, return_distances=False, return_indices=True
        )
        frame_m, reference_m, gain = (grid[tuple(nearest)] for grid in (frame_m, reference_m, gain))
    return LocalNormalization(
        shape=(height, width),
        centres_y=(edges_y[:-1] + edges_y[1:] - 1) / 2.0,
        centres_x=(edges_x[:-1] + edges_x[1:] - 1) / 2.0,
        frame_location=frame_m,
        reference_location=reference_m,
        gain=gain,
    )
