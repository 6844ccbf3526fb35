"""Header cards of a real simulator frame: any name becomes valid FITS and comes back whole."""

from __future__ import annotations

from dataclasses import replace

import pytest

from daemon.fits_headers import CaptureContext, TargetInfo, header_cards, header_texts
from drivers.base import FocuserStatus, RawFrame
from drivers.equipment import Equipment
from processing.io import decode_fits, encode_fits
from sequences.frames import FrameType


@pytest.fixture(scope="module")
async def raw(equipment: Equipment) -> RawFrame:
    assert equipment.camera is not None
    return await equipment.camera.expose(0.0, light=False)


def context(raw: RawFrame, **changes: object) -> CaptureContext:
    values: dict[str, object] = {
        "raw": raw,
        "frame_type": FrameType.LIGHT,
        "target": None,
        "filter_name": None,
        "mount": None,
        "mount_info": None,
        "focuser": None,
        "quality": None,
        "hfr_arcsec": None,
    }
    values.update(changes)
    return CaptureContext(**values)  # type: ignore[arg-type]


def written(ctx: CaptureContext) -> dict[str, object]:
    """The header as a reader finds it in the file."""
    return decode_fits(encode_fits(ctx.raw.data, header_cards(ctx)))[1]


async def test_text_cards_are_ascii_and_keep_their_originals(raw: RawFrame) -> None:
    camera = replace(raw, info=replace(raw.info, name="Caméra Ω"))
    header = written(context(camera, target=TargetInfo("Ω Cen"), filter_name="Hα"))
    assert (header["OBJECT"], header["FILTER"], header["INSTRUME"]) == (
        "Omega Cen",
        "Halpha",
        "Camera Omega",
    )
    assert header["NOWLUTF8"] == "INSTRUME=Cam%C3%A9ra %CE%A9&FILTER=H%CE%B1&OBJECT=%CE%A9 Cen"
    texts = header_texts(header)
    assert (texts["OBJECT"], texts["FILTER"], texts["INSTRUME"]) == ("Ω Cen", "Hα", "Caméra Ω")
    assert texts["IMAGETYP"] == "LIGHT"
    assert "NOWLUTF8" not in texts


async def test_ascii_names_add_no_card(raw: RawFrame) -> None:
    header = written(context(raw, target=TargetInfo("M31"), filter_name="L"))
    assert header["OBJECT"] == "M31"
    assert "NOWLUTF8" not in header
    assert "LONGSTRN" not in header


async def test_a_long_name_continues_on_further_cards(raw: RawFrame) -> None:
    name = "Ω Cen, " * 28 + "«core»"  # 202 characters, 230 in ASCII
    header = written(context(raw, target=TargetInfo(name)))
    assert header["OBJECT"] == "Omega Cen, " * 28 + '"core"'
    assert header["LONGSTRN"] == "OGIP 1.0"
    assert header_texts(header)["OBJECT"] == name


async def test_a_device_reading_nan_costs_its_card_not_the_frame(raw: RawFrame) -> None:
    header = written(context(raw, focuser=FocuserStatus(10_000, False, float("nan"))))
    assert header["FOCPOS"] == 10_000
    assert "FOCTEMP" not in header
