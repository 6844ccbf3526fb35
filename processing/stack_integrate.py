"""The integrate stage of a stacking job: the registered lights combined per colour plane.

Each plane is integrated by `processing.integrate.integrate` (normalised, weighted,
winsorized sigma clipping by default) in row blocks read from the registered lights'
``.npy`` files (`processing.io.NpyRows`), so memory stays within the integration's budget;
the result is then cut to the area every light covers (auto-crop), if asked. With local
normalisation (`processing.local_norm`), each light's planes are first matched to the
reference's tile by tile, rewritten in place.

Given a remote executor (a Dask cluster, `processing.cluster`), each plane is integrated
as tasks of one row block each (`RowBlock`, `integrate_row_block`): a task gets the
registered lights' paths, its rows, the normalisation and weights, reads its rows of every
light and returns its part of the image and rejection maps. The normalisation is estimated
here first (from a subsample), so the blocks need nothing from each other; the block size
comes from `IntegrationConfig.memory_budget_bytes` as each worker's budget
(`block_plan(..., workers=...)`). Every pixel depends only on its own samples, so the
result is the same, bit for bit, as on this process's threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt

from processing.cluster import Executor
from processing.integrate import (
    IntegrationConfig,
    IntegrationResult,
    StackResult,
    block_plan,
    combine_rows,
    frame_weights,
    from_blocks,
    integrate,
    read_rows,
)
from processing.io import NpyRows
from processing.local_norm import (
    LocalNormalization,
    LocalNormConfig,
    estimate_local_normalization,
)
from processing.normalize import FrameNormalization, estimate_normalization
from processing.register import crop_box
from processing.stack_judge import Grid
from processing.stack_register import Registered

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U16 = npt.NDArray[np.uint16]


@dataclass(frozen=True)
class IntegrateStage:
    """How the registered lights are combined; `crop` cuts the result to the area every
    light covers; `local_normalization` (None: off) matches them to the reference region by
    region first."""

    integration: IntegrationConfig
    crop: bool
    local_normalization: LocalNormConfig | None = None


@dataclass(frozen=True, eq=False)
class Integrated:
    """The integrate stage's result: the image ``(c, y, x)`` float32 and its rejection maps
    (rejected samples per pixel, low and high), the crop ``(y0, y1, x0, x1)`` of the grid
    (None: not cropped) and the HISTORY lines of the step. `normalizations` (per plane) and
    `local` (per light, per plane; empty without local normalisation) say how each light was
    matched to the reference; `scale` is output pixels per grid pixel (drizzle)."""

    image: F32
    low_count: U16
    high_count: U16
    crop_yx: tuple[int, int, int, int] | None
    history: tuple[str, ...]
    normalizations: tuple[FrameNormalization, ...] = ()
    local: tuple[tuple[LocalNormalization, ...], ...] = ()
    scale: int = 1


def integrate_registered(
    registered: Registered,
    grid: Grid,
    stage: IntegrateStage,
    progress: Callable[[float], None] = lambda fraction: None,
    executor: Executor | None = None,
) -> Integrated:
    """Integrate every plane of the registered lights, normalised to the reference light
    (or to the best-weighted one on a grid from outside the group); `progress` hears the
    share of planes done. With a remote `executor`, the row blocks are its tasks; else
    this process's threads integrate them. Raises ValueError as `integrate` does, OSError
    when a file cannot be read."""
    lights = registered.lights
    planes = int(np.load(lights[0].path, mmap_mode="r").shape[0])
    weights = np.array([r.weight for r in lights], dtype=np.float64)
    reference_index = next(
        (i for i, r in enumerate(lights) if r.light is grid.light), int(np.argmax(weights))
    )
    integration = replace(stage.integration, reference_index=reference_index)
    local: tuple[tuple[LocalNormalization, ...], ...] = ()
    local_lines: tuple[str, ...] = ()
    if stage.local_normalization is not None:
        local = _normalize_locally(registered, reference_index, stage.local_normalization)
        local_lines = (f"local normalization: tiles of {stage.local_normalization.tile_px} px",)
    channels = []
    for c in range(planes):
        if executor is not None and executor.remote:
            paths = tuple(r.path for r in lights)
            channels.append(
                _integrate_on(
                    executor,
                    paths,
                    c,
                    integration,
                    weights,
                    partial(_plane_progress, progress, c, planes),
                )
            )
        else:
            sources = [NpyRows(r.path, c) for r in lights]
            try:
                channels.append(integrate(sources, integration, weights=weights))
            finally:
                for source in sources:
                    source.close()
        progress((c + 1) / planes)
    rows, cols = (slice(None), slice(None))
    crop: tuple[int, int, int, int] | None = None
    if stage.crop:
        rows, cols = crop_box(registered.common)
        crop = (rows.start, rows.stop, cols.start, cols.stop)
    crop_line = (
        f"crop: rows {rows.start}:{rows.stop}, columns {cols.start}:{cols.stop}"
        if crop
        else "no crop"
    )
    return Integrated(
        image=np.stack([r.image[rows, cols] for r in channels]),
        low_count=np.stack([r.low_count[rows, cols] for r in channels]),
        high_count=np.stack([r.high_count[rows, cols] for r in channels]),
        crop_yx=crop,
        history=(*local_lines, *channels[0].history, crop_line),
        normalizations=tuple(r.normalization for r in channels),
        local=local,
    )


@dataclass(frozen=True, eq=False)
class RowBlock:
    """One row block of one plane to integrate elsewhere: rows ``start:stop`` of plane
    `plane` of every light (``.npy`` files), normalised by `normalization`, combined with
    `weights` (summing to 1) in chunks of `chunk` pixels."""

    paths: tuple[Path, ...]
    plane: int
    start: int
    stop: int
    normalization: FrameNormalization
    weights: F64
    config: IntegrationConfig
    chunk: int


def integrate_row_block(block: RowBlock) -> StackResult:
    """A row block's image and rejection maps; raises OSError when a file cannot be read,
    ValueError when it is not a float32 plane."""
    sources = [NpyRows(path, block.plane) for path in block.paths]
    try:
        stack = read_rows(sources, block.start, block.stop)
    finally:
        for source in sources:
            source.close()
    return combine_rows(stack, block.normalization, block.weights, block.config, block.chunk)


def _plane_progress(
    progress: Callable[[float], None], plane: int, planes: int, share: float
) -> None:
    progress((plane + share) / planes)


def _integrate_on(
    executor: Executor,
    paths: Sequence[Path],
    plane: int,
    config: IntegrationConfig,
    weights: F64,
    progress: Callable[[float], None],
) -> IntegrationResult:
    """One plane integrated as row-block tasks on `executor`, as `integrate` would."""
    sources = [NpyRows(path, plane) for path in paths]
    try:
        shape = sources[0].shape
        if any(source.shape != shape for source in sources):
            raise ValueError(f"registered lights differ in shape: {[s.shape for s in sources]}")
        normalization = estimate_normalization(
            sources, config.normalization, config.reference_index, threads=config.threads
        )
    finally:
        for source in sources:
            source.close()
    kept = frame_weights(weights, len(paths))
    rows, chunk = block_plan(len(paths), shape, config, workers=executor.workers)
    blocks = [
        RowBlock(
            tuple(paths),
            plane,
            start,
            min(start + rows, shape[0]),
            normalization,
            kept,
            config,
            chunk,
        )
        for start in range(0, shape[0], rows)
    ]
    results = executor.map(integrate_row_block, blocks, lambda done: progress(done / len(blocks)))
    return from_blocks(
        shape,
        [(b.start, r) for b, r in zip(blocks, results, strict=True)],
        config,
        normalization,
        kept,
    )


def _normalize_locally(
    registered: Registered, reference_index: int, config: LocalNormConfig
) -> tuple[tuple[LocalNormalization, ...], ...]:
    """Match every light's planes to the reference light's tile by tile, each file rewritten
    in place (one light in memory at a time, beside the reference); the maps, per light and
    plane. Raises ValueError when a light and the reference have no tile in common."""
    reference = np.load(registered.lights[reference_index].path)
    maps = []
    for light in registered.lights:
        cube = np.load(light.path)
        found = tuple(
            estimate_local_normalization(cube[c], reference[c], config)
            for c in range(cube.shape[0])
        )
        if light is not registered.lights[reference_index]:
            np.save(
                light.path, np.stack([m.apply(plane) for m, plane in zip(found, cube, strict=True)])
            )
        maps.append(found)
    return tuple(maps)
