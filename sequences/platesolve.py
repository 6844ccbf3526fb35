"""Plate solving for the engine: `processing.solve` on a camera frame, off the event loop.

The scale comes from the camera's pixel size and binning and the telescope's focal length as
the mount reports it (+-20 %); the mount's reported position is a hint, so a solve farther away
than `hint_radius_deg` counts as a failure, never as a correction.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from drivers.base import RaDec, RawFrame
from drivers.equipment import Equipment
from processing.solve import (
    FovRange,
    ScaleRange,
    SkyHint,
    SolveConfig,
    SolverUnavailable,
    ensure_database,
    solve,
)
from processing.stars import plate_scale_arcsec_px
from sequences.centering import FrameSolution, FrameSolver

HINT_RADIUS_DEG = 10.0


def frame_scale(equipment: Equipment, pixel_size_um: float, binning: int) -> ScaleRange:
    """The expected scale of the main camera's frames; `SolverUnavailable` without a focal
    length."""
    mount = equipment.mount
    focal_m = mount.info.focal_length_m if mount is not None and mount.connected else None
    if not focal_m:
        raise SolverUnavailable(
            "the focal length is unknown: the mount reports none (set it in the driver)"
        )
    return ScaleRange.around(plate_scale_arcsec_px(pixel_size_um, focal_m * 1000.0, binning))


def frame_solver(
    equipment: Equipment,
    cache_dir: Path,
    *,
    hint_radius_deg: float = HINT_RADIUS_DEG,
    config: SolveConfig | None = None,
) -> FrameSolver:
    settings = config or SolveConfig()

    async def solve_frame(frame: RawFrame, hint: RaDec) -> FrameSolution:
        scale = frame_scale(equipment, frame.info.pixel_size_x_um, frame.status.bin_x)
        solution = await asyncio.to_thread(
            solve,
            frame.data,
            scale=scale,
            cache_dir=cache_dir,
            hint=SkyHint(hint.ra_deg, hint.dec_deg, hint_radius_deg),
            config=settings,
        )
        center = RaDec((solution.ra_deg / 15.0) % 24.0, solution.dec_deg)
        return FrameSolution(center, solution.rotation_deg)

    return solve_frame


async def prepare_solver(equipment: Equipment, cache_dir: Path) -> Path | None:
    """Build the main camera's pattern database ahead of the first solve (~20 s once per
    camera and telescope); None when the camera or focal length is unknown."""
    camera = equipment.camera
    if camera is None or not camera.connected:
        return None
    try:
        scale = frame_scale(equipment, camera.info.pixel_size_x_um, 1)
    except SolverUnavailable:
        return None
    fov = FovRange.for_frames(scale, camera.info.width_px)
    return await asyncio.to_thread(ensure_database, cache_dir, fov)
