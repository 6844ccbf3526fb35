"""Previews: exact block means, JPEG size and brightness, the whole preview path. Exports:
exact 8/16-bit levels in TIFF and PNG, the sRGB profiles they carry, the web copy's size."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from processing.export import (
    downscale,
    encode_jpeg,
    encode_png,
    encode_tiff16,
    preview_jpeg,
    srgb_grey_profile,
    srgb_profile,
    web_copy,
)
from processing.stretch import StfConfig, apply_stf, auto_stf

# At quality 85 JPEG keeps each 8 x 8 block's mean (its DC term) to about one grey level.
JPEG_MEAN_TOLERANCE_LEVELS = 1.0


def block_pattern(means: np.ndarray, k: int, extra: tuple[int, int]) -> np.ndarray:
    """Blocks of k x k pixels whose means are `means`, plus `extra` rows/columns of junk.

    Within each block a +/-3 checkerboard (k even) averages to exactly zero; the junk rows and
    columns (65535) must be cropped, so any leak would show in the means.
    """
    checker = 3 * (1 - 2 * ((np.indices((k, k)).sum(axis=0)) % 2))
    image = np.kron(means, np.ones((k, k))) + np.tile(checker, means.shape)
    image = np.pad(image, ((0, extra[0]), (0, extra[1])), constant_values=65535)
    return image.astype(np.uint16)


def decode(jpeg: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(jpeg))
    image.load()
    return image


def test_downscale_gives_the_exact_block_means() -> None:
    means = np.arange(100, 100 + 5 * 8 * 10, 10, dtype=np.float64).reshape(5, 8)
    image = block_pattern(means, k=4, extra=(3, 2))  # 23 x 34 px
    before = image.copy()
    small = downscale(image, max_size_px=9)  # ceil(34 / 9) = 4
    assert small.dtype == np.float32
    # Integer sums below 2**24 and a division by 16: exact in float32.
    np.testing.assert_array_equal(small, means)
    np.testing.assert_array_equal(image, before)


def test_downscale_keeps_the_aspect_and_the_channels() -> None:
    rgb = np.random.default_rng(1).random((1000, 3000, 3), dtype=np.float32)
    small = downscale(rgb, max_size_px=1024)  # k = 3
    assert small.shape == (333, 1000, 3)
    # Each output pixel is the float32 mean of 9 inputs: a few ulps of 1.
    np.testing.assert_allclose(small[0, 0], rgb[:3, :3].mean(axis=(0, 1)), rtol=0, atol=1e-6)


def test_downscale_of_a_small_image_is_a_float_copy() -> None:
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    small = downscale(image, max_size_px=4)
    np.testing.assert_array_equal(small, image)
    assert small.dtype == np.float32


@pytest.mark.parametrize(
    ("shape", "max_size_px", "match"),
    [
        ((10, 10), 0, "max_size_px"),
        ((0, 5), 4, "shape"),
        ((4, 4, 3, 1), 2, "shape"),
        ((2, 900), 10, "too narrow"),  # 90 x 90 blocks do not fit in 2 rows
    ],
)
def test_downscale_refuses_what_it_cannot_block(
    shape: tuple[int, ...], max_size_px: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        downscale(np.zeros(shape, dtype=np.uint16), max_size_px)


def test_grey_jpeg_has_the_size_and_brightness() -> None:
    # A smooth horizontal ramp, 0.1 to 0.7: mean 0.4 -> 102 grey levels.
    ramp = np.tile(np.linspace(0.1, 0.7, 160, dtype=np.float32), (90, 1))
    before = ramp.copy()
    decoded = decode(encode_jpeg(ramp))
    assert decoded.format == "JPEG"
    assert decoded.mode == "L"
    assert decoded.size == (160, 90)  # Pillow reports (width, height)
    np.testing.assert_allclose(
        np.asarray(decoded).mean(), 0.4 * 255, rtol=0, atol=JPEG_MEAN_TOLERANCE_LEVELS
    )
    np.testing.assert_array_equal(ramp, before)


def test_colour_jpeg_keeps_the_channel_means() -> None:
    image = np.empty((64, 96, 3), dtype=np.float64)
    image[...] = (0.8, 0.5, 0.2)
    decoded = decode(encode_jpeg(image, quality=90))
    assert decoded.mode == "RGB"
    assert decoded.size == (96, 64)
    # RGB -> YCbCr -> RGB rounds each 8-bit channel of a flat colour by up to ~1.5 levels.
    np.testing.assert_allclose(
        np.asarray(decoded).reshape(-1, 3).mean(axis=0),
        np.array([0.8, 0.5, 0.2]) * 255,
        rtol=0,
        atol=2.0,
    )


def test_jpeg_clips_values_outside_the_unit_range() -> None:
    image = np.array([[-1.0] * 8 + [2.0] * 8] * 16)
    levels = np.asarray(decode(encode_jpeg(image, quality=100)))
    # Quality 100 still rounds through the DCT: within two levels of black and white.
    np.testing.assert_allclose(levels[:, :4], 0, atol=2)
    np.testing.assert_allclose(levels[:, -4:], 255, atol=2)


@pytest.mark.parametrize(
    ("image", "quality", "match"),
    [
        (np.zeros((4, 4), dtype=np.uint16), 85, "uint16"),
        (np.zeros((4, 4, 4)), 85, "shape"),
        (np.zeros((4, 4)), 0, "quality"),
    ],
)
def test_encode_jpeg_refuses_bad_input(image: np.ndarray, quality: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        encode_jpeg(image, quality)


def test_preview_is_a_downscaled_stretched_jpeg() -> None:
    rng = np.random.default_rng(21)
    frame = np.clip(rng.normal(1000, 20, size=(600, 900)), 0, 65535).astype(np.uint16)
    frame[290:310, 440:460] = 30_000  # one bright patch, so there is something above the sky
    before = frame.copy()
    jpeg = preview_jpeg(frame, max_size_px=300)  # k = 3
    decoded = decode(jpeg)
    assert decoded.size == (300, 200)
    assert decoded.mode == "L"
    small = downscale(frame, 300) / np.float32(65535)
    expected = apply_stf(small, auto_stf(small, StfConfig())).mean() * 255
    np.testing.assert_allclose(
        np.asarray(decoded).mean(), expected, rtol=0, atol=JPEG_MEAN_TOLERANCE_LEVELS
    )
    # The sky lands on the target grey 0.25 (63.75 levels); rounding to whole levels and JPEG's
    # per-pixel error move the median of the decoded pixels by about one level.
    np.testing.assert_allclose(np.median(np.asarray(decoded)), 0.25 * 255, rtol=0, atol=1.5)
    np.testing.assert_array_equal(frame, before)


def test_preview_of_a_colour_frame_is_rgb() -> None:
    rng = np.random.default_rng(22)
    frame = np.clip(rng.normal(1000, 20, size=(120, 200, 3)), 0, 65535).astype(np.uint16)
    decoded = decode(preview_jpeg(frame, max_size_px=100))
    assert decoded.mode == "RGB"
    assert decoded.size == (100, 60)


def picture(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A float32 picture in [0, 1] with a few values a writer must clip or blank."""
    image = np.random.default_rng(seed).random(shape, dtype=np.float32)
    image[0, 0], image[0, 1], image[0, 2] = -0.5, 1.5, np.nan  # below, above, undefined
    return image


