"""FITS frames: bit-exact round trips, the unsigned 16-bit convention, cards and errors."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from processing.io import (
    TEMP_SUFFIX,
    FitsCard,
    FitsRows,
    atomic_path,
    dec_deg_to_sexagesimal,
    decode_fits,
    encode_fits,
    ra_hours_to_sexagesimal,
    read_fits,
    read_fits_header,
    read_xisf,
    write_atomic,
    write_xisf,
)

CARDS: list[FitsCard] = [
    ("IMAGETYP", "LIGHT", "type of frame"),
    ("EXPTIME", 120.0, "[s] exposure duration"),
    ("CCD-TEMP", -10.25, "[C] sensor temperature"),
    ("GAIN", 100, "camera gain"),
    ("XBINNING", 1, ""),
    ("OBJECT", "M 31", "target"),
    ("SET-TEMP", None, "no cooler: left out"),
    ("SIMULATD", True, "frame from the simulator"),
    ("OBJCTRA", "00 42 44.33", "[H M S] RA of imaged object"),
]


@pytest.fixture
def frame() -> np.ndarray:
    """A (y, x) = (31, 47) frame: not square, so swapped axes would show; holds 0 and 65535."""
    data = np.random.default_rng(7).integers(0, 65536, size=(31, 47), dtype=np.uint16)
    data[0, 0], data[-1, -1], data[5, 9] = 0, 65535, 32768
    return data


def test_uint16_round_trip_is_bit_exact(frame: np.ndarray) -> None:
    data, _ = decode_fits(encode_fits(frame, CARDS))
    assert data.dtype == np.uint16
    assert data.dtype.isnative
    np.testing.assert_array_equal(data, frame)


def test_uint16_is_stored_signed_with_bzero_32768(frame: np.ndarray) -> None:
    buffer = encode_fits(frame, CARDS)
    header = fits.getheader(io.BytesIO(buffer))
    assert header["BITPIX"] == 16
    assert header["BZERO"] == 32768
    assert header["BSCALE"] == 1
    assert (header["NAXIS1"], header["NAXIS2"]) == (47, 31)  # FITS lists x first
    with fits.open(io.BytesIO(buffer), do_not_scale_image_data=True) as hdus:
        stored = hdus[0].data
        assert stored.dtype == np.dtype(">i2")
        np.testing.assert_array_equal(stored.astype(np.int32), frame.astype(np.int32) - 32768)


def test_float32_round_trip_is_bit_exact() -> None:
    frame = np.random.default_rng(3).normal(0.1, 0.05, size=(20, 33)).astype(np.float32)
    frame[2, 3] = np.nan  # FITS floats may hold NaN (a blank pixel)
    buffer = encode_fits(frame, CARDS)
    assert fits.getheader(io.BytesIO(buffer))["BITPIX"] == -32
    data, _ = decode_fits(buffer)
    assert data.dtype == np.float32
    assert data.dtype.isnative
    np.testing.assert_array_equal(data, frame)


def test_big_endian_input_is_accepted(frame: np.ndarray) -> None:
    data, _ = decode_fits(encode_fits(frame.astype(">u2"), []))
    np.testing.assert_array_equal(data, frame)


def test_cards_round_trip_with_their_types(frame: np.ndarray) -> None:
    _, cards = decode_fits(encode_fits(frame, CARDS))
    expected = {keyword: value for keyword, value, _ in CARDS if value is not None}
    assert {keyword: cards[keyword] for keyword in expected} == expected
    for keyword, value in expected.items():
        assert type(cards[keyword]) is type(value), keyword
    assert "SET-TEMP" not in cards
    assert not {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "BZERO", "BSCALE"} & cards.keys()


def test_comments_and_card_order_are_written(frame: np.ndarray) -> None:
    header = fits.getheader(io.BytesIO(encode_fits(frame, CARDS)))
    assert header.comments["EXPTIME"] == "[s] exposure duration"
    written = [keyword for keyword, value, _ in CARDS if value is not None]
    assert [k for k in header if k in written] == written


def test_history_lines_are_present_in_order(frame: np.ndarray) -> None:
    history = ["calibrated: master dark d-120s.fits", "registered to L_0001.fits"]
    buffer = encode_fits(frame, CARDS, history)
    assert list(fits.getheader(io.BytesIO(buffer))["HISTORY"]) == history
    _, cards = decode_fits(buffer)
    assert cards["HISTORY"] == history


def test_read_fits_reads_a_file(tmp_path: Path, frame: np.ndarray) -> None:
    path = tmp_path / "light.fits"
    path.write_bytes(encode_fits(frame, CARDS))
    data, cards = read_fits(path)
    np.testing.assert_array_equal(data, frame)
    assert cards["OBJECT"] == "M 31"


def test_encode_does_not_mutate_its_input(frame: np.ndarray) -> None:
    floats = np.random.default_rng(5).random((8, 9), dtype=np.float32)  # native: astropy swaps
    cards = list(CARDS)
    for data in (frame, floats):
        before = data.copy()
        encode_fits(data, cards, ["step"])
        np.testing.assert_array_equal(data, before)
        assert data.dtype == before.dtype
    assert cards == CARDS


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int32, np.float64])
def test_other_dtypes_are_refused_by_name(dtype: type[np.generic]) -> None:
    with pytest.raises(ValueError, match=np.dtype(dtype).name):
        encode_fits(np.zeros((4, 4), dtype=dtype), [])


def test_an_image_is_a_frame_or_colour_planes() -> None:
    with pytest.raises(ValueError, match="shape"):
        encode_fits(np.zeros((2, 3, 4, 4), dtype=np.uint16), [])
    with pytest.raises(ValueError, match="shape"):
        encode_fits(np.zeros(16, dtype=np.float32), [])
    planes = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    with fits.open(io.BytesIO(encode_fits(planes, []))) as hdus:
        assert hdus[0].header["NAXIS3"] == 3
        np.testing.assert_array_equal(hdus[0].data, planes)


@pytest.mark.parametrize(
    "keyword",
    ["FOCUSPOSN", "exptime", "BAD KEY", "", "BITPIX", "BZERO", "NAXIS1", "HISTORY"],
)
def test_bad_keywords_are_refused_by_name(frame: np.ndarray, keyword: str) -> None:
    with pytest.raises(ValueError, match=repr(keyword)):
        encode_fits(frame, [(keyword, 1, "")])


def test_a_repeated_keyword_is_refused(frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match="'GAIN' appears twice"):
        encode_fits(frame, [("GAIN", 100, ""), ("GAIN", 120, "")])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "Ångström"])
def test_values_fits_cannot_hold_are_refused_with_the_keyword(
    frame: np.ndarray, value: float | str
) -> None:
    with pytest.raises(ValueError, match="FOCTEMP"):
        encode_fits(frame, [("FOCTEMP", value, "")])


def test_bytes_that_are_not_fits_are_refused() -> None:
    with pytest.raises(ValueError, match="not a readable FITS file"):
        decode_fits(b"SIMPLE? no" * 300)


def test_a_signed_16_bit_file_is_refused() -> None:
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.zeros((4, 5), dtype=np.int16)).writeto(buffer)
    with pytest.raises(ValueError, match="BITPIX 16"):
        decode_fits(buffer.getvalue())


@pytest.mark.parametrize(
    ("ra_hours", "expected"),
    [
        (0.0, "00 00 00.00"),
        (5.5, "05 30 00.00"),
        (0 + 42 / 60 + 44.33 / 3600, "00 42 44.33"),  # M31
        (18 + 36 / 60 + 56.336 / 3600, "18 36 56.34"),  # Vega, rounded to 0.01 s
        (1 + 59 / 60 + 59.999 / 3600, "02 00 00.00"),  # 59.999 s carries into the hour
        (23 + 59 / 60 + 59.996 / 3600, "00 00 00.00"),  # and 24 h wraps to 0
        (-1.0, "23 00 00.00"),
    ],
)
def test_ra_sexagesimal(ra_hours: float, expected: str) -> None:
    assert ra_hours_to_sexagesimal(ra_hours) == expected


@pytest.mark.parametrize(
    ("dec_deg", "expected"),
    [
        (0.0, "+00 00 00.0"),
        (41 + 16 / 60 + 9 / 3600, "+41 16 09.0"),  # M31
        (-(5 + 23 / 60 + 28 / 3600), "-05 23 28.0"),  # M42
        (-0.5, "-00 30 00.0"),  # the sign survives a zero degrees field
        (-0.01 / 3600, "+00 00 00.0"),  # rounds to zero: no minus sign
        (10 + 59 / 60 + 59.99 / 3600, "+11 00 00.0"),  # 59.99" carries twice
        (-90.0, "-90 00 00.0"),
    ],
)
def test_dec_sexagesimal(dec_deg: float, expected: str) -> None:
    assert dec_deg_to_sexagesimal(dec_deg) == expected


@pytest.mark.parametrize("dec_deg", [90.5, -91.0, float("nan")])
def test_dec_outside_the_sphere_is_refused(dec_deg: float) -> None:
    with pytest.raises(ValueError, match="declination"):
        dec_deg_to_sexagesimal(dec_deg)


def test_non_finite_ra_is_refused() -> None:
    with pytest.raises(ValueError, match="right ascension"):
        ra_hours_to_sexagesimal(float("inf"))


def test_header_only_reads_and_row_blocks_match_the_whole_file(tmp_path: Path) -> None:
    data = (np.arange(40 * 30, dtype=np.uint32) * 53 % 65536).astype(np.uint16).reshape(40, 30)
    path = tmp_path / "frame.fits"
    path.write_bytes(encode_fits(data, [("IMAGETYP", "Dark Frame", "type")]))
    shape, header = read_fits_header(path)
    assert shape == (40, 30)
    assert header["IMAGETYP"] == "Dark Frame"
    rows = FitsRows(path)
    try:
        assert rows.shape == (40, 30)
        np.testing.assert_array_equal(rows[10:20], data[10:20].astype(np.float32))
        np.testing.assert_array_equal(rows[::7], data[::7].astype(np.float32))
    finally:
        rows.close()
    with pytest.raises(ValueError, match="not a readable FITS"):
        read_fits_header(_text_file(tmp_path))


def _text_file(folder: Path) -> Path:
    path = folder / "notes.fits"
    path.write_text("not FITS")
    return path


def test_xisf_keeps_the_pixels_and_the_keywords(tmp_path: Path) -> None:
    planes = np.random.default_rng(0).random((3, 6, 8)).astype(np.float32)
    path = tmp_path / "result.xisf"
    write_xisf(path, planes, [("OBJECT", "M 42", "target"), ("NCOMBINE", 8, "")], ["step one"])
    image, keywords = read_xisf(path)
    np.testing.assert_array_equal(image, planes)
    assert keywords["NCOMBINE"] == 8
    assert keywords["HISTORY"] == ["step one"]
    with pytest.raises(ValueError, match="float32"):
        write_xisf(path, planes.astype(np.float64), [], [])


def test_an_atomic_write_lands_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "light.fits"
    write_atomic(target, b"first")
    write_atomic(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert os.listdir(tmp_path) == ["light.fits"]


def test_a_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "light.fits"
    target.write_bytes(b"old")
    target.chmod(0o640)
    write_atomic(target, b"new")
    assert target.stat().st_mode & 0o777 == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "light.fits"
    target.write_bytes(b"old")

    def disk_error(fd: int) -> None:
        raise OSError(5, "Input/output error")

    # The disk fails to flush the new content: the rename must not happen.
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", disk_error)
        with pytest.raises(OSError, match="Input/output"):
            write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["light.fits"]

    def fail_halfway() -> None:
        with atomic_path(target) as temp:
            temp.write_bytes(b"half of the ne")
            raise RuntimeError("halfway")

    # A writer that fails halfway through its file.
    with pytest.raises(RuntimeError, match="halfway"):
        fail_halfway()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["light.fits"]


def test_atomic_path_hands_a_writer_a_temporary_file_beside_the_target(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"library output")
    target = tmp_path / "masters" / "master_dark.fits"
    target.parent.mkdir()
    with atomic_path(target) as temp:
        # Interrupted writes are recognised by name after a crash (the frame store's scan).
        assert temp.parent == target.parent
        assert temp.name.startswith(".master_dark.fits.")
        assert temp.name.endswith(TEMP_SUFFIX)
        shutil.copyfile(source, temp)
        assert not target.exists()
    assert target.read_bytes() == b"library output"
    assert os.listdir(target.parent) == ["master_dark.fits"]


def test_an_atomic_write_into_a_missing_folder_fails_without_a_trace(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "light.fits", b"data")
    assert os.listdir(tmp_path) == []
