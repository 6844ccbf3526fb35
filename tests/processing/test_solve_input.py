"""Reading any image for plate solving: formats, row order, Bayer superpixels, errors."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
import tifffile
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from processing.io import FitsCard, encode_fits, read_image_for_solving, write_xisf
from processing.solve import Parity, Solution
from processing.wcs_files import in_file_pixels

HEIGHT, WIDTH = 48, 64


def scene(dtype: type[np.generic], top: int) -> npt.NDArray[np.generic]:
    """A ramp along x, brighter towards the file's first row, with a bright pixel at row 3,
    column 5 of the file: asymmetric in both axes, so any flip or transpose shows."""
    rng = np.random.default_rng(17)
    values = np.linspace(0, top // 2, WIDTH)[None, :] + np.linspace(top // 4, 0, HEIGHT)[:, None]
    values = values + rng.uniform(0, top // 16, (HEIGHT, WIDTH))
    values[3, 5] = top
    return values.astype(dtype)


def photo_as_fits_rows(data: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    """A top-down file's rows in FITS order (first row at the bottom)."""
    return np.asarray(data[::-1], dtype=np.float32)


def write_png(path: Path, data: npt.NDArray[np.generic]) -> None:
    """OpenCV writes 16-bit colour PNGs (Pillow cannot); it takes colour as BGR."""
    ok, encoded = cv2.imencode(".png", data[..., ::-1] if data.ndim == 3 else data)
    assert ok
    path.write_bytes(encoded.tobytes())


def test_grey_png_8_and_16_bit_are_read_exactly_with_rows_flipped(tmp_path: Path) -> None:
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        data = scene(dtype, top)
        write_png(tmp_path / "grey.png", data)
        read = read_image_for_solving(tmp_path / "grey.png")
        assert (read.file_format, read.binning, read.rows_flipped) == ("png", 1, True)
        np.testing.assert_array_equal(read.pixels, photo_as_fits_rows(data))  # lossless format
        assert read.pixels[HEIGHT - 1 - 3, 5] == top  # the file's row 3 is 3 rows below the top


def test_colour_png_16_bit_keeps_its_depth_and_averages_to_luminance(tmp_path: Path) -> None:
    red, green = scene(np.uint16, 60000), scene(np.uint16, 30000)
    blue = np.zeros_like(red)
    rgb = np.stack([red, green, blue], axis=-1)
    write_png(tmp_path / "rgb.png", rgb)
    read = read_image_for_solving(tmp_path / "rgb.png")
    assert read.image.dtype == np.uint16
    assert read.image.shape == (3, HEIGHT, WIDTH)
    np.testing.assert_array_equal(read.image[0], red[::-1])  # channel order kept: R first
    expected = (red.astype(np.float32) + green + blue) / 3
    # float32 mean of three values below 2**16: exact to its rounding.
    np.testing.assert_allclose(read.pixels, expected[::-1], rtol=1e-6)


def test_jpeg_grey_and_colour_within_compression_error(tmp_path: Path) -> None:
    data = scene(np.uint8, 255)
    for mode, array in (("L", data), ("RGB", np.stack([data] * 3, axis=-1))):
        buffer = io.BytesIO()
        Image.fromarray(array, mode=mode).save(buffer, format="JPEG", quality=100)
        (tmp_path / "photo.jpg").write_bytes(buffer.getvalue())
        read = read_image_for_solving(tmp_path / "photo.jpg")
        assert read.file_format == "jpeg"
        # Quality 100 JPEG: a few levels of error per pixel (chroma rounding for colour);
        # a flipped image would be off by the ramp, up to ~60 levels.
        np.testing.assert_allclose(read.pixels, photo_as_fits_rows(data), atol=6)


def test_tiff_grey_float_and_interleaved_colour(tmp_path: Path) -> None:
    grey = scene(np.uint16, 65535)
    floats = scene(np.float32, 1000)
    colour = np.stack([scene(np.uint8, 255)] * 3, axis=-1)
    tifffile.imwrite(tmp_path / "grey.tif", grey)
    tifffile.imwrite(tmp_path / "float.tif", floats)
    tifffile.imwrite(tmp_path / "rgb.tif", colour, photometric="rgb")
    np.testing.assert_array_equal(
        read_image_for_solving(tmp_path / "grey.tif").pixels, photo_as_fits_rows(grey)
    )
    np.testing.assert_array_equal(
        read_image_for_solving(tmp_path / "float.tif").pixels, photo_as_fits_rows(floats)
    )
    read = read_image_for_solving(tmp_path / "rgb.tif")
    assert read.image.shape == (3, HEIGHT, WIDTH)
    np.testing.assert_allclose(read.pixels, photo_as_fits_rows(colour[..., 0]), rtol=1e-6)


def test_xisf_is_read_top_row_first_as_pixinsight_shows_it(tmp_path: Path) -> None:
    data = scene(np.float32, 1000)
    write_xisf(tmp_path / "master.xisf", data, [("FOCALLEN", 400.0, "")])
    read = read_image_for_solving(tmp_path / "master.xisf")
    assert (read.file_format, read.rows_flipped, read.header["FOCALLEN"]) == ("xisf", True, 400.0)
    np.testing.assert_array_equal(read.pixels, photo_as_fits_rows(data))


