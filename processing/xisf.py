"""XISF 1.0 monolithic files (PixInsight's format), written and read from the public
specification: the 8-byte signature ``XISF0100``, the XML header's length as a little-endian
uint32, 4 reserved bytes, the UTF-8 XML header, then the image as an attached data block.

What is written: one image, Float32 (``bounds="0:1"``, PixInsight's convention for floating
point images) or UInt16, planar (channel after channel, rows of x), little-endian, uncompressed,
its block aligned to 4096 bytes; the FITS keywords as ``<FITSKeyword>`` elements (HISTORY
lines as repeated keywords whose comment holds the text, as PixInsight writes them); and
properties (``XISF:CreatorApplication`` and ``XISF:CreationTime`` always).

What is read: the first image of a monolithic file, attached and uncompressed, in normal or
planar pixel storage, either byte order, UInt8/UInt16/UInt32/Float32/Float64, Gray or RGB.
Anything else raises ValueError saying what the file holds, never a misread image.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from processing.io import FitsCard

XisfData = (
    npt.NDArray[np.uint8]
    | npt.NDArray[np.uint16]
    | npt.NDArray[np.uint32]
    | npt.NDArray[np.float32]
    | npt.NDArray[np.float64]
)
"""A decoded image: ``(y, x)`` for one channel, ``(c, y, x)`` for several, native byte order."""

PropertyValue = str | int | float

SIGNATURE = b"XISF0100"
_PREAMBLE = struct.Struct("<8sII")  # signature, XML header length, reserved
_NAMESPACE = "http://www.pixinsight.com/xisf"
BLOCK_ALIGNMENT = 4096
"""Attached blocks start at multiples of this many bytes (PixInsight's default alignment)."""

_WRITE_FORMATS: dict[np.dtype[np.generic], str] = {
    np.dtype(np.float32): "Float32",
    np.dtype(np.uint16): "UInt16",
}
_READ_FORMATS: dict[str, np.dtype[np.generic]] = {
    "UInt8": np.dtype(np.uint8),
    "UInt16": np.dtype(np.uint16),
    "UInt32": np.dtype(np.uint32),
    "Float32": np.dtype(np.float32),
    "Float64": np.dtype(np.float64),
}
_CHECKSUMS = {
    "sha1": "sha1",
    "sha-1": "sha1",
    "sha256": "sha256",
    "sha-256": "sha256",
    "sha512": "sha512",
    "sha-512": "sha512",
    "sha3-256": "sha3_256",
    "sha3-512": "sha3_512",
}

# The same rules as FITS headers: the keywords are exported to FITS by PixInsight.
_KEYWORD = re.compile(r"[A-Z0-9_-]{1,8}")
_STRUCTURAL = re.compile(r"SIMPLE|BITPIX|NAXIS\d*|EXTEND|BZERO|BSCALE|END")
_COMMENTARY = ("HISTORY", "COMMENT")
_PRINTABLE = re.compile(r"[ -~]*")
_PROPERTY_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(:[A-Za-z_][A-Za-z0-9_]*)*")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([EeDd][+-]?\d+)?")
_INT32 = range(-(2**31), 2**31)