def expected_levels(image: np.ndarray, bits: int) -> np.ndarray:
    clean = np.nan_to_num(image.astype(np.float64), nan=0.0)
    levels: np.ndarray = np.rint(np.clip(clean, 0.0, 1.0) * (2**bits - 1))
    return levels[:, :, 0] if levels.ndim == 3 and levels.shape[2] == 1 else levels


@pytest.mark.parametrize("shape", [(40, 56), (40, 56, 1), (40, 56, 3)])
def test_tiff16_holds_the_exact_levels_and_the_srgb_profile(shape: tuple[int, ...]) -> None:
    image = picture(shape, seed=31)
    before = image.copy()
    with tifffile.TiffFile(io.BytesIO(encode_tiff16(image))) as tiff:
        page = tiff.pages.first
        levels = page.asarray()
        profile = page.tags["InterColorProfile"].value
    assert levels.dtype == np.uint16
    np.testing.assert_array_equal(levels, expected_levels(image, 16))
    assert levels[0, 0].max() == 0
    assert levels[0, 1].min() == 65535
    assert levels[0, 2].max() == 0
    colour = len(shape) == 3 and shape[2] == 3
    assert bytes(profile) == (srgb_profile() if colour else srgb_grey_profile())
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("shape", [(40, 56), (40, 56, 1), (40, 56, 3)])
def test_png_holds_the_exact_levels_and_the_srgb_profile(shape: tuple[int, ...], bits: int) -> None:
    image = picture(shape, seed=32)
    before = image.copy()
    png = encode_png(image, bits=bits)
    # OpenCV reads every kind back unchanged (Pillow turns 16-bit RGB into 8 bits).
    levels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert levels is not None
    if levels.ndim == 3:
        levels = levels[:, :, ::-1]  # BGR -> RGB
    assert levels.dtype == (np.uint8 if bits == 8 else np.uint16)
    np.testing.assert_array_equal(levels, expected_levels(image, bits))
    decoded = Image.open(io.BytesIO(png))
    decoded.load()  # Pillow checks each chunk's CRC
    colour = len(shape) == 3 and shape[2] == 3
    assert decoded.info["icc_profile"] == (srgb_profile() if colour else srgb_grey_profile())
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("shape", [(32, 48), (32, 48, 1), (32, 48, 3)])
def test_jpeg_carries_the_srgb_profile_of_its_colour_space(shape: tuple[int, ...]) -> None:
    decoded = decode(encode_jpeg(picture(shape, seed=33)))
    profile = ImageCms.ImageCmsProfile(io.BytesIO(decoded.info["icc_profile"]))
    assert "sRGB" in ImageCms.getProfileDescription(profile)
    colour = len(shape) == 3 and shape[2] == 3
    assert profile.profile.xcolor_space.strip() == ("RGB" if colour else "GRAY")
    assert decoded.mode == ("RGB" if colour else "L")


