"""`nightowl solve` on real images that are not FITS, and astrometry.net's scale-free search
on a real small field: the other people's images in ../shared/realdata with known solutions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import fit_wcs_from_points

from daemon.__main__ import main
from processing import astrometry_net
from processing.io import read_image_for_solving
from processing.solve import separation_deg
from tests.realdata import REALDATA

REAL = REALDATA
TETRA3 = REAL / "solved_sky" / "tetra3_esa"
FIELD = "2019-07-29T204726_Alt40_Azi-135_Try1"
SEESTAR = REAL / "seestar" / "M94_night1_2025-03-26" / "Light_M 94_10.0s_IRCUT_20250326-212046.fit"
# The realdata README's solution of this night: 2.37 "/px.
SEESTAR_CENTRE_DEG = (192.7775, 41.1168)


@pytest.mark.skipif(not TETRA3.is_dir(), reason=f"real star-tracker images absent: {TETRA3}")
@pytest.mark.filterwarnings("ignore:The WCS transformation has more axes")  # a header-only .wcs
def test_png_solves_upright_and_gets_wcs_and_new_sidecars(
    tmp_path: Path,
    catalog_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A real 11 deg star-tracker frame as a 16-bit PNG: solved with the photo's rows flipped,
    its .wcs and .new agree with astrometry.net's own solution of the same frame."""
    tiff = cv2.imread(str(TETRA3 / f"{FIELD}.tiff"), cv2.IMREAD_UNCHANGED)
    png = tmp_path / "tracker.png"
    assert cv2.imwrite(str(png), tiff)
    monkeypatch.setenv("NIGHTOWL_CACHE_DIR", str(catalog_cache))
    # The scale is given so that the test builds a 7 MB database in ~1 s.
    main(["solve", str(png), "--json", "--write-wcs", "--scale-low", "36", "--scale-high", "44"])

    result = json.loads(capsys.readouterr().out)
    assert result["parity"] == "normal"  # a photo of the sky, not a mirror image
    truth = WCS(fits.getheader(TETRA3 / "astrometry_net_wcs" / f"{FIELD}.wcs"))
    height, width = tiff.shape
    sidecar = fits.getheader(tmp_path / "tracker.wcs")
    assert (sidecar["IMAGEW"], sidecar["IMAGEH"], sidecar["NAXIS"]) == (width, height, 0)
    new_data, new_header = fits.getdata(tmp_path / "tracker.new", header=True)
    np.testing.assert_array_equal(new_data, tiff[::-1])  # rows in FITS order, values kept
    # Corners and centre agree with astrometry.net's SIP solution within 3 px (120"): our WCS
    # is a plain TAN, and this 11 deg lens distorts by ~2 px at the corners; rows in the wrong
    # order would put the corners degrees away.
    points = np.array(
        [[0, 0], [width - 1, 0], [0, height - 1], [(width - 1) / 2, (height - 1) / 2]]
    )
    for wcs in (WCS(sidecar), WCS(new_header)):
        ours = wcs.all_pix2world(points, 0)
        theirs = truth.all_pix2world(points, 0)
        errors = [separation_deg(*a, *b) * 3600 for a, b in zip(ours, theirs, strict=True)]
        assert max(errors) < 120, errors


@pytest.mark.skipif(not SEESTAR.is_file(), reason=f"real Seestar frame absent: {SEESTAR}")
@pytest.mark.skipif(
    not astrometry_net.available(), reason="astrometry.net not installed: run `make solver`"
)
def test_scale_free_astrometry_net_solves_a_real_small_field() -> None:
    """A 0.71 x 1.27 deg Bayer frame, binned 2x2, with no scale and no position: too small for
    the bundled catalog, solved by solve-field with the Tycho-2 indexes (~9 s)."""
    frame = read_image_for_solving(SEESTAR)
    pairs = astrometry_net.match_stars(frame.pixels, hint_deg=None, timeout_s=90)

    assert len(pairs.x_px) >= 10
    wcs = fit_wcs_from_points(
        (pairs.x_px, pairs.y_px),
        SkyCoord(pairs.ra_deg, pairs.dec_deg, unit="deg"),
        projection="TAN",
    )
    height, width = frame.pixels.shape
    ra, dec = wcs.all_pix2world([[(width - 1) / 2, (height - 1) / 2]], 0)[0]
    # The README's centre is given to 0.0001 deg (0.4"); the fit is good to a fraction of a
    # 4.7" superpixel: 10" is a pixel or two.
    assert separation_deg(ra, dec, *SEESTAR_CENTRE_DEG) * 3600 < 10
    scale_arcsec = math.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))) * 3600
    assert scale_arcsec == pytest.approx(2 * 2.37, rel=0.01)