def encode_xisf(
    image: npt.NDArray[np.generic],
    cards: Sequence[FitsCard],
    history: Sequence[str] = (),
    properties: Mapping[str, PropertyValue] | None = None,
    *,
    created: datetime | None = None,
) -> bytes:
    """A monolithic XISF file holding `image` (float32 or uint16, ``(y, x)`` grey or
    ``(c, y, x)`` with c = 3 for RGB), `cards` as FITS keywords (a None value is left out),
    `history` as HISTORY keywords and `properties` (``{id: str | int | float}``; ids in the
    ``XISF:`` namespace go to the file's metadata, the others to the image).

    `created` (now when None; written in UTC, a naive time taken as local) is the
    ``XISF:CreationTime`` property: pass it for byte-identical output. Raises ValueError for
    another dtype or shape, a keyword that is not 1-8 characters of ``A-Z 0-9 _ -``,
    structural, HISTORY/COMMENT or repeated, a value or comment FITS cannot hold (non-ASCII
    text, NaN), or a malformed property.
    """
    dtype = image.dtype.newbyteorder("=")
    if dtype not in _WRITE_FORMATS:
        raise ValueError(f"XISF images are written as float32 or uint16, not {image.dtype}")
    if image.ndim == 2:
        height, width = image.shape
        channels = 1
    elif image.ndim == 3 and image.shape[0] in (1, 3):
        channels, height, width = image.shape
    else:
        raise ValueError(f"XISF images here are (y, x) or (c, y, x) with c 1 or 3: {image.shape}")
    if height == 0 or width == 0:
        raise ValueError(f"an XISF image needs pixels, got shape {image.shape}")
    # Little-endian, C order is planar; bytes.join copies it once, straight from the array.
    pixels = np.ascontiguousarray(image, dtype=dtype.newbyteorder("<")).data

    elements = [_keyword_xml(keyword, value, comment) for keyword, value, comment in _cards(cards)]
    for line in history:
        _check_text(line, "HISTORY line")
        elements.append(_keyword_xml("HISTORY", None, line))
    metadata: dict[str, PropertyValue] = {
        "XISF:CreationTime": (created or datetime.now(UTC))
        .astimezone(UTC)
        .isoformat(timespec="milliseconds"),
        "XISF:CreatorApplication": "Nightowl",
    }
    for identifier, value in (properties or {}).items():
        if identifier.startswith("XISF:"):
            metadata[identifier] = value
        else:
            elements.append(_property_xml(identifier, value))
    metadata_xml = "".join(
        _property_xml(identifier, value, time_point=identifier == "XISF:CreationTime")
        for identifier, value in metadata.items()
    )

    attributes = (
        f'geometry="{width}:{height}:{channels}" sampleFormat="{_WRITE_FORMATS[dtype]}"'
        + (' bounds="0:1"' if dtype.kind == "f" else "")
        + f' colorSpace="{"Gray" if channels == 1 else "RGB"}"'
    )
    position = 0
    while True:  # the header's length depends on the digits of the block position
        header = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<xisf version="1.0" xmlns="{_NAMESPACE}">'
            f'<Image {attributes} location="attachment:{position}:{pixels.nbytes}">'
            + "".join(elements)
            + "</Image>"
            f"<Metadata>{metadata_xml}</Metadata>"
            "</xisf>"
        ).encode()
        aligned = -(-(_PREAMBLE.size + len(header)) // BLOCK_ALIGNMENT) * BLOCK_ALIGNMENT
        if aligned == position:
            break
        position = aligned
    preamble = _PREAMBLE.pack(SIGNATURE, len(header), 0)
    padding = bytes(position - len(preamble) - len(header))
    return b"".join((preamble, header, padding, pixels))


def decode_xisf(buffer: bytes) -> tuple[XisfData, dict[str, object]]:
    """The first image of a monolithic XISF file, ``(y, x)`` for one channel or ``(c, y, x)``
    for several, in its stored sample type (uint8/16/32, float32/64; float values are kept as
    stored, whatever the ``bounds``), native byte order, and its FITS keywords as
    ``{keyword: value}``.

    Values are typed as `processing.io.decode_fits` types them (str, int, float, bool; None for
    an empty value); HISTORY and COMMENT map to lists of lines; structural keywords (BITPIX,
    NAXISn, ...) are left out. Raises ValueError when the bytes are not XISF, are truncated,
    fail their checksum, or hold a compressed, non-attached, 3-D, CIELab or other-typed image.
    """
    parsed = _parse(buffer)
    return _pixels(buffer, parsed), _keywords(parsed.image)


def decode_xisf_properties(buffer: bytes) -> dict[str, object]:
    """The XISF properties of the file's metadata and of its first image, ``{id: value}``:
    strings and time points as str, integers as int, floats as float, Booleans as bool.
    Vector, matrix and complex properties are left out. Raises ValueError as `decode_xisf`."""
    parsed = _parse(buffer)
    values: dict[str, object] = {}
    for element in (parsed.metadata, parsed.image):
        if element is None:
            continue
        for child in element:
            if _local(child.tag) == "Property":
                value = _property_value(child)
                if value is not None:
                    values[child.get("id", "")] = value
    return values


@dataclass(frozen=True)
class _Header:
    image: ElementTree.Element
    metadata: ElementTree.Element | None


def _parse(buffer: bytes) -> _Header:
    if len(buffer) < _PREAMBLE.size:
        raise ValueError(f"not an XISF file: {len(buffer)} bytes, shorter than its preamble")
    signature, length, _ = _PREAMBLE.unpack_from(buffer)
    if signature != SIGNATURE:
        raise ValueError(f"not a monolithic XISF 1.0 file: it starts with {signature!r}")
    end = _PREAMBLE.size + length
    if end > len(buffer):
        raise ValueError(f"truncated XISF file: a {length}-byte header in {len(buffer)} bytes")
    text = bytes(buffer[_PREAMBLE.size : end]).rstrip(b"\0")
    if b"<!DOCTYPE" in text or b"<!ENTITY" in text:
        raise ValueError("XISF header with a DOCTYPE or entities: refused")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as e:
        raise ValueError(f"unreadable XISF header: {e}") from e
    if _local(root.tag) != "xisf":
        raise ValueError(f"the XISF header's root is <{_local(root.tag)}>, not <xisf>")
    if root.get("version") != "1.0":
        raise ValueError(f"XISF version {root.get('version')!r} is not 1.0")
    image = next((e for e in root if _local(e.tag) == "Image"), None)
    if image is None:
        raise ValueError("the XISF file holds no image")
    metadata = next((e for e in root if _local(e.tag) == "Metadata"), None)
    return _Header(image, metadata)


def _pixels(buffer: bytes, header: _Header) -> XisfData:
    image = header.image
    if "compression" in image.attrib:
        codec = image.get("compression", "").split(":")[0]
        raise ValueError(
            f"the XISF image is compressed ({codec}); only uncompressed images are read: "
            "save it without compression"
        )
    try:
        width, height, channels = (int(n) for n in image.get("geometry", "").split(":"))
    except ValueError as e:
        raise ValueError(
            f"XISF geometry {image.get('geometry')!r} is not width:height:channels "
            "(3-D images are not read)"
        ) from e
    if min(width, height, channels) < 1:
        raise ValueError(f"XISF geometry {image.get('geometry')!r} holds no pixels")
    sample_format = image.get("sampleFormat", "")
    if sample_format not in _READ_FORMATS:
        raise ValueError(
            f"XISF sample format {sample_format!r} is not read; one of {', '.join(_READ_FORMATS)}"
        )
    color_space = image.get("colorSpace", "Gray")
    if color_space not in ("Gray", "RGB"):
        raise ValueError(f"XISF colour space {color_space!r} is not read, only Gray and RGB")
    byte_order = image.get("byteOrder", "little")
    storage = image.get("pixelStorage", "Planar")
    if byte_order not in ("little", "big") or storage not in ("Planar", "Normal"):
        raise ValueError(
            f"XISF byte order {image.get('byteOrder')!r} or pixel storage {storage!r} unknown"
        )
    location = image.get("location", "").split(":")
    if len(location) != 3 or location[0] != "attachment":
        raise ValueError(f"XISF image at {image.get('location')!r}: only attached blocks are read")
    try:
        position, size = int(location[1]), int(location[2])
    except ValueError as e:
        raise ValueError(f"XISF location {image.get('location')!r} is malformed") from e
    dtype = _READ_FORMATS[sample_format].newbyteorder("<" if byte_order == "little" else ">")
    expected = width * height * channels * dtype.itemsize
    if size != expected:
        raise ValueError(
            f"XISF block of {size} bytes for a {width}:{height}:{channels} {sample_format} "
            f"image, which needs {expected}"
        )
    if position < 0 or position + size > len(buffer):
        raise ValueError(
            f"truncated XISF file: the image block ends at byte {position + size}, "
            f"the file has {len(buffer)}"
        )
    block = memoryview(buffer)[position : position + size]
    _verify(block, image.get("checksum"))
    flat = np.frombuffer(block, dtype=dtype)
    if storage == "Planar":
        planes = flat.reshape(channels, height, width)
    else:
        planes = np.moveaxis(flat.reshape(height, width, channels), -1, 0)
    # A copy in native order that owns its memory: the caller may write to it.
    result: XisfData = np.array(planes, dtype=dtype.newbyteorder("="), order="C")
    return result[0] if channels == 1 else result


def _verify(block: memoryview, checksum: str | None) -> None:
    """Check the block against a ``checksum="algorithm:hex"`` attribute; an unknown
    algorithm is not checked."""
    if checksum is None:
        return
    algorithm, _, digest = checksum.partition(":")
    name = _CHECKSUMS.get(algorithm.lower())
    if name is not None and hashlib.new(name, block).hexdigest() != digest.lower():
        raise ValueError(f"the XISF image block fails its {algorithm} checksum: corrupt file")


def _keywords(image: ElementTree.Element) -> dict[str, object]:
    values: dict[str, object] = {}
    commentary: dict[str, list[str]] = {}
    for element in image:
        if _local(element.tag) != "FITSKeyword":
            continue
        name = element.get("name", "").strip().upper()
        value = element.get("value", "").strip()
        if name in _COMMENTARY:
            text = element.get("comment", "") or _keyword_value(value) or ""
            commentary.setdefault(name, []).append(str(text))
        elif name and not _STRUCTURAL.fullmatch(name):
            values[name] = _keyword_value(value)
    return values | commentary


def _keyword_value(text: str) -> str | int | float | bool | None:
    """A FITS value as the text of a card holds it: quoted string, T/F, integer, float."""
    if not text:
        return None
    if text.startswith("'"):
        inner = text[1:-1] if len(text) > 1 and text.endswith("'") else text[1:]
        return inner.replace("''", "'").rstrip()
    if text in ("T", "F"):
        return text == "T"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text.replace("D", "E").replace("d", "e"))
    return text


