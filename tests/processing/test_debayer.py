"""Demosaicing with known truth: an RGB scene is mosaicked with a pattern, then rebuilt.

Both methods reproduce linear colour ramps exactly away from the border (bilinear
interpolation is exact on linear functions, and Hamilton-Adams' Laplacian corrections vanish
on them), so any mix-up of the pattern's sites shows as a large error, not a rounding one.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from processing.debayer import (
    BayerPattern,
    Demosaic,
    bayer_pattern,
    debayer,
    header_pattern,
    mosaic,
)

F32 = npt.NDArray[np.float32]
# OpenCV 5's sensor-order codes (BayerRGGB is its legacy BayerBG): the cross-check below.
OPENCV_CODES = {
    BayerPattern.RGGB: cv2.COLOR_BayerRGGB2RGB,
    BayerPattern.BGGR: cv2.COLOR_BayerBGGR2RGB,
    BayerPattern.GRBG: cv2.COLOR_BayerGRBG2RGB,
    BayerPattern.GBRG: cv2.COLOR_BayerGBRG2RGB,
}


def ramps(shape: tuple[int, int] = (40, 48)) -> F32:
    """Each channel a different plane: red rises along x, green along y, blue along both."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return np.stack([100 + 3 * x, 200 + 2 * y, 300 + x - 1.5 * y], axis=-1)


@pytest.mark.parametrize("pattern", list(BayerPattern))
@pytest.mark.parametrize("method", list(Demosaic))
def test_linear_colour_ramps_are_rebuilt_exactly(pattern: BayerPattern, method: Demosaic) -> None:
    truth = ramps()
    rgb = debayer(mosaic(truth, pattern), pattern, method)
    np.testing.assert_allclose(rgb[3:-3, 3:-3], truth[3:-3, 3:-3], atol=1e-3)


@pytest.mark.parametrize("pattern", list(BayerPattern))
def test_the_wrong_pattern_swaps_colours(pattern: BayerPattern) -> None:
    truth = np.empty((16, 16, 3), dtype=np.float32)
    truth[...] = (100.0, 200.0, 300.0)
    cfa = mosaic(truth, pattern)
    np.testing.assert_allclose(debayer(cfa, pattern)[2:-2, 2:-2], truth[2:-2, 2:-2], atol=1e-3)
    for other in BayerPattern:
        if other is not pattern:
            assert not np.allclose(debayer(cfa, other)[2:-2, 2:-2], truth[2:-2, 2:-2], atol=1.0)


@pytest.mark.parametrize("pattern", list(BayerPattern))
def test_bilinear_agrees_with_opencv_sensor_order_codes(pattern: BayerPattern) -> None:
    cfa = np.rint(mosaic(ramps() * 10, pattern)).astype(np.uint16)
    ours = debayer(cfa, pattern, Demosaic.BILINEAR)
    theirs = cv2.cvtColor(cfa, OPENCV_CODES[pattern]).astype(np.float32)
    # OpenCV rounds to integers on uint16 data: half an ADU.
    np.testing.assert_allclose(ours[2:-2, 2:-2], theirs[2:-2, 2:-2], atol=0.5 + 1e-3)


def test_edge_aware_keeps_a_sharp_grey_edge_free_of_colour() -> None:
    grey = np.where(np.arange(40)[None, :] < 19.5, 100.0, 1000.0).astype(np.float32)
    truth = np.repeat(np.repeat(grey, 40, axis=0)[..., None], 3, axis=2)
    cfa = mosaic(truth, BayerPattern.RGGB)
    edge_aware = debayer(cfa, BayerPattern.RGGB, Demosaic.EDGE_AWARE)
    bilinear = debayer(cfa, BayerPattern.RGGB, Demosaic.BILINEAR)
    inner = (slice(3, -3), slice(3, -3))
    # Along a vertical edge Hamilton-Adams interpolates green vertically (exact), and the
    # colour differences are zero: no fringes. Bilinear averages across the edge.
    np.testing.assert_allclose(edge_aware[inner], truth[inner], atol=1e-3)
    assert float(np.abs(bilinear[inner] - truth[inner]).max()) > 100.0


def test_pattern_offsets_follow_the_fits_keywords() -> None:
    assert bayer_pattern("rggb") is BayerPattern.RGGB
    assert bayer_pattern("RGGB", x_offset=1) is BayerPattern.GRBG
    assert bayer_pattern("RGGB", y_offset=1) is BayerPattern.GBRG
    assert bayer_pattern("RGGB", x_offset=1, y_offset=1) is BayerPattern.BGGR
    assert bayer_pattern("GBRG", x_offset=2, y_offset=3) is BayerPattern.RGGB
    with pytest.raises(ValueError, match="unknown Bayer pattern"):
        bayer_pattern("RGBG")


def test_a_header_names_its_pattern_with_the_readout_offsets() -> None:
    assert header_pattern({}) is None
    assert header_pattern({"BAYERPAT": " "}) is None
    assert header_pattern({"BAYERPAT": "rggb "}) is BayerPattern.RGGB
    assert header_pattern({"BAYERPAT": "RGGB", "XBAYROFF": 1, "YBAYROFF": 0}) is BayerPattern.GRBG
    assert header_pattern({"BAYERPAT": "RGGB", "YBAYROFF": 1.0}) is BayerPattern.GBRG
    with pytest.raises(ValueError, match=r"BAYERPAT 'CYGM' .*RGGB, BGGR, GRBG or GBRG"):
        header_pattern({"BAYERPAT": "CYGM"})
    with pytest.raises(ValueError, match=r"XBAYROFF 0\.5 is not a whole number"):
        header_pattern({"BAYERPAT": "RGGB", "XBAYROFF": 0.5})
    for odd in (float("inf"), float("nan"), "1", True):
        with pytest.raises(ValueError, match=r"YBAYROFF .* is not a whole number"):
            header_pattern({"BAYERPAT": "RGGB", "YBAYROFF": odd})


def test_odd_frames_are_refused_and_inputs_kept() -> None:
    with pytest.raises(ValueError, match="even"):
        debayer(np.zeros((5, 6), dtype=np.float32), BayerPattern.RGGB)
    cfa = mosaic(ramps(), BayerPattern.GRBG)
    copy = cfa.copy()
    for method in Demosaic:
        debayer(cfa, BayerPattern.GRBG, method)
    np.testing.assert_array_equal(cfa, copy)
