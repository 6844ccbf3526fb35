"""Image file encoding and decoding: the only FITS and XISF I/O of the project.

Frames are single primary HDUs with axes ``(y, x)``: 16-bit unsigned data stored as signed
16-bit with ``BZERO = 32768`` (the convention Siril, PixInsight and NINA read and write), or
32-bit floats (``BITPIX = -32``). Encoding returns bytes, which `write_atomic` puts on disk
durably (temporary file, fsync, rename, folder fsync); `atomic_path` does the same for a writer
that wants a file name. XISF (PixInsight's format) is encoded and decoded by `processing.xisf`.

`read_image_for_solving` reads any image a user may want plate-solved: FITS of any BITPIX,
colour or Bayer, XISF, TIFF, PNG and JPEG.
"""

from __future__ import annotations

import io
import math
import os
import re
import secrets
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import tifffile
from astropy.io import fits
from PIL import Image, ImageOps, UnidentifiedImageError

from processing.xisf import XisfData, decode_xisf, encode_xisf

FitsCard = tuple[str, str | int | float | bool | None, str]
"""(keyword, value, comment); a card whose value is None is left out of the header."""

FrameData = npt.NDArray[np.uint16] | npt.NDArray[np.float32]

_KEYWORD = re.compile(r"[A-Z0-9_-]{1,8}")
# Written by astropy from the data itself, or commentary cards with their own channel: a caller
# setting one of these would contradict the data or the `history` argument.
_RESERVED = re.compile(r"SIMPLE|BITPIX|NAXIS\d*|EXTEND|BZERO|BSCALE|END|HISTORY|COMMENT")
_FRAME_DTYPES = (np.dtype(np.uint16), np.dtype(np.float32))


TEMP_SUFFIX = ".partial"
"""Ends the name of an atomic write's temporary file, ``.NAME.XXXXXXXX.partial`` beside NAME:
a file named so that is found after a crash is an interrupted write, safe to delete."""


