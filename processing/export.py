"""Preview images: block-averaged downscaling, auto-stretch and JPEG encoding."""

from __future__ import annotations

import io
import math

import numpy as np
import numpy.typing as npt
from PIL import Image

from processing.stretch import StfConfig, apply_stf, auto_stf, full_scale

_DEFAULT_STF = StfConfig()


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
    blocks = image[: out_height * k, : out_width * k].reshape(
        out_height, k, out_width, k, *image.shape[2:]
    )
    means: npt.NDArray[np.float32] = blocks.mean(axis=(1, 3), dtype=np.float32)
    return means


def encode_jpeg(image01: npt.NDArray[np.floating], quality: int = 85) -> bytes:
    """8-bit JPEG of a float ``(y, x)`` (grey) or ``(y, x, 3)`` (RGB) image in [0, 1].

    Values outside [0, 1] are clipped. Raises ValueError for integer data (not yet scaled to
    [0, 1]), other shapes, or a quality outside 1..100 (Pillow advises at most 95).
    """
    if not np.issubdtype(image01.dtype, np.floating):
        raise ValueError(f"encode_jpeg takes floats in [0, 1], not {image01.dtype}")
    if not (image01.ndim == 2 or (image01.ndim == 3 and image01.shape[2] == 3)):
        raise ValueError(f"JPEG images are (y, x) or (y, x, 3), got shape {image01.shape}")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    levels = np.rint(np.clip(image01, 0.0, 1.0) * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def preview_jpeg(
    image: npt.NDArray[np.generic], max_size_px: int = 1024, config: StfConfig = _DEFAULT_STF
) -> bytes:
    """A web preview of a linear frame: downscale, linked auto-STF, JPEG.

    `image` is uint16 ADU or float in [0, 1], ``(y, x)`` or ``(y, x, 3)``. Downscaling first
    keeps the statistics and the stretch cheap on a full-size frame.
    """
    small = downscale(image, max_size_px) / np.float32(full_scale(image.dtype))
    return encode_jpeg(apply_stf(small, auto_stf(small, config)))
