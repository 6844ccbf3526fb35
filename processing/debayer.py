"""Demosaicing of one-shot-colour frames (a Bayer colour filter array) into RGB.

The pattern names the colours of the top-left 2 x 2 cell in reading order, as FITS BAYERPAT
does (NINA, Siril, PixInsight): "RGGB" has red at (0, 0), green at (0, 1) and (1, 0), blue
at (1, 1). OpenCV's older codes name the cell one pixel down and right (its BayerBG is RGGB);
OpenCV 5 also has sensor-order aliases, but its demosaicing takes 8/16-bit integers only, so
both methods here run on float32 in numpy, which keeps calibrated values (fractions, negative
noise) intact.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

_RED, _GREEN, _BLUE = 0, 1, 2
# Normalised convolution with these kernels is bilinear interpolation of each colour plane:
# green from its 4 neighbours, red and blue from 2 (same row or column) or 4 (diagonal).
_GREEN_KERNEL: F32 = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float32) / np.float32(4)
_RED_BLUE_KERNEL: F32 = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / np.float32(
    4
)


class BayerPattern(enum.StrEnum):
    """Colours of the top-left 2 x 2 cell, row by row (FITS BAYERPAT)."""

    RGGB = "RGGB"
    BGGR = "BGGR"
    GRBG = "GRBG"
    GBRG = "GBRG"


class Demosaic(enum.StrEnum):
    """bilinear: each colour plane interpolated on its own (fast; colour fringes on edges).
    edge_aware: Hamilton-Adams: green interpolated along the direction of least change
    (gradient plus the second difference of the site's own colour), then red and blue as
    differences to green, which stay smooth across edges."""

    BILINEAR = "bilinear"
    EDGE_AWARE = "edge_aware"


def bayer_pattern(name: str, x_offset: int = 0, y_offset: int = 0) -> BayerPattern:
    """The pattern at pixel (0, 0) for a BAYERPAT value and XBAYROFF / YBAYROFF offsets.

    An offset moves the pattern's origin: with x_offset 1, pixel (0, 0) has the colour of
    the named pattern's column 1 (RGGB becomes GRBG). A frame stored bottom-up (ROWORDER
    'BOTTOM-UP') with an even height needs y_offset 1. Raises ValueError for an unknown name.
    """
    try:
        pattern = BayerPattern(name.strip().upper())
    except ValueError as e:
        raise ValueError(f"unknown Bayer pattern {name!r}: one of RGGB BGGR GRBG GBRG") from e
    cell = [[pattern.value[0], pattern.value[1]], [pattern.value[2], pattern.value[3]]]
    dy, dx = y_offset % 2, x_offset % 2
    shifted = "".join(cell[(row + dy) % 2][(col + dx) % 2] for row in (0, 1) for col in (0, 1))
    return BayerPattern(shifted)


def header_pattern(header: Mapping[str, object]) -> BayerPattern | None:
    """The pattern at pixel (0, 0) of a FITS frame: BAYERPAT moved by XBAYROFF / YBAYROFF
    (NINA and INDI write the sensor's pattern and the readout's offsets). None for a frame
    without BAYERPAT (mono). Raises ValueError naming BAYERPAT for a pattern that is not one
    of the four this module demosaics, or an offset that is not a whole number."""
    name = header.get("BAYERPAT")
    if name is None or not str(name).strip():
        return None
    offsets = []
    for key in ("XBAYROFF", "YBAYROFF"):
        value = header.get(key, 0)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value != int(value)
        ):
            raise ValueError(f"{key} {value!r} is not a whole number of pixels")
        offsets.append(int(value))
    try:
        return bayer_pattern(str(name), *offsets)
    except ValueError as e:
        raise ValueError(
            f"BAYERPAT {name!r} is not a colour filter array Nightowl can debayer "
            "(RGGB, BGGR, GRBG or GBRG): debayer such frames elsewhere first, or remove the "
            "card to stack them as mono"
        ) from e


def colour_masks(shape: tuple[int, int], pattern: BayerPattern) -> npt.NDArray[np.bool_]:
    """``(3, y, x)`` masks of the red, green and blue sites of a CFA frame."""
    masks = np.zeros((3, *shape), dtype=bool)
    channel = {"R": _RED, "G": _GREEN, "B": _BLUE}
    for index, colour in enumerate(pattern.value):
        dy, dx = divmod(index, 2)
        masks[channel[colour], dy::2, dx::2] = True
    return masks


def mosaic(rgb: npt.NDArray[np.floating], pattern: BayerPattern) -> F32:
    """The CFA frame a sensor with `pattern` records of an ``(y, x, 3)`` RGB scene."""
    masks = colour_masks(rgb.shape[:2], pattern)
    frame: F32 = np.einsum("cyx,yxc->yx", masks.astype(np.float32), rgb.astype(np.float32))
    return frame


def debayer(
    cfa: npt.NDArray[np.generic],
    pattern: BayerPattern,
    method: Demosaic = Demosaic.EDGE_AWARE,
) -> F32:
    """RGB ``(y, x, 3)`` float32 from a ``(y, x)`` CFA frame; the input is not modified.

    Raises ValueError unless the frame is 2-D with even sides (a whole number of cells).
    """
    if cfa.ndim != 2 or cfa.shape[0] % 2 or cfa.shape[1] % 2:
        raise ValueError(f"a CFA frame is 2-D with even sides, got shape {cfa.shape}")
    data = np.ascontiguousarray(cfa, dtype=np.float32)
    masks = colour_masks(data.shape, pattern)
    if method is Demosaic.BILINEAR:
        planes = [
            _interpolate(data, masks[_RED], _RED_BLUE_KERNEL),
            _interpolate(data, masks[_GREEN], _GREEN_KERNEL),
            _interpolate(data, masks[_BLUE], _RED_BLUE_KERNEL),
        ]
    else:
        green = _directional_green(data, masks[_GREEN])
        difference: F32 = data - green
        red: F32 = green + _interpolate(difference, masks[_RED], _RED_BLUE_KERNEL)
        blue: F32 = green + _interpolate(difference, masks[_BLUE], _RED_BLUE_KERNEL)
        planes = [red, green, blue]
    return np.stack(planes, axis=-1)


def _interpolate(values: F32, mask: npt.NDArray[np.bool_], kernel: F32) -> F32:
    """Normalised convolution: the kernel-weighted mean of the masked samples around each
    pixel; zero padding outside the frame drops out of numerator and denominator alike."""
    weights = mask.astype(np.float32)
    border = cv2.BORDER_CONSTANT
    numerator = np.asarray(
        cv2.filter2D(values * weights, -1, kernel, borderType=border), dtype=np.float32
    )
    denominator = np.asarray(cv2.filter2D(weights, -1, kernel, borderType=border), np.float32)
    result: F32 = numerator / denominator
    return result


def _directional_green(data: F32, green_mask: npt.NDArray[np.bool_]) -> F32:
    """Green everywhere: measured at green sites, Hamilton-Adams interpolated elsewhere."""
    # Reflecting about the edge pixel keeps the colour of every mirrored site (offsets 1, 2).
    padded = np.pad(data, 2, mode="reflect")
    height, width = data.shape

    def at(dy: int, dx: int) -> F32:
        view: F32 = padded[2 + dy : 2 + dy + height, 2 + dx : 2 + dx + width]
        return view

    centre = data
    west, east, north, south = at(0, -1), at(0, 1), at(-1, 0), at(1, 0)
    laplace_h = 2 * centre - at(0, -2) - at(0, 2)
    laplace_v = 2 * centre - at(-2, 0) - at(2, 0)
    gradient_h = np.abs(west - east) + np.abs(laplace_h)
    gradient_v = np.abs(north - south) + np.abs(laplace_v)
    green_h = (west + east) * np.float32(0.5) + laplace_h * np.float32(0.25)
    green_v = (north + south) * np.float32(0.5) + laplace_v * np.float32(0.25)
    interpolated: F32 = np.where(
        gradient_h < gradient_v,
        green_h,
        np.where(gradient_v < gradient_h, green_v, (green_h + green_v) * np.float32(0.5)),
    )
    green: F32 = np.where(green_mask, data, interpolated)
    return green