def _property_value(element: ElementTree.Element) -> object:
    kind = element.get("type", "")
    text = element.get("value")
    if text is None:
        text = element.text or ""
    try:
        if kind in ("String", "TimePoint"):
            return text
        if kind == "Boolean":
            return text.strip().lower() in ("1", "true")
        if re.fullmatch(r"U?Int(8|16|32|64)", kind):
            return int(text)
        if kind in ("Float32", "Float64"):
            return float(text)
    except ValueError as e:
        raise ValueError(f"XISF property {element.get('id')!r}: {kind} {text!r}") from e
    return None


def _cards(
    cards: Sequence[FitsCard],
) -> list[tuple[str, str | int | float | bool, str]]:
    seen: set[str] = set()
    kept: list[tuple[str, str | int | float | bool, str]] = []
    for keyword, value, comment in cards:
        if not _KEYWORD.fullmatch(keyword):
            raise ValueError(f"invalid FITS keyword {keyword!r}: 1-8 characters of A-Z 0-9 _ -")
        if _STRUCTURAL.fullmatch(keyword) or keyword in _COMMENTARY:
            raise ValueError(f"FITS keyword {keyword!r} is reserved: it is written from the data")
        if keyword in seen:
            raise ValueError(f"FITS keyword {keyword!r} appears twice")
        seen.add(keyword)
        if value is not None:
            kept.append((keyword, value, comment))
    return kept


