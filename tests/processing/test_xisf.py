"""XISF files: exact round trips, the byte layout of the specification, files other writers
make (hand-built here from the specification), and refusals with a clear message."""

from __future__ import annotations

import hashlib
import re
import struct
from datetime import UTC, datetime

import numpy as np
import pytest

from processing.io import FitsCard, decode_fits, encode_fits
from processing.xisf import BLOCK_ALIGNMENT, decode_xisf, decode_xisf_properties, encode_xisf

CARDS: list[FitsCard] = [
    ("IMAGETYP", "MASTER LIGHT", "integrated lights"),
    ("OBJECT", "M 42 'Orion'", "target, with quotes"),
    ("EXPTIME", 120.0, "[s] exposure of one light"),
    ("CCD-TEMP", -10.25, "[C] sensor temperature"),
    ("NCOMBINE", 8, "lights integrated"),
    ("SIMULATD", True, "frames from the simulator"),
    ("SET-TEMP", None, "no cooler: left out"),
    ("PEDESTAL", 1.5e-12, "a float with an exponent"),
]
HISTORY = ["calibrated: bias, dark, flat", "sha256 0123abcd & <more>", "step three"]
CREATED = datetime(2025, 3, 1, 22, 30, tzinfo=UTC)


def expected_keywords() -> dict[str, object]:
    return {
        "IMAGETYP": "MASTER LIGHT",
        "OBJECT": "M 42 'Orion'",
        "EXPTIME": 120.0,
        "CCD-TEMP": -10.25,
        "NCOMBINE": 8,
        "SIMULATD": True,
        "PEDESTAL": 1.5e-12,
        "HISTORY": HISTORY,
    }


@pytest.mark.parametrize("shape", [(48, 64), (3, 48, 64)], ids=["mono", "rgb"])
def test_float32_pixels_and_keywords_round_trip_exactly(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    image = rng.normal(0.05, 0.02, size=shape).astype(np.float32)  # negatives too: kept as is
    before = image.copy()
    decoded, keywords = decode_xisf(encode_xisf(image, CARDS, HISTORY))
    assert decoded.dtype == np.float32
    assert decoded.shape == shape
    np.testing.assert_array_equal(decoded, image)
    assert keywords == expected_keywords()
    np.testing.assert_array_equal(image, before)
    decoded[...] = 0  # the caller owns the decoded array
    np.testing.assert_array_equal(image, before)


def test_uint16_round_trips_exactly_and_big_endian_input_is_accepted() -> None:
    image = np.random.default_rng(4).integers(0, 65536, size=(3, 20, 30)).astype(">u2")
    decoded, _ = decode_xisf(encode_xisf(image, [], []))
    assert decoded.dtype == np.dtype("=u2")
    np.testing.assert_array_equal(decoded, image)


def test_xisf_pixels_and_keywords_equal_those_of_fits() -> None:
    image = np.random.default_rng(5).random((40, 56), dtype=np.float32)
    fits_pixels, fits_keywords = decode_fits(encode_fits(image, CARDS, HISTORY))
    xisf_pixels, xisf_keywords = decode_xisf(encode_xisf(image, CARDS, HISTORY))
    np.testing.assert_array_equal(xisf_pixels, fits_pixels)
    assert xisf_keywords == fits_keywords


def test_the_file_has_the_layout_of_the_specification() -> None:
    image = np.random.default_rng(6).random((3, 10, 12), dtype=np.float32)
    buffer = encode_xisf(image, CARDS, HISTORY, created=CREATED)
    signature, length, reserved = struct.unpack_from("<8sII", buffer)
    assert (signature, reserved) == (b"XISF0100", 0)
    header = buffer[16 : 16 + length].decode("utf-8")
    assert header.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert 'geometry="12:10:3"' in header
    assert 'sampleFormat="Float32"' in header
    assert 'colorSpace="RGB"' in header
    assert header.count('<FITSKeyword name="HISTORY" value=""') == len(HISTORY)
    found = re.search(r'location="attachment:(\d+):(\d+)"', header)
    assert found is not None
    position, size = int(found[1]), int(found[2])
    assert position % BLOCK_ALIGNMENT == 0
    assert position >= 16 + length
    # Planar: channel after channel, each row after row, little-endian float32.
    assert buffer[position : position + size] == image.astype("<f4").tobytes()
    assert len(buffer) == position + size
    assert buffer == encode_xisf(image, CARDS, HISTORY, created=CREATED)  # reproducible


def test_properties_are_kept() -> None:
    properties: dict[str, str | int | float] = {
        "Observation:Object:Name": "M 42 & the Running Man",
        "Instrument:Camera:Gain": 100,
        "Instrument:Sensor:TargetTemperature": -10.25,
        "Observation:Center:RA": 5_000_000_000,
    }
    buffer = encode_xisf(np.zeros((4, 4), np.float32), [], [], properties, created=CREATED)
    assert decode_xisf_properties(buffer) == {
        **properties,
        "XISF:CreationTime": "2025-03-01T22:30:00.000+00:00",
        "XISF:CreatorApplication": "Nightowl",
    }


def hand_built(
    attributes: str, block: bytes, keywords: str = "", location: str | None = None
) -> bytes:
    """A monolithic XISF file as another writer may make it: the image block right after
    the header (no alignment), the header length counting the XML only."""
    position = 0
    while True:
        where = location or f"attachment:{position}:{len(block)}"
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<xisf version="1.0" xmlns="http://www.pixinsight.com/xisf">'
            f'<Image {attributes} location="{where}">{keywords}'
            "</Image></xisf>"
        ).encode()
        if position == 16 + len(xml):
            return struct.pack("<8sII", b"XISF0100", len(xml), 0) + xml + block
        position = 16 + len(xml)


