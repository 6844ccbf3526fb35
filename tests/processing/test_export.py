"""Previews: exact block means, JPEG size and brightness, the whole preview path."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from processing.export import downscale, encode_jpeg, preview_jpeg
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
