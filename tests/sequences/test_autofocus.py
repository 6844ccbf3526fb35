"""Autofocus against the real simulator: its blur grows 1 % per step from 10000 (capped 5x)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from drivers.base import RaDec
from drivers.equipment import Equipment
from sequences.autofocus import AutofocusConfig, run_autofocus
from tests.drivers.test_alpaca_camera import point_at

CYGNUS = RaDec(20.37, 40.26)


@pytest.mark.parametrize("start", [9_700, 10_300])
async def test_autofocus_lands_near_best_focus_from_either_side(
    equipment: Equipment, start: int
) -> None:
    camera, focuser = equipment.camera, equipment.focuser
    assert camera is not None
    assert focuser is not None
    await point_at(equipment, CYGNUS)
    await focuser.move_to(start)
    try:
        report = await run_autofocus(camera, focuser, AutofocusConfig(exposure_s=1.0))
        assert report.success, report.reason
        assert report.final_position is not None
        # The simulator's best focus is 10000 exactly; +-50 steps is a quarter of its HFR
        # doubling distance (the target).
        assert abs(report.final_position - 10_000) <= 50, report
        assert report.exposures <= 11
        assert (await focuser.status()).position == report.final_position
        assert report.fit is not None
        assert report.fit.r_squared >= 0.9
    finally:
        await focuser.move_to(10_000)


async def test_a_sample_spoilt_by_a_gust_is_left_out_of_the_curve(
    equipment: Equipment,
) -> None:
    """The second of seven samples is blurred as a gust of wind would (its stars several
    times wider): the fit leaves it out, says so, and still lands near best focus."""
    camera, focuser = equipment.camera, equipment.focuser
    assert camera is not None
    assert focuser is not None
    await point_at(equipment, CYGNUS)
    await focuser.move_to(10_000)
    try:
        gusty = _GustCamera(camera, spoilt_exposure=2)
        config = AutofocusConfig(exposure_s=1.0, steps_out=3)
        report = await run_autofocus(gusty, focuser, config)
        assert report.success, report
        assert report.left_out_position == 9_800, report
        assert report.final_position is not None
        assert abs(report.final_position - 10_000) <= 50, report
        spoilt = next(p for p in report.points if p.position == 9_800)
        assert report.fit is not None
        assert spoilt.hfr_px is not None
        assert spoilt.hfr_px > 2 * report.fit.hfr_at(9_800)[()]
    finally:
        await focuser.move_to(10_000)


async def test_a_starless_sky_fails_cleanly_and_returns_the_focuser(
    equipment: Equipment,
) -> None:
    """A dark frame has no stars: no curve, and the focuser goes back where it was."""
    camera, focuser = equipment.camera, equipment.focuser
    assert camera is not None
    assert focuser is not None
    await focuser.move_to(10_120)
    try:
        report = await run_autofocus(
            _DarkCamera(camera), focuser, AutofocusConfig(exposure_s=0.5, steps_out=2)
        )
        assert not report.success
        assert "no focus curve" in report.reason
        assert (await focuser.status()).position == 10_120
    finally:
        await focuser.move_to(10_000)


class _DarkCamera:
    """The real camera with its shutter kept closed: a sky without stars, as under clouds."""

    def __init__(self, camera: object) -> None:
        self._camera = camera

    def __getattr__(self, name: str) -> object:
        return getattr(self._camera, name)

    async def expose(self, exposure_s: float, *, light: bool, **kwargs: object) -> object:
        return await self._camera.expose(exposure_s, light=False, **kwargs)  # type: ignore[attr-defined]


class _GustCamera:
    """The real camera, but its `spoilt_exposure`-th frame (1-based) is blurred as a gust
    shakes the telescope during it: a fault the simulator does not produce on demand."""

    def __init__(self, camera: object, spoilt_exposure: int) -> None:
        self._camera = camera
        self._spoilt = spoilt_exposure
        self._count = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._camera, name)

    async def expose(self, exposure_s: float, *, light: bool, **kwargs: object) -> object:
        frame = await self._camera.expose(exposure_s, light=light, **kwargs)  # type: ignore[attr-defined]
        self._count += 1
        if self._count != self._spoilt:
            return frame
        blurred = ndimage.gaussian_filter(frame.data.astype(np.float32), sigma=2.0)
        return dataclasses.replace(frame, data=np.round(blurred).astype(np.uint16))