def safe_file_name(name: str) -> str:
    """A file name from a target, filter or group name: letters, digits, ``+-_.`` only."""
    cleaned = "".join(c if c.isalnum() or c in "+-_." else "_" for c in name).strip("._")
    return cleaned or "target"


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` so that a reader, or the disk after a crash, holds the old file
    or the whole new one, never a part: a temporary file beside it, fsync, rename over `path`,
    fsync of the folder. Once this returns, the file is durable.

    A replaced file keeps its permissions; a new one gets those of `open` (the umask's).
    Raises OSError (FileNotFoundError when the folder does not exist); on any failure the
    temporary file is removed and an old file at `path` is left as it was.
    """
    target = Path(path)
    temp, fd = _open_temp(target)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        _install(temp, target)
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that takes a file name (a library's
    ``save_to_file``, `write_xisf`, ``shutil.copyfile``); when the block ends without an
    exception the file there becomes `path` as in `write_atomic`, otherwise it is removed and
    `path` is left as it was.

    The temporary file exists, empty, when the block starts: the writer must overwrite it
    (astropy: ``writeto(temp, overwrite=True)``). Raises OSError as `write_atomic`.
    """
    target = Path(path)
    temp, fd = _open_temp(target)
    os.close(fd)
    try:
        yield temp
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _install(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _open_temp(target: Path) -> tuple[Path, int]:
    """A new temporary file beside `target`, open for writing (never an existing file)."""
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    return temp, os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def _install(temp: Path, target: Path) -> None:
    """Rename the synced `temp` over `target` (keeping its permissions), then sync the folder
    so the rename itself survives a crash."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        pass
    else:
        os.chmod(temp, mode)
    os.replace(temp, target)
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def encode_fits(
    data: npt.NDArray[np.generic], cards: Sequence[FitsCard], history: Sequence[str] = ()
) -> bytes:
    """One primary HDU holding `data` (``(y, x)``, or ``(c, y, x)`` for colour; uint16 or
    float32), `cards`, then `history`.

    Raises ValueError naming the dtype for other dtypes, and naming the keyword for a keyword
    that is not 1-8 characters of ``A-Z 0-9 _ -``, is structural (BITPIX, BZERO, ...), repeats,
    or whose value or comment FITS cannot hold (non-ASCII text, NaN, ...).
    """
    native = data.dtype.newbyteorder("=")
    if native not in _FRAME_DTYPES:
        raise ValueError(f"FITS frames are uint16 or float32, not {data.dtype}")
    if data.ndim not in (2, 3):
        raise ValueError(f"a FITS image has axes (y, x) or (c, y, x), got shape {data.shape}")
    # A big-endian copy: astropy byteswaps little-endian float data in place while writing, and
    # the caller's array may be read by another thread meanwhile. uint16 gets BZERO = 32768.
    # In C order: astropy writes any other layout a few values at a time (minutes for 24 MP).
    hdu = fits.PrimaryHDU(data.astype(native.newbyteorder(">"), order="C"))
    seen: set[str] = set()
    for keyword, value, comment in cards:
        _check_keyword(keyword, seen)
        seen.add(keyword)
        if value is None:
            continue
        try:
            hdu.header.append(fits.Card(keyword, value, comment), end=True)
        except ValueError as e:
            raise ValueError(f"FITS card {keyword}: {e}") from e
    for line in history:
        try:
            hdu.header.add_history(line)
        except ValueError as e:
            raise ValueError(f"FITS HISTORY {line!r}: {e}") from e
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()


def decode_fits(buffer: bytes, *, colour: bool = False) -> tuple[FrameData, dict[str, object]]:
    """The primary image of a FITS file, axes ``(y, x)``, and its cards as ``{keyword: value}``.
    With `colour`, a three-plane ``(3, y, x)`` image (an RGB master) is read too.

    uint16 for 16-bit data with ``BZERO = 32768``, float32 for ``BITPIX = -32``, in native byte
    order. Structural keywords (BITPIX, NAXISn, BZERO, ...) are left out; HISTORY and COMMENT
    map to lists of lines. Raises ValueError when the bytes are not FITS or hold another kind
    of image (signed, 8/32-bit, 64-bit float, not 2-D), since a frame would be misread.
    """
    try:
        with fits.open(io.BytesIO(buffer), memmap=False, uint=True) as hdus:
            primary = hdus[0]
            data = primary.data
            header = primary.header
    except OSError as e:
        raise ValueError(f"not a readable FITS file: {e}") from e
    planes = colour and data is not None and data.ndim == 3 and data.shape[0] == 3
    if data is None or (data.ndim != 2 and not planes):
        shape = None if data is None else data.shape
        raise ValueError(f"the primary HDU holds no (y, x) image (shape {shape})")
    native = data.dtype.newbyteorder("=")
    if native not in _FRAME_DTYPES:
        raise ValueError(
            f"unsupported FITS image: BITPIX {header['BITPIX']} with BZERO "
            f"{header.get('BZERO', 0)} reads as {data.dtype}, not uint16 or float32"
        )
    return data.astype(native, copy=False), _cards(header)


def read_fits(
    path: str | os.PathLike[str], *, colour: bool = False
) -> tuple[FrameData, dict[str, object]]:
    """`decode_fits` of the file at `path`; OSError when it cannot be read, ValueError as there."""
    return decode_fits(Path(path).read_bytes(), colour=colour)


class FitsRows:
    """A FITS image read a block of rows at a time, as float32 with BZERO/BSCALE applied:
    a frame source for integration that never holds the whole frame in memory (the file
    is memory-mapped and its pages stay the kernel's to drop).

    Raises ValueError like `read_fits_header` when the file holds no 2-D image.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._hdus = fits.open(path, memmap=True, do_not_scale_image_data=True)
        hdu = self._hdus[0]
        if hdu.data is None or hdu.data.ndim != 2:
            self._hdus.close()
            raise ValueError(f"{path}: the primary HDU holds no (y, x) image")
        self._raw = hdu.data
        self._zero = np.float32(hdu.header.get("BZERO", 0.0))
        self._scale = np.float32(hdu.header.get("BSCALE", 1.0))

    @property
    def shape(self) -> tuple[int, int]:
        height, width = self._raw.shape
        return int(height), int(width)

    def __getitem__(self, key: object) -> npt.NDArray[np.float32]:
        rows = np.asarray(self._raw[key], dtype=np.float32)
        if self._scale != 1:
            rows *= self._scale
        rows += self._zero
        return rows

    def close(self) -> None:
        self._hdus.close()


class NpyRows:
    """One plane of a ``.npy`` file of float32 ``(c, y, x)`` or ``(y, x)``, read a block of
    rows at a time with plain reads: a frame source for integration whose memory is the
    block read, where a memory map would keep every page it touched resident (and counted
    in the process's RSS) until the kernel needs it back."""

    def __init__(self, path: str | os.PathLike[str], plane: int = 0) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - kept open until close()
        version = np.lib.format.read_magic(self._file)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(self._file)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(self._file)
        if fortran or dtype != np.dtype("<f4") or len(shape) not in (2, 3):
            self._file.close()
            raise ValueError(f"{path}: not a C-ordered float32 (c, y, x) or (y, x) array")
        height, width = shape[-2:]
        planes = shape[0] if len(shape) == 3 else 1
        if not 0 <= plane < planes:
            self._file.close()
            raise ValueError(f"{path}: no plane {plane} among {planes}")
        self._height, self._width = int(height), int(width)
        self._row_bytes = 4 * self._width
        self._start = self._file.tell() + plane * self._height * self._row_bytes

    @property
    def shape(self) -> tuple[int, int]:
        return self._height, self._width

    def __getitem__(self, key: object) -> npt.NDArray[np.float32]:
        rows = key[0] if isinstance(key, tuple) else key
        columns = key[1] if isinstance(key, tuple) and len(key) > 1 else slice(None)
        if not isinstance(rows, slice):
            raise TypeError("NpyRows takes row slices")
        start, stop, step = rows.indices(self._height)
        fd = self._file.fileno()
        if step == 1:
            count = max(0, stop - start)
            data = os.pread(fd, count * self._row_bytes, self._start + start * self._row_bytes)
            block = np.frombuffer(data, dtype="<f4").reshape(count, self._width)
        else:
            chosen = range(start, stop, step)
            block = np.empty((len(chosen), self._width), dtype=np.float32)
            for i, row in enumerate(chosen):
                data = os.pread(fd, self._row_bytes, self._start + row * self._row_bytes)
                block[i] = np.frombuffer(data, dtype="<f4")
        result: npt.NDArray[np.float32] = block[:, columns]
        return result

    def close(self) -> None:
        self._file.close()


def read_fits_header(path: str | os.PathLike[str]) -> tuple[tuple[int, int], dict[str, object]]:
    """The primary image's ``(y, x)`` shape and cards of a FITS file, without reading its data.

    Raises OSError when the file cannot be read and ValueError when it is not FITS or its
    primary HDU holds no 2-D image.
    """
    try:
        header = fits.getheader(path)
    except OSError as e:
        raise ValueError(f"not a readable FITS file: {e}") from e
    if header.get("NAXIS") != 2:
        raise ValueError(f"the primary HDU holds no (y, x) image (NAXIS {header.get('NAXIS')})")
    return (int(header["NAXIS2"]), int(header["NAXIS1"])), _cards(header)


def write_xisf(
    path: str | os.PathLike[str],
    image: npt.NDArray[np.float32],
    cards: Sequence[FitsCard],
    history: Sequence[str] = (),
) -> None:
    """Write a float32 ``(y, x)`` or ``(c, y, x)`` image as a monolithic XISF file with `cards`
    and `history` as its FITS keywords (PixInsight shows them as such): `encode_xisf`, then a
    plain write (wrap it in `atomic_path` for durability). Raises ValueError as `encode_fits`
    does, OSError when the file cannot be written.
    """
    Path(path).write_bytes(encode_xisf(image, cards, history))


def read_xisf(path: str | os.PathLike[str]) -> tuple[XisfData, dict[str, object]]:
    """`decode_xisf` of the file at `path`: the first image, ``(y, x)`` or ``(c, y, x)``, and
    its FITS keywords. OSError when it cannot be read, ValueError as there."""
    return decode_xisf(Path(path).read_bytes())


SOLVE_FORMATS = "FITS (any BITPIX, colour or Bayer, also fpack .fz), XISF, TIFF, PNG and JPEG"
"""The image files `read_image_for_solving` accepts, as a user reads it in a message."""


@dataclass(frozen=True, eq=False)
class SolveImage:
    """An image file as the plate solver takes it.

    - pixels: float32 ``(y, x)`` for the solver: the image, the mean of its colour planes, or a
      Bayer mosaic's 2 x 2 superpixel sums (any 2 x 2 block holds one red, two green and one
      blue site, so neither the pattern nor its offsets matter).
    - binning: file pixels per solver pixel along each axis, 2 for a Bayer mosaic, else 1: a
      solution of `pixels` describes the file once its scale and WCS are divided by it.
    - image: the file's own image in FITS row order, uint16 or float32, ``(y, x)`` or
      ``(c, y, x)``: the data of a FITS copy of the file (solve-field's ``.new``).
    - header: the file's FITS keywords (none for TIFF, PNG and JPEG).
    - file_format: "fits", "xisf", "tiff", "png" or "jpeg"; "fits-extension" when a FITS
      file's image is not in its primary HDU (fpack ``.fz``), whose header a WCS cannot go
      into as it can into a plain FITS frame's.
    - rows_flipped: the file stores its top row first (TIFF, PNG, JPEG and XISF do) and its rows
      were reversed into FITS order, whose first row is the bottom one a viewer shows. The
      solution's parity and rotation then describe the picture as a viewer shows it, and WCS
      pixel (x, y) (1-based, FITS) is the file's column x - 1 and row height - y counted from
      the top (0-based). FITS files keep their own order (a ROWORDER card is not applied), so
      a WCS written into one describes its pixels as stored.
    """

    pixels: npt.NDArray[np.float32]
    binning: int
    image: FrameData
    header: dict[str, object]
    file_format: str
    rows_flipped: bool


def read_image_for_solving(path: str | os.PathLike[str]) -> SolveImage:
    """Read an image file of any format a user may want plate-solved (`SOLVE_FORMATS`),
    recognised by its first bytes, not its name. A JPEG is turned upright by its EXIF
    orientation first, as viewers show it.

    Raises OSError when the file cannot be read, and ValueError naming the formats accepted
    when it is none of them, or saying what is wrong with the image (corrupt, a cube, ...).
    """
    buffer = Path(path).read_bytes()
    file_format = _image_format(buffer)
    if file_format is None:
        raise ValueError(
            f"not an image format Nightowl reads (the file starts with {buffer[:8]!r}); "
            f"accepted: {SOLVE_FORMATS}"
        )
    try:
        data, header, file_format = _SOLVE_DECODERS[file_format](buffer)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(
            f"cannot decode the {file_format.upper()} file (damaged or cut short?): {e}"
        ) from e
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 3 and data.shape[0] == 4:
        data = data[:3]  # an alpha channel
    if not (data.ndim == 2 or (data.ndim == 3 and data.shape[0] == 3)) or min(data.shape) < 2:
        raise ValueError(
            f"the {file_format.upper()} image has shape {data.shape}: expected one grey or "
            "three colour planes"
        )
    flipped = not file_format.startswith("fits")
    if flipped:
        data = data[..., ::-1, :]
    image: FrameData = (
        data.astype(np.uint16, order="C")
        if data.dtype == np.uint16
        else data.astype(np.float32, order="C")
    )
    bayer = data.ndim == 2 and isinstance(header.get("BAYERPAT"), str)
    if bayer:
        pixels = _superpixels(image)
    elif data.ndim == 3:
        pixels = image.mean(axis=0, dtype=np.float32)
    else:
        pixels = image.astype(np.float32)
    finite = np.isfinite(pixels)
    if not finite.all():
        pixels = np.where(finite, pixels, np.median(pixels[finite]) if finite.any() else 0)
    return SolveImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        binning=2 if bayer else 1,
        image=image,
        header=header,
        file_format=file_format,
        rows_flipped=flipped,
    )


def _image_format(buffer: bytes) -> str | None:
    if buffer.startswith(b"SIMPLE  ="):
        return "fits"
    if buffer.startswith(b"XISF0100"):
        return "xisf"
    if buffer[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if buffer.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if buffer.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return None


AnyImage = npt.NDArray[np.generic]
_Decoded = tuple[AnyImage, dict[str, object], str]
"""The image as stored, its FITS keywords, and the file format."""


def _decode_any_fits(buffer: bytes) -> _Decoded:
    """The first HDU holding an image (a compressed ``.fz`` one's is the second), any BITPIX,
    BZERO/BSCALE applied."""
    with fits.open(io.BytesIO(buffer), memmap=False, uint=True) as hdus:
        for index, hdu in enumerate(hdus):
            if hdu.is_image and hdu.data is not None and hdu.data.ndim >= 2:
                kind = "fits" if index == 0 else "fits-extension"
                return np.array(hdu.data), _cards(hdu.header), kind
    raise ValueError("no HDU holds an image")


def _decode_any_xisf(buffer: bytes) -> _Decoded:
    data, keywords = decode_xisf(buffer)
    return data, keywords, "xisf"


def _decode_tiff(buffer: bytes) -> _Decoded:
    """The first page; pixel-interleaved colour becomes planes."""
    with tifffile.TiffFile(io.BytesIO(buffer)) as tiff:
        page = tiff.pages.first
        data = page.asarray()
        interleaved = data.ndim == 3 and page.planarconfig == tifffile.PLANARCONFIG.CONTIG
    return (np.moveaxis(data, -1, 0) if interleaved else data), {}, "tiff"


def _decode_png(buffer: bytes) -> _Decoded:
    """OpenCV's decoder: 8 and 16 bits, grey or colour (Pillow reduces 16-bit colour to 8)."""
    data = cv2.imdecode(np.frombuffer(buffer, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ValueError("corrupt or truncated PNG data")
    if data.ndim == 3:
        data = np.moveaxis(data[..., 2::-1], -1, 0)  # BGR(A) to RGB planes
    return data, {}, "png"


def _decode_jpeg(buffer: bytes) -> _Decoded:
    """Pillow's decoder, which refuses a truncated file instead of filling it with grey."""
    try:
        opened = Image.open(io.BytesIO(buffer))
    except UnidentifiedImageError as e:  # its message names a BytesIO object
        raise ValueError("no JPEG image data after the JPEG signature") from e
    with opened:
        picture = ImageOps.exif_transpose(opened)
        if picture.mode not in ("L", "RGB"):
            picture = picture.convert("RGB")
        data = np.asarray(picture)
    return (np.moveaxis(data, -1, 0) if data.ndim == 3 else data), {}, "jpeg"


_SOLVE_DECODERS = {
    "fits": _decode_any_fits,
    "xisf": _decode_any_xisf,
    "tiff": _decode_tiff,
    "png": _decode_png,
    "jpeg": _decode_jpeg,
}


def _superpixels(mosaic: FrameData) -> npt.NDArray[np.float32]:
    """Sums of 2 x 2 blocks (a trailing odd row or column is left out)."""
    height, width = mosaic.shape[0] // 2 * 2, mosaic.shape[1] // 2 * 2
    cells = mosaic[:height, :width].astype(np.float32)
    summed: npt.NDArray[np.float32] = (
        cells[0::2, 0::2] + cells[0::2, 1::2] + cells[1::2, 0::2] + cells[1::2, 1::2]
    )
    return summed


def ra_hours_to_sexagesimal(ra_hours: float) -> str:
    """``"HH MM SS.ss"`` for OBJCTRA, wrapped into [0, 24) h after rounding to 0.01 s.

    Rounding happens on whole centiseconds, so 59.999 s carries into the minute (and 24 h
    becomes 00). Raises ValueError for a non-finite value.
    """
    if not math.isfinite(ra_hours):
        raise ValueError(f"right ascension must be finite, got {ra_hours}")
    centiseconds = round(ra_hours * 360_000) % (24 * 360_000)
    minutes, centi = divmod(centiseconds, 6000)
    hours, minutes = divmod(minutes, 60)
    seconds, hundredths = divmod(centi, 100)
    return f"{hours:02d} {minutes:02d} {seconds:02d}.{hundredths:02d}"


def dec_deg_to_sexagesimal(dec_deg: float) -> str:
    """``"+DD MM SS.s"`` for OBJCTDEC, rounded to 0.1 arcsec with carry (59.99" -> next minute).

    The sign is always written and belongs to the rounded value (-0.01" gives ``+00 00 00.0``).
    Raises ValueError outside [-90, 90] degrees or for a non-finite value.
    """
    if not (math.isfinite(dec_deg) and -90.0 <= dec_deg <= 90.0):
        raise ValueError(f"declination must be within [-90, 90] deg, got {dec_deg}")
    tenths = round(abs(dec_deg) * 36_000)
    sign = "-" if dec_deg < 0 and tenths > 0 else "+"
    arcmin, tenth_arcsec = divmod(tenths, 600)
    degrees, arcmin = divmod(arcmin, 60)
    arcsec, tenth = divmod(tenth_arcsec, 10)
    return f"{sign}{degrees:02d} {arcmin:02d} {arcsec:02d}.{tenth}"


def _check_keyword(keyword: str, seen: set[str]) -> None:
    if not _KEYWORD.fullmatch(keyword):
        raise ValueError(f"invalid FITS keyword {keyword!r}: 1-8 characters of A-Z 0-9 _ -")
    if _RESERVED.fullmatch(keyword):
        raise ValueError(f"FITS keyword {keyword!r} is reserved: it is written from the data")
    if keyword in seen:
        raise ValueError(f"FITS keyword {keyword!r} appears twice")


def _cards(header: fits.Header) -> dict[str, object]:
    values: dict[str, object] = {}
    commentary: dict[str, list[str]] = {}
    for card in header.cards:
        if card.keyword in ("HISTORY", "COMMENT"):
            commentary.setdefault(card.keyword, []).append(str(card.value))
        elif card.keyword and not _RESERVED.fullmatch(card.keyword):
            values[card.keyword] = card.value
    return values | commentary