def test_the_grey_profile_has_the_srgb_tone_curve() -> None:
    # littlecms converts grey levels through our profile's curve to the PCS and back out
    # through the sRGB profile's: with the same curve each level comes back as R = G = B =
    # itself. A plain gamma 2.2 curve moves the dark levels by up to 9, a linear one up to 73.
    grey = ImageCms.ImageCmsProfile(io.BytesIO(srgb_grey_profile()))
    srgb = ImageCms.ImageCmsProfile(io.BytesIO(srgb_profile()))
    assert grey.profile.version == pytest.approx(2.1)
    transform = ImageCms.buildTransform(grey, srgb, "L", "RGB")
    ramp = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (2, 1)))
    rgb = np.asarray(ImageCms.applyTransform(ramp, transform)).astype(int)
    # 16-bit curve tables and 8-bit output: at most one level of rounding.
    np.testing.assert_allclose(rgb[0], np.repeat(np.arange(256)[:, None], 3, axis=1), atol=1)


def test_png_bits_must_be_8_or_16() -> None:
    with pytest.raises(ValueError, match="bits"):
        encode_png(np.zeros((4, 4)), bits=12)
    with pytest.raises(ValueError, match="shape"):
        encode_tiff16(np.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match="uint16"):
        encode_tiff16(np.zeros((4, 4), dtype=np.uint16))


def test_web_copy_fits_the_longer_side_and_averages_areas() -> None:
    image = np.random.default_rng(34).random((2100, 300, 3), dtype=np.float32)
    before = image.copy()
    small = web_copy(image)
    assert small.dtype == np.float32
    assert small.shape == (2048, 293, 3)  # 300 * 2048 / 2100 = 292.6
    np.testing.assert_array_equal(image, before)
    # An exact factor of 2: each pixel is the mean of a 2 x 2 block. The float32 sum of four
    # values in [0, 1] times 0.25 is within a few ulps of 1.
    half = web_copy(image[:512, :300], max_size_px=256)
    assert half.shape == (256, 150, 3)
    blocks = image[:512, :300].reshape(256, 2, 150, 2, 3).mean(axis=(1, 3), dtype=np.float64)
    np.testing.assert_allclose(half, blocks, rtol=0, atol=3e-7)


def test_web_copy_of_a_small_picture_is_a_float32_copy() -> None:
    image = np.linspace(0, 1, 60, dtype=np.float64).reshape(6, 10, 1)
    small = web_copy(image)
    assert small.dtype == np.float32
    assert small.shape == (6, 10, 1)
    np.testing.assert_array_equal(small, image.astype(np.float32))
    grey = web_copy(np.ones((300, 100, 1), np.float32), max_size_px=30)
    assert grey.shape == (30, 10, 1)
    with pytest.raises(ValueError, match="max_size_px"):
        web_copy(image, max_size_px=0)
