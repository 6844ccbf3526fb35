"""The drizzle stage of a stacking job: the calibrated lights dropped onto a finer grid.

It runs after the 1x integration, which it needs twice: each light is normalised as that
integration normalised it (the same gain and offset per plane, and the same local
normalisation maps, evaluated where the light's pixels fall on the grid), and the integrated
image is the model the light's pixels are rejected against (`processing.drizzle`). Lights are
read one plane at a time from their calibrated ``.npy`` files, which the register stage kept;
the result has the 1x stage's crop, scaled, and rejection maps that count the input pixels
left out per grid pixel, repeated onto the finer grid.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from processing.drizzle import DrizzleConfig, DrizzleStack, model_in_frame, reject_pixels
from processing.local_norm import LocalNormalization
from processing.register import Transform
from processing.stack_integrate import Integrated
from processing.stack_judge import Grid
from processing.stack_register import Registered

F32 = npt.NDArray[np.float32]
U16 = npt.NDArray[np.uint16]
Mask = npt.NDArray[np.bool_]

# Local normalisation maps are evaluated on this many input rows at a time.
_BAND_ROWS = 256


def drizzle_registered(
    registered: Registered,
    grid: Grid,
    integrated: Integrated,
    config: DrizzleConfig,
    progress: Callable[[float], None] = lambda fraction: None,
) -> Integrated:
    """Drizzle every plane of the registered lights' calibrated frames onto a grid
    `config.scale` times finer than `grid`, against the 1x `integrated` result of the same
    lights; `progress` hears the share of frames done. Raises OSError when a calibrated
    file cannot be read."""
    lights = registered.lights
    planes = integrated.image.shape[0]
    scale = config.scale
    images, lows, highs = [], [], []
    rejected_low = rejected_high = 0
    for c in range(planes):
        model = _grid_model(integrated.image[c], integrated.crop_yx, grid.shape)
        stack = DrizzleStack(grid.shape, config)
        low_count = np.zeros(grid.shape, dtype=np.uint16)
        high_count = np.zeros(grid.shape, dtype=np.uint16)
        normalization = integrated.normalizations[c]
        for i, light in enumerate(lights):
            frame = np.asarray(np.load(light.light.path, mmap_mode="r")[c], dtype=np.float32)
            if integrated.local:
                frame = _normalize_locally(frame, light.transform, integrated.local[i][c])
            frame = frame * np.float32(normalization.gain[i]) + np.float32(normalization.offset[i])
            low, high = reject_pixels(
                frame, model_in_frame(model, light.transform, frame.shape), config.reject_sigma
            )
            stack.add(frame, light.transform, light.weight, keep=~(low | high))
            _count_on_grid(low_count, low, light.transform)
            _count_on_grid(high_count, high, light.transform)
            rejected_low += int(low.sum())
            rejected_high += int(high.sum())
            progress((c * len(lights) + i + 1) / (planes * len(lights)))
        images.append(stack.image())
        lows.append(np.repeat(np.repeat(low_count, scale, axis=0), scale, axis=1))
        highs.append(np.repeat(np.repeat(high_count, scale, axis=0), scale, axis=1))
    rows, cols = slice(None), slice(None)
    crop = None
    if integrated.crop_yx is not None:
        crop = tuple(scale * v for v in integrated.crop_yx)
        rows, cols = slice(crop[0], crop[1]), slice(crop[2], crop[3])
    lines = (
        config.describe(),
        f"drizzle rejection: {rejected_low} low and {rejected_high} high input pixels left out",
        f"drizzle crop: rows {rows.start}:{rows.stop}, columns {cols.start}:{cols.stop}"
        if crop
        else "drizzle: no crop",
    )
    return Integrated(
        image=np.stack([image[rows, cols] for image in images]),
        low_count=np.stack([low[rows, cols] for low in lows]),
        high_count=np.stack([high[rows, cols] for high in highs]),
        crop_yx=None if crop is None else (crop[0], crop[1], crop[2], crop[3]),
        history=(*integrated.history, *lines),
        normalizations=integrated.normalizations,
        local=integrated.local,
        scale=scale,
    )


def _grid_model(
    image: F32, crop_yx: tuple[int, int, int, int] | None, shape: tuple[int, int]
) -> F32:
    """The 1x integrated plane on the whole grid: NaN outside its crop."""
    if crop_yx is None:
        return image
    model = np.full(shape, np.nan, dtype=np.float32)
    y0, y1, x0, x1 = crop_yx
    model[y0:y1, x0:x1] = image
    return model


def _normalize_locally(frame: F32, transform: Transform, local: LocalNormalization) -> F32:
    """`frame` (a light's own pixels) through its local normalisation map, evaluated where
    its pixels fall on the grid, in bands of rows."""
    height, width = frame.shape
    out = np.empty_like(frame)
    inverse = transform.inverse()
    for start in range(0, height, _BAND_ROWS):
        stop = min(start + _BAND_ROWS, height)
        ys, xs = np.mgrid[start:stop, 0:width].astype(np.float64)
        on_grid = inverse.apply(np.column_stack([ys.ravel(), xs.ravel()]))
        frame_m, reference_m, gain = local.maps_at(
            on_grid[:, 0].reshape(ys.shape), on_grid[:, 1].reshape(ys.shape)
        )
        out[start:stop] = (frame[start:stop] - frame_m) * gain + reference_m
    return out


def _count_on_grid(counts: U16, rejected: Mask, transform: Transform) -> None:
    """Add each rejected input pixel to the grid pixel its centre falls on."""
    yx = np.argwhere(rejected).astype(np.float64)
    if len(yx) == 0:
        return
    on_grid = np.rint(transform.inverse().apply(yx)).astype(np.int64)
    height, width = counts.shape
    inside = (
        (on_grid[:, 0] >= 0)
        & (on_grid[:, 0] < height)
        & (on_grid[:, 1] >= 0)
        & (on_grid[:, 1] < width)
    )
    np.add.at(counts, (on_grid[inside, 0], on_grid[inside, 1]), 1)