def _keyword_xml(keyword: str, value: str | int | float | bool | None, comment: str) -> str:
    _check_text(comment, f"FITS card {keyword} comment")
    return (
        f'<FITSKeyword name="{keyword}" value="{_attribute(_card_text(keyword, value))}" '
        f'comment="{_attribute(comment)}"/>'
    )


def _card_text(keyword: str, value: str | int | float | bool | None) -> str:
    """The value as a FITS card writes it (PixInsight keeps this text): strings quoted with
    doubled inner quotes, T/F, integers, floats with an upper-case exponent."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, str):
        _check_text(value, f"FITS card {keyword}")
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"FITS card {keyword}: a value must be finite, got {value}")
        return repr(value).upper()
    raise ValueError(f"FITS card {keyword}: unsupported value type {type(value).__name__}")


def _property_xml(identifier: str, value: PropertyValue, *, time_point: bool = False) -> str:
    if not _PROPERTY_ID.fullmatch(identifier):
        raise ValueError(f"invalid XISF property id {identifier!r}: identifiers joined by ':'")
    if isinstance(value, str):
        kind = "TimePoint" if time_point else "String"
        if kind == "TimePoint":
            return f'<Property id="{identifier}" type="{kind}" value="{_attribute(value)}"/>'
        return f'<Property id="{identifier}" type="String">{escape(value)}</Property>'
    if isinstance(value, bool):
        raise ValueError(f"XISF property {identifier}: Boolean values are not written")
    if isinstance(value, int):
        kind = "Int32" if value in _INT32 else "Int64"
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"XISF property {identifier}: {value} does not fit 64 bits")
        return f'<Property id="{identifier}" type="{kind}" value="{value}"/>'
    if isinstance(value, float) and math.isfinite(value):
        return f'<Property id="{identifier}" type="Float64" value="{value!r}"/>'
    raise ValueError(f"XISF property {identifier}: {value!r} is not str, int or finite float")


def _check_text(text: str, what: str) -> None:
    if not _PRINTABLE.fullmatch(text):
        raise ValueError(f"{what}: FITS text is printable ASCII, got {text!r}")


def _attribute(text: str) -> str:
    return escape(text, {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def _local(tag: str) -> str:
    """An element's name without its ``{namespace}``."""
    return tag.rpartition("}")[2]
