"""The simulated observatory's physics (daemon/simulator/physics.py) through Nightowl's drivers:
the rotator turns the solved sky, the dust cover darkens the camera, the flat panel lights it
in proportion to its brightness, the roof's shutter and the cover take time to move, the cloud
cover is set in percent, and two lights at one pointing are not the same frame.

Every test leaves the session's simulator as it found it: rotator at 0, cover open, panel off,
roof closed, a clear sky.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from daemon.simulator.physics import FRAME_NOISE_ADU
from daemon.simulator.rig import OBSERVATORY_CONFIG
from drivers.base import CoverState, RaDec, ShutterState
from drivers.equipment import Equipment
from drivers.errors import OperationFailed
from processing.solve import FovRange, ScaleRange, ensure_database, solve
from processing.stars import plate_scale_arcsec_px

TARGET = RaDec(5.5, 22.0)  # near the Crab nebula, a star-rich Milky Way field
SCALE = ScaleRange.around(plate_scale_arcsec_px(10.0, 600.0))
EXPOSURE_S = 0.2
BIN = 4
CONFIG = yaml.safe_load(OBSERVATORY_CONFIG.read_text(encoding="utf-8"))
CLEAR_SKY_PCT = CONFIG["devices"]["observingconditions"][0]["cloudcover"]


@pytest.fixture(scope="module")
def cache_dir(catalog_cache: Path) -> Path:
    """The pattern database for the simulator's camera, built once per checkout (~20 s)."""
    ensure_database(catalog_cache, FovRange.for_frames(SCALE, 2048))
    return catalog_cache


@pytest.fixture(scope="module")
async def pointed(equipment: Equipment) -> AsyncIterator[Equipment]:
    """The mount tracking at TARGET, the cover open and the panel off; the rotator back at 0
    and the cover open afterwards."""
    mount, cover, rotator = equipment.mount, equipment.cover_calibrator, equipment.rotator
    assert mount is not None
    assert cover is not None
    assert rotator is not None
    if (await mount.status()).at_park:
        await mount.unpark()
    await mount.set_tracking(True)
    await mount.sync(TARGET)
    await cover.calibrator_off()
    await cover.open_cover()
    await rotator.move_mechanical(0.0)
    yield equipment
    await cover.calibrator_off()
    await cover.open_cover()
    await rotator.move_mechanical(0.0)


@pytest.fixture(scope="module")
async def sky(pointed: Equipment) -> np.ndarray:
    """A 1 s light with the cover open and the rotator at 0."""
    assert pointed.camera is not None
    return (await pointed.camera.expose(1.001, light=True)).data


async def test_two_lights_at_one_pointing_differ_by_their_own_read_noise(
    pointed: Equipment, sky: np.ndarray
) -> None:
    assert pointed.camera is not None
    again = (await pointed.camera.expose(1.001, light=True)).data
    difference = again.astype(np.float64) - sky.astype(np.float64)
    # The package serves its cached rendering for the same pointing; each frame's own draw
    # makes the difference of two frames sqrt(2) x FRAME_NOISE_ADU (+-10 % for 3 million
    # pixels, rounding and a few clipped ones), and no pixel moves by more than 8 sigma of it.
    expected = np.sqrt(2.0) * FRAME_NOISE_ADU
    assert 0.9 * expected < difference.std() < 1.1 * expected
    assert np.abs(difference).max() < 8 * expected


async def test_the_rotator_turns_the_solved_position_angle(
    pointed: Equipment, sky: np.ndarray, cache_dir: Path
) -> None:
    camera, rotator = pointed.camera, pointed.rotator
    assert camera is not None
    assert rotator is not None
    await rotator.move_mechanical(30.0)
    try:
        turned = (await camera.expose(1.001, light=True)).data
    finally:
        await rotator.move_mechanical(0.0)

    at_0 = solve(sky, scale=SCALE, cache_dir=cache_dir)
    at_30 = solve(turned, scale=SCALE, cache_dir=cache_dir)

    turn = (at_30.rotation_deg - at_0.rotation_deg + 180.0) % 360.0 - 180.0
    assert turn == pytest.approx(30.0, abs=1.0), (at_0.rotation_deg, at_30.rotation_deg)
    assert at_30.parity == at_0.parity
    centre_moved_arcsec = 3600 * np.hypot(
        (at_30.ra_deg - at_0.ra_deg) * np.cos(np.radians(at_0.dec_deg)),
        at_30.dec_deg - at_0.dec_deg,
    )
    assert centre_moved_arcsec < 10.0  # the camera turns about the optical axis


