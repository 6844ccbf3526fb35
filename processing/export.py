"""Pictures for people: previews (block-averaged downscaling, auto-stretch, JPEG) and the
finished, stretched picture as 16-bit TIFF, 8/16-bit PNG, JPEG and a downscaled web copy.

Every export takes floats in [0, 1] (values outside are clipped, NaN is black), ``(y, x)``,
``(y, x, 1)`` or ``(y, x, 3)``, and maps x to the integer level ``round(x * (2**bits - 1))``
(round half to even, computed in float64 so the level is exact). The levels are tagged as sRGB
with an embedded ICC profile, so that colour-managed viewers show them as the screen showed
them: Pillow's (littlecms') sRGB profile for colour, and for grey a monochrome profile with the
sRGB tone curve, built here, since an RGB profile in a grey file is invalid (PNG, TIFF and JPEG
readers may ignore or reject it).

The 32-bit float FITS with WCS and provenance is `processing.io.encode_fits`: WCS cards
(CTYPEn, CRVALn, CRPIXn, CDi_j, ...) are ordinary cards there.
"""

from __future__ import annotations

import functools
import io
import math
import struct
import zlib

import cv2
import numpy as np
import numpy.typing as npt
import tifffile
from PIL import Image, ImageCms

from processing.stretch import StfConfig, apply_stf, auto_stf, full_scale

_DEFAULT_STF = StfConfig()
_ROWS_PER_BLOCK = 64  # rows converted at a time: the float64 work block stays in cache
_PROFILE_DATE = struct.pack(">6H", 2025, 1, 1, 0, 0, 0)  # a fixed date: reproducible files
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def downscale(image: npt.NDArray[np.generic], max_size_px: int) -> npt.NDArray[np.float32]:
    """Mean of k x k blocks, k the smallest integer that fits the longer side in `max_size_px`.

    Works on ``(y, x)`` and ``(y, x, c)``; keeps the aspect ratio up to the cropped remainder
    (the last rows and columns that do not fill a block). Averaging, unlike picking every k-th
    pixel, also lowers the noise by k, which suits a preview. Returns float32 in the input's
    units (a copy when k = 1). Raises ValueError for max_size_px < 1, an empty image, other
    shapes, or an image too narrow to hold one block.
    """
    if max_size_px < 1:
        raise ValueError(f"max_size_px must be >= 1, got {max_size_px}")
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"images have axes (y, x) or (y, x, c), got shape {image.shape}")
    height, width = image.shape[:2]
    k = math.ceil(max(height, width) / max_size_px)
    out_height, out_width = height // k, width // k
    if out_height == 0 or out_width == 0:
        raise ValueError(f"a {height} x {width} image is too narrow for {k} x {k} blocks")
    cropped = image[: out_height * k, : out_width * k]
    if k == 1:
        return np.array(cropped, dtype=np.float32)
    if image.ndim == 2 or image.shape[2] <= 4:
        # OpenCV's area interpolation at a whole factor is exactly the block mean, ~10x faster
        # than numpy's reshaped mean on a 24 Mpx frame.
        area = cv2.resize(
            cropped.astype(np.float32, copy=False),
            (out_width, out_height),
            interpolation=cv2.INTER_AREA,
        )
        means = np.asarray(area, dtype=np.float32).reshape(out_height, out_width, *image.shape[2:])
        return means
    blocks = cropped.reshape(out_height, k, out_width, k, *image.shape[2:])
    block_means: npt.NDArray[np.float32] = blocks.mean(axis=(1, 3), dtype=np.float32)
    return block_means


def encode_jpeg(image01: npt.NDArray[np.floating], quality: int = 85) -> bytes:
    """8-bit JPEG of a float ``(y, x)``/``(y, x, 1)`` (grey) or ``(y, x, 3)`` (RGB) image in
    [0, 1], with the sRGB ICC profile (grey: `srgb_grey_profile`).

    Values outside [0, 1] are clipped. Raises ValueError for integer data (not yet scaled to
    [0, 1]), other shapes, or a quality outside 1..100 (Pillow advises at most 95).
    """
    levels = _levels(image01, 8, "JPEG")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(levels).save(
        buffer, format="JPEG", quality=quality, icc_profile=_profile_for(levels)
    )
    return buffer.getvalue()