@pytest.mark.parametrize(
    ("sample_format", "dtype"),
    [("UInt8", "u1"), ("UInt16", "u2"), ("UInt32", "u4"), ("Float32", "f4"), ("Float64", "f8")],
)
@pytest.mark.parametrize("byte_order", ["little", "big"])
def test_normal_and_planar_storage_of_every_sample_format_are_read(
    sample_format: str, dtype: str, byte_order: str
) -> None:
    rng = np.random.default_rng(7)
    planes = (rng.random((3, 5, 7)) * 200).astype(dtype)
    stored = planes.astype(("<" if byte_order == "little" else ">") + dtype)
    attributes = (
        f'geometry="7:5:3" sampleFormat="{sample_format}" colorSpace="RGB" '
        f'byteOrder="{byte_order}"' + (' bounds="0:200"' if dtype[0] == "f" else "")
    )
    planar = hand_built(attributes, stored.tobytes())
    normal_block = np.moveaxis(stored, 0, -1).tobytes()  # (y, x, c): samples interleaved
    digest = hashlib.sha1(normal_block).hexdigest()
    normal = hand_built(
        f'{attributes} pixelStorage="Normal" checksum="sha1:{digest}"', normal_block
    )
    for buffer in (planar, normal):
        decoded, keywords = decode_xisf(buffer)
        assert decoded.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(decoded, planes)
        assert keywords == {}


def test_keywords_as_pixinsight_writes_them_are_typed() -> None:
    keywords = (
        '<FITSKeyword name="FILTER" value="\'Ha      \'" comment="padded as in FITS"/>'
        '<FITSKeyword name="XPIXSZ" value="3.76" comment=""/>'
        '<FITSKeyword name="FOCALLEN" value="5.3D+02" comment="D exponent"/>'
        '<FITSKeyword name="BITPIX" value="-32" comment="structural: left out"/>'
        '<FITSKeyword name="COMMENT" value="" comment="a comment line"/>'
        '<FITSKeyword name="HISTORY" value="" comment="first"/>'
        '<FITSKeyword name="HISTORY" value="" comment="second"/>'
    )
    buffer = hand_built('geometry="2:1:1" sampleFormat="UInt8"', b"\x01\x02", keywords)
    pixels, values = decode_xisf(buffer)
    np.testing.assert_array_equal(pixels, [[1, 2]])
    assert values == {
        "FILTER": "Ha",
        "XPIXSZ": 3.76,
        "FOCALLEN": 530.0,
        "COMMENT": ["a comment line"],
        "HISTORY": ["first", "second"],
    }


