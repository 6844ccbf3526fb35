"""The Alpaca mount driver against the real simulator: slews, park, pulse guiding."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from drivers.base import Camera, GuideDirection, RaDec, RawFrame
from drivers.equipment import Equipment
from tests.drivers.test_alpaca_camera import M31, point_at
from tests.helpers import measure_shift

# 10 um pixels at 0.6 m focal length.
PLATE_SCALE_ARCSEC_PX = 206.264806 * 10.0 / 600.0
GUIDE_RATE_DEG_S = 0.5 * 15.041 / 3600.0  # half sidereal
CYGNUS = RaDec(20.37, 40.26)  # a star-rich field in the Milky Way


async def test_slew_to_m31_reports_the_target(equipment: Equipment) -> None:
    mount = equipment.mount
    assert mount is not None
    await point_at(equipment, RaDec(5.0, 10.0))
    await mount.slew(M31)
    status = await mount.status()
    assert not status.slewing
    # The simulator reports exactly the commanded J2000 position; 1e-4 h = 0.36 s of RA.
    np.testing.assert_allclose(status.position.ra_hours, M31.ra_hours, atol=1e-4)
    np.testing.assert_allclose(status.position.dec_deg, M31.dec_deg, atol=1e-3)


async def test_a_cancelled_slew_stops_the_mount_where_it_is(equipment: Equipment) -> None:
    """A run aborted mid-slew (the weather turned): the mount stops instead of going on to a
    target nobody waits for. About 190 deg at the simulator's 30 deg/s takes over 6 s;
    cancelled after 1 s, the mount must be still and at least 30 deg short of M31."""
    mount = equipment.mount
    assert mount is not None
    await point_at(equipment, M31)
    await mount.sync(RaDec(12.0, -40.0))  # placed far away at once
    slew = asyncio.create_task(mount.slew(M31))
    await asyncio.sleep(1.0)
    slew.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slew
    stopped = await mount.status()
    assert not stopped.slewing
    await asyncio.sleep(1.0)
    later = await mount.status()
    assert not later.slewing
    assert later.position.separation_deg(stopped.position) < 0.05
    assert later.position.separation_deg(M31) > 30.0


async def test_park_and_unpark(equipment: Equipment) -> None:
    mount = equipment.mount
    assert mount is not None
    await point_at(equipment, M31)
    await mount.park()
    assert (await mount.status()).at_park
    await mount.unpark()
    assert not (await mount.status()).at_park


async def frame_at_rest(camera: Camera, tries: int = 5) -> RawFrame:
    """A 1 s light once two in a row agree (within 0.3 px). The simulator moves its pointing
    from a background thread whose read-compute-write is not atomic with the slew's last step:
    on a busy machine an update computed mid-slew can land just after the slew reports done
    and pull the pointing back short of the target, after the first frame was taken."""
    previous = await camera.expose(1.0, light=True)
    for _ in range(tries):
        frame = await camera.expose(1.0, light=True)
        if max(abs(s) for s in measure_shift(previous.data, frame.data)) < 0.3:
            return frame
        previous = frame
    raise AssertionError(f"the pointing still moved after {tries + 1} frames")


@pytest.mark.parametrize(
    ("direction", "axis"), [(GuideDirection.NORTH, 0), (GuideDirection.EAST, 1)]
)
async def test_pulse_guide_moves_the_next_frame_by_the_expected_pixels(
    equipment: Equipment, direction: GuideDirection, axis: int
) -> None:
    mount, camera = equipment.mount, equipment.camera
    assert mount is not None
    assert camera is not None
    await point_at(equipment, CYGNUS)
    await mount.set_guide_rates(GUIDE_RATE_DEG_S, GUIDE_RATE_DEG_S)
    duration_ms = 5000
    before = await frame_at_rest(camera)
    await mount.pulse_guide(direction, duration_ms)
    after = await camera.expose(1.0, light=True)

    moved_arcsec = GUIDE_RATE_DEG_S * duration_ms / 1000.0 * 3600.0
    if direction is GuideDirection.EAST:  # an RA step spans cos(dec) of a great circle
        moved_arcsec *= math.cos(math.radians(CYGNUS.dec_deg))
    expected_px = moved_arcsec / PLATE_SCALE_ARCSEC_PX  # 10.9 px north, 8.4 px east

    shift = measure_shift(before.data, after.data)
    # Phase correlation on a rendered star field is good to ~0.1 px; 0.3 px leaves headroom
    # while still catching a wrong guide rate (1 % of rate = 0.1 px) or a wrong axis.
    np.testing.assert_allclose(abs(shift[axis]), expected_px, atol=0.3)
    np.testing.assert_allclose(shift[1 - axis], 0.0, atol=0.3)