def encode_png(image01: npt.NDArray[np.floating], bits: int = 8) -> bytes:
    """Lossless PNG, 8 or 16 bits per sample, grey or RGB, of a float image in [0, 1] shaped
    as for `encode_jpeg`, with the sRGB ICC profile in an iCCP chunk.

    OpenCV encodes it (Pillow cannot write 16-bit RGB PNG; OpenCV takes BGR order, hence the
    conversion) with its fast default (zlib level 1, run-length strategy): the noise in the
    low bits of a 16-bit picture does not compress, and higher levels took twice as long for
    1 % less. The iCCP chunk goes right after IHDR, where PNG wants it. Raises ValueError for
    bits other than 8 or 16 and as `encode_jpeg` for the image.
    """
    if bits not in (8, 16):
        raise ValueError(f"PNG bits must be 8 or 16, got {bits}")
    levels = _levels(image01, bits, "PNG")
    pixels = cv2.cvtColor(levels, cv2.COLOR_RGB2BGR) if levels.ndim == 3 else levels
    ok, encoded = cv2.imencode(".png", pixels)
    png = encoded.tobytes()
    if not ok or png[:8] != _PNG_SIGNATURE or png[12:16] != b"IHDR":
        raise RuntimeError("OpenCV did not produce a PNG")
    ihdr_end = 8 + 8 + struct.unpack(">I", png[8:12])[0] + 4
    return png[:ihdr_end] + _iccp_chunk(_profile_for(levels)) + png[ihdr_end:]


def encode_tiff16(image01: npt.NDArray[np.floating]) -> bytes:
    """16-bit TIFF (grey or RGB, chunky samples) of a float image in [0, 1] shaped as for
    `encode_jpeg`, with the sRGB ICC profile (tag InterColorProfile, tifffile's `iccprofile`).

    Uncompressed, as PixInsight writes TIFF by default: read by every tool, and written in
    well under a second for 24 Mpx, where deflate (even at level 1) took 5 s for 15-30 %
    less size (the noise in the low bits does not compress). Raises ValueError as
    `encode_jpeg` for the image.
    """
    levels = _levels(image01, 16, "TIFF")
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        levels,
        photometric="rgb" if levels.ndim == 3 else "minisblack",
        iccprofile=_profile_for(levels),
        metadata=None,
        software="Nightowl",
    )
    return buffer.getvalue()


def web_copy(image01: npt.NDArray[np.floating], max_size_px: int = 2048) -> npt.NDArray[np.float32]:
    """The picture scaled down so its longer side is `max_size_px` (aspect kept, sides rounded
    to whole pixels), by area averaging (OpenCV's INTER_AREA: each output pixel is the mean of
    the input area it covers, so no aliasing and lower noise); a float32 copy when it is
    already small enough. Same shape convention in and out; encode it with `encode_jpeg`.

    Raises ValueError for max_size_px < 1, an empty image or another shape.
    """
    if max_size_px < 1:
        raise ValueError(f"max_size_px must be >= 1, got {max_size_px}")
    _check_picture(image01, "web copy")
    height, width = image01.shape[:2]
    scale = max_size_px / max(height, width)
    image = np.array(image01, dtype=np.float32)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # OpenCV: (x, y)
    small = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.float32)
    return small.reshape(size[1], size[0], *image.shape[2:])


