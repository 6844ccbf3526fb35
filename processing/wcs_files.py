"""A plate solution in the solved file's own pixels, and solve-field's two sidecar files.

The solver sees `processing.io.SolveImage.pixels`, which is a Bayer mosaic's 2 x 2 superpixels;
`in_file_pixels` turns such a solution back into the file's pixels. For an image that is not
FITS, ``--write-wcs`` writes what astrometry.net's solve-field writes: ``<stem>.wcs``, a
header-only FITS file with the WCS and IMAGEW/IMAGEH, and ``<stem>.new``, a FITS copy of the
image with the WCS in its header. Both use the FITS pixel grid of `SolveImage.image` (photos
and XISF flipped so the first row is the bottom one: see `SolveImage.rows_flipped`).
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import numpy as np
from astropy.io import fits

from processing.io import SolveImage, encode_fits
from processing.solve import ARCSEC_PER_DEG, Solution, fits_with_wcs


def in_file_pixels(solution: Solution, binning: int, shape: tuple[int, int]) -> Solution:
    """`solution` of an image binned `binning` x `binning` as that of the file's `shape`
    (height, width) pixels: scale and CD divided by `binning`, reference pixel moved onto the
    file's grid, centre recomputed at the file's centre pixel. Unchanged for `binning` 1."""
    if binning == 1:
        return solution
    height, width = shape
    wcs = solution.wcs.deepcopy()
    # Binned pixel p (1-based) covers file pixels binning * (p - 1) + 1 ... binning * p.
    wcs.wcs.crpix = binning * np.asarray(wcs.wcs.crpix) - (binning - 1) / 2
    wcs.wcs.cd = np.asarray(wcs.wcs.cd) / binning
    wcs.pixel_shape = (width, height)
    ra_deg, dec_deg = wcs.all_pix2world([[(width - 1) / 2, (height - 1) / 2]], 0)[0]
    wcs.wcs.crval = [ra_deg, dec_deg]
    wcs.wcs.crpix = [(width + 1) / 2, (height + 1) / 2]
    return dataclasses.replace(
        solution,
        ra_deg=float(ra_deg),
        dec_deg=float(dec_deg),
        scale_arcsec_px=math.sqrt(abs(np.linalg.det(wcs.wcs.cd))) * ARCSEC_PER_DEG,
        wcs=wcs,
    )


def sidecar_paths(path: Path) -> tuple[Path, Path]:
    """``<stem>.wcs`` and ``<stem>.new`` beside `path`, as solve-field names them."""
    return path.with_suffix(".wcs"), path.with_suffix(".new")


def wcs_file(solution: Solution, shape: tuple[int, int]) -> bytes:
    """A header-only FITS file (no data) holding the WCS and the image's IMAGEW/IMAGEH."""
    height, width = shape
    header = fits.Header()
    header["IMAGEW"] = (width, "image width, px")
    header["IMAGEH"] = (height, "image height, px")
    for keyword, value, comment in solution.fits_cards():
        header[keyword] = (value, comment)
    buffer = io.BytesIO()
    fits.PrimaryHDU(header=header).writeto(buffer)
    return buffer.getvalue()


def fits_copy(image: SolveImage, solution: Solution, source_name: str) -> bytes:
    """`image` as a FITS file with the WCS of `solution` (in file pixels) in its header."""
    name = source_name.encode("ascii", "replace").decode("ascii")
    history = [f"converted from the {image.file_format.upper()} file {name}"]
    if image.rows_flipped:
        history.append("rows reversed: the first row is the picture's bottom row")
    return fits_with_wcs(encode_fits(image.image, [], history), solution)