async def test_a_closed_cover_darkens_light_frames_and_a_lit_panel_lights_them(
    pointed: Equipment, sky: np.ndarray
) -> None:
    camera, cover = pointed.camera, pointed.cover_calibrator
    assert camera is not None
    assert cover is not None
    closing = asyncio.create_task(cover.close_cover())
    await asyncio.sleep(0.2)
    assert (await cover.status()).cover is CoverState.MOVING
    await closing
    await camera.set_binning(BIN, BIN)  # 16x fewer pixels to download
    try:
        dark = (await camera.expose(EXPOSURE_S, light=False)).data.astype(np.float64)
        covered = (await camera.expose(EXPOSURE_S, light=True)).data.astype(np.float64)
        panel = {}
        for brightness in (16, 32):
            await cover.calibrator_on(brightness)
            lit = await camera.expose(EXPOSURE_S, light=True)
            panel[brightness] = lit.data.astype(np.float64)
    finally:
        await cover.calibrator_off()
        await camera.set_binning(1, 1)

    bias, noise = float(np.median(dark)), float(np.std(dark))
    assert np.max(sky) > np.median(sky) + 5000  # the cover open: stars
    assert abs(np.median(covered) - bias) < 2.0
    # No star: the sky frame's stars peak over 5000 ADU above its median; the dark's noise (a
    # clipped, long-tailed distribution) reaches ~10 sigma over this many pixels.
    assert np.max(covered) < bias + 1000
    assert np.std(covered) == pytest.approx(noise, rel=0.05)

    per_pixel_s = CONFIG["panel_flux_adu_s"] * BIN * BIN / cover.info.max_brightness
    h, w = dark.shape
    for brightness, frame in panel.items():
        centre = float(np.median(frame[h // 2 - 20 : h // 2 + 20, w // 2 - 20 : w // 2 + 20]))
        corner = float(np.median(frame[:20, :20]))
        assert centre - bias == pytest.approx(brightness * EXPOSURE_S * per_pixel_s, rel=0.02)
        assert 0.93 < (corner - bias) / (centre - bias) < 0.99  # a gentle vignetting
    ratio = (np.median(panel[32]) - bias) / (np.median(panel[16]) - bias)
    assert ratio == pytest.approx(2.0, rel=0.02)


async def test_the_roof_moves_through_opening_and_closing_in_its_time(
    equipment: Equipment,
) -> None:
    roof = equipment.dome
    assert roof is not None
    assert not roof.info.can_set_azimuth  # the default dome is the roll-off roof
    assert (await roof.status()).shutter is ShutterState.CLOSED
    shutter_time = CONFIG["shutter_time_s"]

    started = time.monotonic()
    opening = asyncio.create_task(roof.open_shutter())
    seen = []
    while not opening.done():
        seen.append((await roof.status()).shutter)
        await asyncio.sleep(0.1)
    await opening
    took = time.monotonic() - started
    assert ShutterState.OPENING in seen
    assert ShutterState.CLOSING not in seen
    assert shutter_time * 0.9 < took < shutter_time + 3.0
    assert (await roof.status()).shutter is ShutterState.OPEN

    closing = asyncio.create_task(roof.close_shutter())
    await asyncio.sleep(0.3)
    assert (await roof.status()).shutter is ShutterState.CLOSING
    await roof.abort_slew()  # stops the roof where it is
    with pytest.raises(OperationFailed):
        await closing
    assert (await roof.status()).shutter is ShutterState.ERROR

    await roof.close_shutter()
    assert (await roof.status()).shutter is ShutterState.CLOSED


async def test_the_cloud_cover_is_set_in_percent(equipment: Equipment, simulator_url: str) -> None:
    weather = equipment.weather
    assert weather is not None
    url = f"{simulator_url}/api/v1/observingconditions/0/cloudcover"

    def set_cloud_cover(percent: float) -> dict[str, object]:
        reply: dict[str, object] = requests.put(url, data={"CloudCover": percent}, timeout=5).json()
        return reply

    assert set_cloud_cover(80.0)["ErrorNumber"] == 0
    try:
        assert (await weather.status()).cloud_cover_pct == 80.0
        assert set_cloud_cover(101.0)["ErrorNumber"] == 0x401
    finally:
        set_cloud_cover(CLEAR_SKY_PCT)