@functools.cache
def srgb_profile() -> bytes:
    """The sRGB ICC profile of Pillow's littlecms (v4), with a fixed creation date so that
    exports are reproducible."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[24:36] = _PROFILE_DATE  # the profile ID (bytes 84-99) is zero: nothing to update
    return bytes(profile)


@functools.cache
def srgb_grey_profile() -> bytes:
    """A monochrome display ICC profile (version 2.1, GRAY data, XYZ connection space) whose
    grey tone curve is the sRGB one, sampled at 1024 points: grey levels mean what the same
    level means in each channel of an sRGB picture. littlecms offers no grey profile to
    Pillow, so it is written here from the ICC.1 layout."""
    code = np.linspace(0.0, 1.0, 1024)
    linear = np.where(code <= 0.04045, code / 12.92, ((code + 0.055) / 1.055) ** 2.4)
    curve = np.rint(linear * 65535).astype(">u2").tobytes()
    description = b"sRGB grey (Nightowl)\0"
    tags = [
        (
            b"desc",
            b"desc"
            + bytes(4)
            + struct.pack(">I", len(description))
            + description
            # no Unicode (language 0, count 0), no ScriptCode (code 0, count 0, 67 bytes)
            + bytes(8)
            + bytes(3)
            + bytes(67),
        ),
        (b"cprt", b"text" + bytes(4) + b"No copyright, use freely\0"),
        (b"wtpt", b"XYZ " + bytes(4) + _xyz_d50()),
        (b"kTRC", b"curv" + bytes(4) + struct.pack(">I", 1024) + curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = [struct.pack(">I", len(tags))], []
    for signature, body in tags:
        table.append(signature + struct.pack(">II", offset, len(body)))
        padded = body + bytes(-len(body) % 4)  # tag data starts on 4-byte boundaries
        data.append(padded)
        offset += len(padded)
    header = (
        struct.pack(">I", offset)
        + bytes(4)  # preferred CMM: none
        + bytes((2, 0x10, 0, 0))  # version 2.1.0
        + b"mntrGRAYXYZ "
        + _PROFILE_DATE
        + b"acsp"
        + bytes(4 + 4 + 4 + 4 + 8 + 4)  # platform, flags, maker, model, attributes, intent
        + _xyz_d50()  # PCS illuminant
        + bytes(4 + 16 + 28)  # creator, profile ID (none in version 2), reserved
    )
    return header + b"".join(table) + b"".join(data)


def _xyz_d50() -> bytes:
    """The D50 white as three s15Fixed16 numbers (ICC's connection-space white)."""
    return struct.pack(">3i", *(round(v * 65536) for v in (0.9642, 1.0, 0.8249)))


def _profile_for(levels: npt.NDArray[np.generic]) -> bytes:
    return srgb_profile() if levels.ndim == 3 else srgb_grey_profile()


def _iccp_chunk(profile: bytes) -> bytes:
    """A PNG iCCP chunk: profile name, NUL, compression method 0 (zlib), the profile."""
    body = b"iCCP" + b"sRGB\0\0" + zlib.compress(profile)
    return struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))


def _check_picture(image01: npt.NDArray[np.generic], what: str) -> None:
    if not np.issubdtype(image01.dtype, np.floating):
        raise ValueError(f"{what} takes floats in [0, 1], not {image01.dtype}")
    if not (image01.ndim == 2 or (image01.ndim == 3 and image01.shape[2] in (1, 3))):
        raise ValueError(
            f"{what} images are (y, x), (y, x, 1) or (y, x, 3), got shape {image01.shape}"
        )
    if image01.size == 0:
        raise ValueError(f"{what} needs pixels, got shape {image01.shape}")


def _levels(
    image01: npt.NDArray[np.floating], bits: int, what: str
) -> npt.NDArray[np.uint8] | npt.NDArray[np.uint16]:
    """Integer levels ``round(x * (2**bits - 1))`` of the clipped picture, ``(y, x)`` for grey
    and ``(y, x, 3)`` for RGB; NaN becomes 0. Raises ValueError as `_check_picture`."""
    _check_picture(image01, what)
    image = image01[:, :, 0] if image01.ndim == 3 and image01.shape[2] == 1 else image01
    top = float(2**bits - 1)
    levels = np.empty(image.shape, dtype=np.uint8 if bits == 8 else np.uint16)
    for start in range(0, image.shape[0], _ROWS_PER_BLOCK):
        block = slice(start, start + _ROWS_PER_BLOCK)
        rows = image[block].astype(np.float64)  # a copy: the steps below work in place
        np.nan_to_num(rows, copy=False, nan=0.0)
        np.clip(rows, 0.0, 1.0, out=rows)
        rows *= top
        levels[block] = np.rint(rows, out=rows)
    return levels


def preview_jpeg(
    image: npt.NDArray[np.generic], max_size_px: int = 1024, config: StfConfig = _DEFAULT_STF
) -> bytes:
    """A web preview of a linear frame: downscale, linked auto-STF, JPEG.

    `image` is uint16 ADU or float in [0, 1], ``(y, x)`` or ``(y, x, 3)``. Downscaling first
    keeps the statistics and the stretch cheap on a full-size frame.
    """
    small = downscale(image, max_size_px) / np.float32(full_scale(image.dtype))
    return encode_jpeg(apply_stf(small, auto_stf(small, config)))