def test_a_truncated_file_is_refused() -> None:
    buffer = encode_xisf(np.ones((16, 16), np.float32), CARDS, HISTORY)
    with pytest.raises(ValueError, match="preamble"):
        decode_xisf(buffer[:10])
    with pytest.raises(ValueError, match=r"truncated XISF file: a \d+-byte header"):
        decode_xisf(buffer[:200])
    with pytest.raises(ValueError, match="truncated XISF file: the image block ends"):
        decode_xisf(buffer[:-1])


def test_a_compressed_file_is_refused() -> None:
    block = b"\x78\x9c" + bytes(20)  # not decoded: the attribute alone refuses it
    buffer = hand_built('geometry="8:8:1" sampleFormat="Float32" compression="zlib:256"', block)
    with pytest.raises(ValueError, match=r"compressed \(zlib\).*without compression"):
        decode_xisf(buffer)


@pytest.mark.parametrize(
    ("attributes", "block", "match"),
    [
        ('geometry="2:2:1" sampleFormat="Complex32"', bytes(32), "sample format 'Complex32'"),
        ('geometry="2:2:3" sampleFormat="UInt8" colorSpace="CIELab"', bytes(12), "CIELab"),
        ('geometry="2:2:2:1" sampleFormat="UInt8"', bytes(8), "3-D"),
        ('geometry="2:2:1" sampleFormat="UInt16"', bytes(6), "needs 8"),
        ('geometry="2:2:1" sampleFormat="UInt8" checksum="sha1:00"', bytes(4), "checksum"),
    ],
)
def test_what_cannot_be_read_is_refused_with_the_reason(
    attributes: str, block: bytes, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        decode_xisf(hand_built(attributes, block))


def test_other_files_are_refused() -> None:
    fits_file = encode_fits(np.zeros((4, 4), np.uint16), [])
    with pytest.raises(ValueError, match="not a monolithic XISF"):
        decode_xisf(fits_file)
    inline = hand_built('geometry="1:1:1" sampleFormat="UInt8"', b"", location="inline:base64")
    with pytest.raises(ValueError, match="only attached blocks"):
        decode_xisf(inline)


@pytest.mark.parametrize(
    ("image", "cards", "properties", "match"),
    [
        (np.zeros((4, 4)), [], {}, "float32 or uint16, not float64"),
        (np.zeros((2, 4, 4), np.float32), [], {}, r"\(c, y, x\) with c 1 or 3"),
        (np.zeros((0, 4), np.float32), [], {}, "needs pixels"),
        (np.zeros((4, 4), np.float32), [("exptime", 1.0, "")], {}, "invalid FITS keyword"),
        (np.zeros((4, 4), np.float32), [("HISTORY", "x", "")], {}, "reserved"),
        (np.zeros((4, 4), np.float32), [("GAIN", 1, ""), ("GAIN", 2, "")], {}, "twice"),
        (np.zeros((4, 4), np.float32), [("OBJECT", "Ångström", "")], {}, "OBJECT"),
        (np.zeros((4, 4), np.float32), [("EXPTIME", float("nan"), "")], {}, "finite"),
        (np.zeros((4, 4), np.float32), [], {"Bad Id": "x"}, "property id"),
        (np.zeros((4, 4), np.float32), [], {"A:Flag": True}, "Boolean"),
    ],
)
def test_the_encoder_refuses_what_xisf_or_fits_cannot_hold(
    image: np.ndarray, cards: list[FitsCard], properties: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        encode_xisf(image, cards, [], properties)  # type: ignore[arg-type]
