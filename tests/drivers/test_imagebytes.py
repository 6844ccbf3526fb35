"""ImageBytes decoding on buffers built by hand from a known image."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.alpaca.imagebytes import ImageBytesError, decode


def imagebytes(image_yx: np.ndarray, element_type: int, error: int = 0) -> bytes:
    """Encode as an Alpaca server does: x is dimension 1 and Y varies fastest."""
    height, width = image_yx.shape
    header = np.array(
        [1, error, 7, 8, 44, 2, element_type, 2, width, height, 0], dtype="<i4"
    ).tobytes()
    return header + np.ascontiguousarray(image_yx.T).tobytes()


def test_uint16_image_comes_back_in_y_x_order() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 65535, size=(3, 5), dtype=np.uint16)
    decoded = decode(imagebytes(image.astype("<u2"), element_type=8))
    assert decoded.shape == (3, 5)
    np.testing.assert_array_equal(decoded, image)


def test_int32_transmission_is_decoded() -> None:
    image = np.arange(12, dtype="<i4").reshape(4, 3) * 1000
    np.testing.assert_array_equal(decode(imagebytes(image, element_type=2)), image)


def test_error_reply_carries_the_device_message() -> None:
    header = np.array([1, 0x40D, 0, 0, 44, 0, 0, 0, 0, 0, 0], dtype="<i4").tobytes()
    with pytest.raises(ImageBytesError, match="0x40D: No image data") as caught:
        decode(header + b"No image data available")
    assert caught.value.error_number == 0x40D


def test_truncated_reply_is_refused() -> None:
    buffer = imagebytes(np.zeros((4, 4), dtype="<u2"), element_type=8)
    with pytest.raises(ImageBytesError, match="header promises"):
        decode(buffer[:-2])


def test_unknown_element_type_is_refused() -> None:
    with pytest.raises(ImageBytesError, match="transmission element type 42"):
        decode(imagebytes(np.zeros((2, 2), dtype="<u2"), element_type=42))
