"""The masters stage of a stacking job: a group's calibration frames become masters (or a
ready-made master is reused), and the masters become what its lights are calibrated with.

Building a master reads its frames a block of rows at a time (`processing.io.FitsRows`) and
combines them with `processing.masters`; the master's file is written by
`processing.stack_outputs`. A job builds each master once for its inputs: the runner keeps
them by `master_key`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from processing.calibrate import (
    CalibrationMasters,
    CosmeticConfig,
    DefectMap,
    find_defects,
)
from processing.grouping import FrameInfo
from processing.io import FitsRows
from processing.masters import MasterConfig, master_bias, master_dark, master_dark_flat, master_flat
from processing.stacking import PipelineError, file_sha256, input_lines, read_planes

F32 = npt.NDArray[np.float32]

MASTER_KINDS = ("BIAS", "DARK", "DARKFLAT", "FLAT")


@dataclass(frozen=True, eq=False)
class BuiltMaster:
    """A master of a job: its data (ADU; a flat normalised to mean 1), HISTORY lines, the
    exposure of its frames (s) and the frames it came from. `combined` is False for a
    ready-made master that was reused (its file exists already)."""

    kind: str
    data: F32
    exposure_s: float
    history: tuple[str, ...]
    frames: tuple[FrameInfo, ...]
    combined: bool


@dataclass(frozen=True, eq=False)
class GroupMasters:
    """What a group's lights are calibrated with: the masters, the defect map of the master
    dark (None without a dark or with cosmetic correction off), and their provenance."""

    calibration: CalibrationMasters
    defects: DefectMap | None
    history: tuple[str, ...]


def master_key(kind: str, frames: Sequence[FrameInfo]) -> tuple[object, ...]:
    """Identifies a master by its kind and input files, so a job builds it once."""
    return (kind, tuple(f.path for f in frames))


def build_master(
    kind: str,
    frames: Sequence[FrameInfo],
    config: MasterConfig,
    *,
    bias: BuiltMaster | None = None,
    dark_flat: BuiltMaster | None = None,
) -> BuiltMaster:
    """The master of `kind` (one of `MASTER_KINDS`) from `frames`: one frame marked as a
    master is reused (a flat normalised to mean 1, as other tools keep master flats in ADU),
    several are combined (a flat calibrated by `dark_flat`, else `bias`). Raises
    PipelineError for a reused master flat whose mean is not positive, ValueError as
    `processing.masters` does, OSError when a frame cannot be read."""
    if kind not in MASTER_KINDS:
        raise ValueError(f"kind must be one of {MASTER_KINDS}, got {kind!r}")
    if not frames:
        raise ValueError("a master needs at least one frame")
    exposure = frames[0].exposure_s
    if len(frames) == 1 and frames[0].is_master:
        data = read_planes(frames[0].path)[0][0]
        if kind == "FLAT":
            mean = float(np.nanmean(data, dtype=np.float64))
            if not mean > 0:
                raise PipelineError(f"master flat {frames[0].path} has a mean of {mean}")
            data = (data / np.float32(mean)).astype(np.float32)
        line = f"master {kind.lower()} reused: {frames[0].path.name} ({file_sha256(frames[0])})"
        return BuiltMaster(kind, data, exposure, (line,), tuple(frames), combined=False)
    sources = [FitsRows(f.path) for f in frames]
    # The inputs' checksums are read beside the combination: hashlib lets go of the GIL, and
    # the combination's threads leave a core idle while they read rows.
    hasher = ThreadPoolExecutor(1, thread_name_prefix="master checksums")
    checksums = hasher.map(file_sha256, frames)
    try:
        if kind == "FLAT":
            master = master_flat(
                sources,
                bias=None if bias is None else bias.data,
                dark_flat=None if dark_flat is None else dark_flat.data,
                config=config,
            )
        else:
            build = {"BIAS": master_bias, "DARK": master_dark, "DARKFLAT": master_dark_flat}
            master = build[kind](sources, config)
        inputs = tuple(
            line
            for f, checksum in zip(frames, checksums, strict=True)
            for line in input_lines(f.path, checksum)
        )
    finally:
        hasher.shutdown(cancel_futures=True)
        for source in sources:
            source.close()
    history = (*master.history, *inputs)
    return BuiltMaster(kind, master.data, exposure, history, tuple(frames), combined=True)


def group_masters(
    bias: BuiltMaster | None,
    dark: BuiltMaster | None,
    dark_flat: BuiltMaster | None,
    flat: BuiltMaster | None,
    *,
    cosmetic: CosmeticConfig | None,
    colour: bool,
) -> GroupMasters:
    """The calibration of a group from its masters; hot and cold pixels found in the master
    dark unless `cosmetic` is None (compared within one colour of the mosaic when `colour`)."""
    calibration = CalibrationMasters(
        bias=None if bias is None else bias.data,
        dark=None if dark is None else dark.data,
        dark_exposure_s=None if dark is None else dark.exposure_s,
        flat=None if flat is None else flat.data,
    )
    defects = None
    if dark is not None and cosmetic is not None:
        defects = find_defects(dark.data, replace(cosmetic, cfa=True) if colour else cosmetic)
    history: list[str] = []
    for made in (bias, dark, dark_flat, flat):
        if made is not None:
            history.extend(made.history)
    if defects is not None:
        history.append(
            f"cosmetic correction: {int(defects.hot.sum())} hot, "
            f"{int(defects.cold.sum())} cold pixels from the master dark"
        )
    return GroupMasters(calibration, defects, tuple(history))
