"""The capture path against the real simulator: FITS files, headers, rows, checksums, quality."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from daemon.capture import CaptureRequest, CaptureService
from daemon.db.models import Event, Frame, Target
from daemon.errors import Refused
from daemon.fits_headers import TargetInfo, header_texts
from daemon.frame_records import register_unrecorded_files
from drivers.base import CameraState, RaDec
from drivers.equipment import Equipment
from processing.io import read_fits
from sequences.frames import ExposureSpec, FrameType, SavedFrame
from tests.drivers.test_alpaca_camera import M31, point_at

M31_TARGET = TargetInfo("M31", ra_deg=M31.ra_deg, dec_deg=M31.dec_deg)


def rows(service: CaptureService) -> list[Frame]:
    with Session(service._engine) as db:
        return list(db.scalars(select(Frame).order_by(Frame.id)))


async def test_lights_darks_and_bias_land_as_fits_with_rows(
    service: CaptureService, equipment: Equipment, tmp_path: Path
) -> None:
    assert equipment.camera is not None
    await point_at(equipment, M31)
    await equipment.camera.set_cooler(True, -10.0)
    lights = await service.capture(
        CaptureRequest(ExposureSpec(FrameType.LIGHT, 1.0, "L"), count=5, target=M31_TARGET)
    )
    darks = await service.capture(CaptureRequest(ExposureSpec(FrameType.DARK, 1.0), count=3))
    bias = await service.capture(CaptureRequest(ExposureSpec(FrameType.BIAS, 0.0), count=2))
    assert (len(lights), len(darks), len(bias)) == (5, 3, 2)

    frames = rows(service)
    assert [f.frame_type for f in frames] == [FrameType.LIGHT] * 5 + [FrameType.DARK] * 3 + [
        FrameType.BIAS
    ] * 2
    assert len({f.path for f in frames}) == 10
    mount = await equipment.mount.status()  # type: ignore[union-attr]
    # Where earlier tests (autofocus) left the focuser on this worker's simulator.
    focus = (await equipment.focuser.status()).position  # type: ignore[union-attr]
    for frame in frames:
        path = tmp_path / "frames" / frame.path
        content = path.read_bytes()
        assert hashlib.sha256(content).hexdigest() == frame.sha256
        assert len(content) == frame.size_bytes
        with fits.open(path) as hdul:
            header, data = hdul[0].header, hdul[0].data
            assert header["BITPIX"] == 16
            assert header["BZERO"] == 32768
            assert data.dtype == np.uint16
            assert data.shape == (1536, 2048)
            assert header["IMAGETYP"] == frame.frame_type.value
            assert header["EXPTIME"] == header["EXPOSURE"] == frame.exposure_s
            assert header["XBINNING"] == header["YBINNING"] == 1
            assert header["XPIXSZ"] == 10.0
            assert header["INSTRUME"] == "Nightowl Main Camera"
            assert header["TELESCOP"] == "Nightowl Mount"
            assert header["FOCALLEN"] == pytest.approx(600.0)
            assert header["SET-TEMP"] == -10.0
            assert header["CCD-TEMP"] == pytest.approx(frame.sensor_temperature_c)
            assert header["SITELAT"] == 47.0
            assert header["SITELONG"] == 8.0
            assert header["ROWORDER"] == "TOP-DOWN"
            assert header["SWCREATE"].startswith("Nightowl")
            assert header["DATE-OBS"].startswith(frame.exposure_start_utc.strftime("%Y-%m-%dT"))
            assert header["MJD-OBS"] > 61000  # 2026
            # The mount did not move: RA/DEC are where it points (J2000 degrees).
            assert header["RA"] == pytest.approx(mount.position.ra_deg, abs=1e-6)
            assert header["DEC"] == pytest.approx(mount.position.dec_deg, abs=1e-6)
            assert header["FOCPOS"] == frame.focuser_position == focus
            if frame.frame_type is FrameType.LIGHT:
                assert header["OBJECT"] == "M31"
                assert header["OBJCTRA"] == "00 42 44.30"
                assert header["OBJCTDEC"] == "+41 16 09.1"
                assert header["FILTER"] == "L"
                assert header["STARS"] == frame.star_count
                assert header["HFR"] == pytest.approx(frame.hfr_px)
            else:
                assert "STARS" not in header
    for light in frames[:5]:
        assert light.star_count is not None
        assert light.star_count >= 10
        assert light.hfr_px is not None
        # 1" seeing on 3.44"/px pixels: stars are undersampled, HFR about half a pixel.
        assert 0.3 < light.hfr_px < 2.0
        assert light.hfr_arcsec == pytest.approx(light.hfr_px * 206.264806 * 10 / 600, rel=1e-6)
        assert light.fwhm_px is not None
        assert light.background_adu is not None
    # The simulator renders the same field each time, but now and then (seen once in CI's
    # ~1300 tests) one frame comes out with twice the HFR and several times the sky. The
    # acceptance check is right to refuse it; what the test holds to is that the series is
    # accepted and that a refusal names its measured cause.
    refused = [light for light in frames[:5] if not light.accepted]
    assert len(refused) <= 1, [light.reject_reason for light in refused]
    for light in refused:
        assert light.reject_reason is not None
        assert "HFR" in light.reject_reason or "sky" in light.reject_reason, light.reject_reason
    with Session(service._engine) as db:
        messages = [e.message for e in db.scalars(select(Event).where(Event.source == "capture"))]
    assert len(messages) == 10


async def test_defocused_lights_have_larger_hfr(
    service: CaptureService, equipment: Equipment
) -> None:
    """The simulator blurs stars by 1 % per focuser step away from 10000, up to 5x."""
    focuser = equipment.focuser
    assert focuser is not None
    await point_at(equipment, RaDec(20.37, 40.26))
    sharp = await service.capture(CaptureRequest(ExposureSpec(FrameType.LIGHT, 1.0)))
    await focuser.move_to(10400)
    try:
        blurred = await service.capture(CaptureRequest(ExposureSpec(FrameType.LIGHT, 1.0)))
    finally:
        await focuser.move_to(10000)
    by_id = {f.id: f for f in rows(service)}
    hfr_sharp, hfr_blurred = by_id[sharp[0].id].hfr_px, by_id[blurred[0].id].hfr_px
    assert hfr_sharp is not None
    assert hfr_blurred is not None
    # 400 steps off focus multiply the seeing by 5 (the simulator's cap): 1" -> 5" FWHM takes
    # the stars from under one 3.44" pixel to about 1.5 px, so HFR must grow well beyond 1.6x
    # (measured ~2.2x); focus noise between frames is a few percent.
    assert hfr_blurred > 1.6 * hfr_sharp


async def test_hooks_run_between_frames_and_a_cancelled_series_keeps_its_frames(
    service: CaptureService, equipment: Equipment
) -> None:
    await point_at(equipment, M31)
    calls: list[tuple[str, int]] = []

    async def between(k: int) -> None:
        calls.append(("between", k))

    async def on_saved(frame: SavedFrame) -> None:
        calls.append(("saved", frame.id))

    saved = await service.capture(
        CaptureRequest(ExposureSpec(FrameType.LIGHT, 0.5), count=3),
        between=between,
        on_saved=on_saved,
    )
    assert [c for c in calls if c[0] == "between"] == [("between", 1), ("between", 2)]
    assert [c[1] for c in calls if c[0] == "saved"] == [f.id for f in saved]
    assert all(f.star_count and f.hfr_px for f in saved)

    async def stop_after_two(k: int) -> None:
        if k == 2:
            raise asyncio.CancelledError

    before = len(rows(service))
    with pytest.raises(asyncio.CancelledError):
        await service.capture(
            CaptureRequest(ExposureSpec(FrameType.DARK, 0.5), count=5), between=stop_after_two
        )
    assert len(rows(service)) - before == 2  # both frames read out before the stop are stored


async def test_a_series_stopped_as_its_next_frame_starts_leaves_the_camera_idle(
    service: CaptureService, equipment: Equipment
) -> None:
    """A stop that lands while the next exposure is starting (the moment the last frame is
    handed to storage) aborts that exposure before the capture ends: nothing of it keeps
    running, the camera is idle and takes the next capture at once."""
    assert equipment.camera is not None
    await point_at(equipment, M31)

    async def stop_as_the_second_frame_starts(k: int) -> None:
        if k == 1:
            # Delivered at the series' next wait: the one on the new exposure's start.
            current = asyncio.current_task()
            assert current is not None
            current.cancel()

    with pytest.raises(asyncio.CancelledError):
        await service.capture(
            CaptureRequest(ExposureSpec(FrameType.DARK, 2.0), count=3),
            between=stop_as_the_second_frame_starts,
        )
    exposing = [
        task
        for task in asyncio.all_tasks()
        if not task.done() and "expose" in task.get_coro().__qualname__  # type: ignore[union-attr]
    ]
    assert exposing == []
    assert (await equipment.camera.status()).state is CameraState.IDLE
    saved = await service.capture(CaptureRequest(ExposureSpec(FrameType.DARK, 0.1), count=1))
    assert len(saved) == 1


@pytest.mark.parametrize(
    ("name", "object_card", "folder"),
    [
        ("Ω Cen", "Omega Cen", "Omega Cen"),
        ("M31 – core", "M31 - core", "M31 - core"),
        ("NGC 7000 «North America»", 'NGC 7000 "North America"', "NGC 7000 _North America_"),
    ],
)
async def test_a_non_ascii_target_name_is_kept_whole_in_the_row_and_the_header(
    service: CaptureService, equipment: Equipment, name: str, object_card: str, folder: str
) -> None:
    await point_at(equipment, M31)
    (frame,) = await service.capture(
        CaptureRequest(ExposureSpec(FrameType.LIGHT, 0.5), target=TargetInfo(name))
    )
    assert frame.path.startswith(f"{folder}/")
    _, header = read_fits(service._store.absolute(frame.path))
    assert header["OBJECT"] == object_card
    assert header_texts(header)["OBJECT"] == name
    with Session(service._engine) as db:
        row = db.get(Frame, frame.id)
        assert row is not None
        assert db.scalar(select(Target.name).where(Target.id == row.target_id)) == name


@pytest.mark.parametrize(
    ("request_", "field", "shown"),
    [
        (
            CaptureRequest(ExposureSpec(FrameType.LIGHT, 20.0), target=TargetInfo("M31\nM32")),
            "target.name",
            "U+000A",
        ),
        (CaptureRequest(ExposureSpec(FrameType.LIGHT, 20.0, "L\t")), "filter_name", "U+0009"),
    ],
)
async def test_a_name_no_header_can_hold_is_refused_before_the_shutter_opens(
    service: CaptureService,
    equipment: Equipment,
    request_: CaptureRequest,
    field: str,
    shown: str,
) -> None:
    assert equipment.camera is not None
    started = time.monotonic()
    with pytest.raises(Refused) as refused:
        await service.capture(request_)
    # The exposure asked for is 20 s: an answer within 5 s (a busy machine) took no exposure.
    assert time.monotonic() - started < 5.0
    assert refused.value.field == field
    assert shown in str(refused.value)
    assert (await equipment.camera.status()).state is CameraState.IDLE
    assert rows(service) == []


async def test_a_re_registered_frame_gets_back_the_row_the_capture_recorded(
    service: CaptureService, equipment: Equipment
) -> None:
    """A crash between the file's rename and the row's commit: the header alone gives the row
    back, quality figures (which the acceptance rules compare) and the real name included."""
    await point_at(equipment, M31)
    target = TargetInfo("Ω Cen", ra_deg=M31.ra_deg, dec_deg=M31.dec_deg)
    (saved,) = await service.capture(
        CaptureRequest(ExposureSpec(FrameType.LIGHT, 1.0, "L"), target=target)
    )
    columns = [c.key for c in Frame.__table__.columns if c.key not in ("id", "created_at")]
    (original,) = rows(service)
    before = {key: getattr(original, key) for key in columns}
    for figure in ("background_adu", "noise_adu", "saturated_fraction", "readout_mode"):
        assert before[figure] is not None, figure
    with Session(service._engine) as db, db.begin():
        db.execute(delete(Frame))

    result = register_unrecorded_files(service._engine, service._store, "simulators", UTC)

    assert [str(f.path) for f in result.unregistered] == [saved.path]
    (recovered,) = rows(service)
    after = {key: getattr(recovered, key) for key in columns}
    floats = {key for key, value in before.items() if isinstance(value, float)}
    assert {k: v for k, v in after.items() if k not in floats} == {
        k: v for k, v in before.items() if k not in floats
    }
    # astropy writes a float card with Python's repr, or 16 significant digits when that repr
    # is longer than 20 characters: at most a rounding in the 16th digit.
    assert {k: after[k] for k in floats} == pytest.approx({k: before[k] for k in floats}, rel=1e-15)