@pytest.mark.parametrize(
    ("dtype", "bzero"),
    [
        (np.uint8, None),
        (np.int16, None),
        (np.int16, 32768),
        (np.int32, None),
        (np.int32, 2**31),
        (np.float32, None),
        (np.float64, None),
    ],
)
def test_fits_of_every_bitpix_keeps_its_values_and_row_order(
    tmp_path: Path, dtype: type[np.generic], bzero: int | None
) -> None:
    stored = scene(dtype, 100 if dtype == np.uint8 else 20000)
    if dtype == np.int16:
        stored = (stored.astype(np.int32) - 10000).astype(np.int16)  # negative values too
    hdu = fits.PrimaryHDU(stored)
    if bzero is not None:
        hdu.header["BZERO"] = bzero
    hdu.writeto(tmp_path / "frame.fits")
    read = read_image_for_solving(tmp_path / "frame.fits")
    assert (read.file_format, read.rows_flipped) == ("fits", False)
    expected = stored.astype(np.float64) + (bzero or 0)
    # float32 holds these integers (< 2**24 away from BZERO) exactly... except BZERO 2**31:
    # 2**31 + 20000 needs 32 bits, float32 keeps 24, so 1 part in 2**23 of it.
    np.testing.assert_allclose(read.pixels, expected, rtol=2**-23)


def test_compressed_fits_is_read_from_its_extension(tmp_path: Path) -> None:
    data = scene(np.int16, 20000)
    hdus = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1")])
    hdus.writeto(tmp_path / "frame.fits.fz")
    read = read_image_for_solving(tmp_path / "frame.fits.fz")
    # A WCS cannot go into this file's primary header: --write-wcs writes sidecars instead.
    assert (read.file_format, read.rows_flipped) == ("fits-extension", False)
    np.testing.assert_array_equal(read.pixels, data)  # RICE is lossless for integers


def test_colour_fits_planes_average_and_a_cube_is_refused(tmp_path: Path) -> None:
    planes = np.stack([scene(np.float32, 900), scene(np.float32, 300), np.zeros((HEIGHT, WIDTH))])
    (tmp_path / "rgb.fits").write_bytes(encode_fits(planes.astype(np.float32), []))
    read = read_image_for_solving(tmp_path / "rgb.fits")
    np.testing.assert_allclose(read.pixels, planes.mean(axis=0), rtol=1e-6)
    fits.PrimaryHDU(np.zeros((5, 8, 8), np.float32)).writeto(tmp_path / "cube.fits")
    with pytest.raises(ValueError, match=r"shape \(5, 8, 8\).*one grey or three colour planes"):
        read_image_for_solving(tmp_path / "cube.fits")


def test_bayer_fits_is_summed_into_superpixels(tmp_path: Path) -> None:
    mosaic = scene(np.uint16, 16000)[:, :-1]  # an odd width: the last column is left out
    cards: list[FitsCard] = [("BAYERPAT", "GRBG", ""), ("XBAYROFF", 1, ""), ("YBAYROFF", 0, "")]
    (tmp_path / "osc.fits").write_bytes(encode_fits(mosaic, cards))
    read = read_image_for_solving(tmp_path / "osc.fits")
    assert read.binning == 2
    assert read.pixels.shape == (HEIGHT // 2, (WIDTH - 1) // 2)
    assert read.image.shape == mosaic.shape  # the .new copy keeps the raw mosaic
    cell = mosaic[2:4, 6:8].astype(np.float32)
    assert read.pixels[1, 3] == cell.sum()


def test_corrupt_jpeg_and_unknown_format_say_what_is_accepted(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(scene(np.uint8, 255)).save(buffer, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[:300])  # a truncated download
    with pytest.raises(
        ValueError, match=r"cannot decode the JPEG file \(damaged or cut short\?\): Truncated"
    ):
        read_image_for_solving(tmp_path / "cut.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"accepted: FITS .*XISF, TIFF, PNG and JPEG"):
        read_image_for_solving(tmp_path / "notes.txt")


def test_solution_of_superpixels_maps_onto_the_file_pixels() -> None:
    """A WCS found on 2x2 superpixels must put every file pixel at the same sky position as
    the superpixel point it lies on: file pixel (0-based) p is superpixel (p - 0.5) / 2."""
    binned = WCS(naxis=2)
    binned.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    binned.wcs.crval = [192.78, 41.12]
    binned.wcs.crpix = [(540 + 1) / 2, (960 + 1) / 2]
    scale_deg = 4.74 / 3600
    angle = np.radians(33.0)
    binned.wcs.cd = scale_deg * np.array(
        [[-np.cos(angle), np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    )
    solution = Solution(
        ra_deg=192.78, dec_deg=41.12, scale_arcsec_px=4.74, rotation_deg=33.0,
        parity=Parity.NORMAL, wcs=binned, matched=40, residual_arcsec=1.0, seconds=1.0,
        engine="test",
    )  # fmt: skip
    file_shape = (1920, 1081)  # odd width: the centre moves by half a file pixel
    mapped = in_file_pixels(solution, 2, file_shape)
    assert mapped.scale_arcsec_px == pytest.approx(2.37)
    file_px = np.array([[0.0, 0.0], [1080.0, 0.0], [517.3, 1919.0], [540.0, 959.5]])
    superpixel = (file_px - 0.5) / 2
    np.testing.assert_allclose(
        mapped.wcs.all_pix2world(file_px, 0), binned.all_pix2world(superpixel, 0), atol=1e-9
    )  # 1e-9 deg: float rounding, far under a pixel (6.6e-4 deg)
    centre = mapped.wcs.all_pix2world([[(1081 - 1) / 2, (1920 - 1) / 2]], 0)[0]
    np.testing.assert_allclose([mapped.ra_deg, mapped.dec_deg], centre, atol=1e-9)
