"""Solving frames of unknown scale, small fields, the failure report and the database cache.

The frame is the synthetic field of `test_solve` (the simulator's camera through a WCS of our
choosing, 3.44 "/px, 2.0 deg wide), solved with no scale against the one multi-scale
database, and the same frame binned 2 x 2 (6.9 "/px): two scales, one database, no options.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from daemon.__main__ import main
from processing.catalog import star_catalog_sqlite
from processing.finish import plate_solver
from processing.io import encode_fits
from processing.solve import (
    BLIND_FOV,
    Engine,
    FieldTooSmall,
    NoMatch,
    Parity,
    ScaleRange,
    SolveConfig,
    ensure_database,
    evict_databases,
    load_database,
    separation_deg,
    solve,
)
from tests.processing.test_solve import SCALE_ARCSEC_PX, render_field, truth_wcs

RA_DEG, DEC_DEG, ROTATION_DEG = 150.2, 28.4, 112.0
NO_FALLBACK = SolveConfig(engines=(Engine.TETRA3RS,))


@pytest.fixture(scope="module")
def blind_cache(catalog_cache: Path) -> Path:
    """The multi-scale database, built once per checkout (see `expected_build_s`)."""
    load_database(ensure_database(catalog_cache, BLIND_FOV))
    return catalog_cache


@pytest.fixture(scope="module")
def field(catalog_cache: Path) -> npt.NDArray[np.uint16]:
    truth = truth_wcs(RA_DEG, DEC_DEG, ROTATION_DEG, mirrored=True)
    return render_field(star_catalog_sqlite(catalog_cache), truth, seed=7)


def bin2(image: npt.NDArray[np.uint16]) -> npt.NDArray[np.float32]:
    """2 x 2 sum: the binned frame's centre pixel sees the same sky as the full frame's."""
    height, width = image.shape
    blocks = image.astype(np.float32).reshape(height // 2, 2, width // 2, 2)
    binned: npt.NDArray[np.float32] = blocks.sum(axis=(1, 3), dtype=np.float32)
    return binned


@pytest.mark.parametrize("binning", [1, 2])
def test_frame_of_unknown_scale_solves(
    blind_cache: Path, field: npt.NDArray[np.uint16], binning: int
) -> None:
    image = field if binning == 1 else bin2(field)

    solution = solve(image, scale=None, cache_dir=blind_cache, config=NO_FALLBACK)

    # Known-scale solves of such fields are within 0.4" (test_solve); the blind one ends in
    # the same least-squares fit to its matched stars, so the bound is that plus a margin
    # of 1/4 of the binned pixel for a star the blind search matched or missed.
    error_arcsec = 3600 * separation_deg(RA_DEG, DEC_DEG, solution.ra_deg, solution.dec_deg)
    assert error_arcsec < 0.4 + 0.25 * SCALE_ARCSEC_PX * binning
    np.testing.assert_allclose(solution.scale_arcsec_px, SCALE_ARCSEC_PX * binning, rtol=1e-3)
    assert abs((solution.rotation_deg - ROTATION_DEG + 180.0) % 360.0 - 180.0) < 0.05
    assert solution.parity is Parity.FLIPPED
    assert solution.seconds < 5.0  # bound of a busy machine; the bench measures ~0.1-0.3 s


def test_cli_solves_a_fits_without_focallen_with_no_options(
    blind_cache: Path,
    field: npt.NDArray[np.uint16],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NIGHTOWL_CACHE_DIR", str(blind_cache))
    monkeypatch.delenv("NIGHTOWL_SOLVER_CACHE_DIR", raising=False)
    frame = tmp_path / "bare.fits"
    frame.write_bytes(encode_fits(field, [("IMAGETYP", "LIGHT", ""), ("FOCALLEN", 0.0, "")]))

    main(["solve", str(frame), "--json"])

    result = json.loads(capsys.readouterr().out)
    error_arcsec = 3600 * separation_deg(RA_DEG, DEC_DEG, result["ra_deg"], result["dec_deg"])
    assert error_arcsec < 0.4 + 0.25 * SCALE_ARCSEC_PX
    assert result["engine"] == "tetra3rs"


def test_small_field_tries_astrometry_net_first_and_names_each_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 0.28 deg field (0.29 rounded out): astrometry.net (a stand-in that finds nothing)
    runs first, tetra3rs refuses before building a database, and the error names both;
    without astrometry.net the field's size is the reason."""
    called = tmp_path / "called"
    script = tmp_path / "solve-field"
    script.write_text(f"#!/bin/sh\ntouch {called}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    cache = tmp_path / "cache"
    image = np.zeros((512, 512), np.uint16)

    with pytest.raises(NoMatch) as failure:
        solve(image, scale=ScaleRange(1.8, 2.0), cache_dir=cache)

    assert called.exists()
    assert str(failure.value) == "astrometry.net: solve-field found no solution"
    [note] = failure.value.__notes__
    assert note.startswith("tetra3rs: a field of at most 0.29 deg is narrower than the 0.7")
    assert not cache.exists()

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FieldTooSmall) as too_small:
        solve(image, scale=ScaleRange(1.8, 2.0), cache_dir=cache)
    assert too_small.value.reason == "field_too_small"
    assert too_small.value.__notes__ == [
        "astrometry.net: solve-field is not installed "
        "(Debian: astrometry.net and astrometry-data-tycho2-*)"
    ]


def test_cache_keeps_its_bound_removing_the_least_recently_used(tmp_path: Path) -> None:
    names = [f"tetra3rs-test-fov{i}.bin" for i in range(4)]
    for age, name in enumerate(names):  # names[0] used last, names[3] first
        path = tmp_path / name
        path.write_bytes(b"x" * 1000)
        os.utime(path, (1_000_000 - age * 100, 1_000_000 - age * 100))
    other = tmp_path / "gaia-dr3.db"
    other.write_bytes(b"x" * 5000)
    in_use = tmp_path / names[3]

    removed = evict_databases(tmp_path, max_bytes=2500, keep=in_use)

    # 4000 bytes of databases over a 2500 bound: the oldest (in use) stays, the next two go.
    assert sorted(p.name for p in removed) == sorted([names[2], names[1]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names[0], names[3], other.name])
    assert evict_databases(tmp_path, max_bytes=2500, keep=in_use) == []


def test_a_master_without_focallen_is_solved_for_its_colour_calibration(
    blind_cache: Path, field: npt.NDArray[np.uint16]
) -> None:
    """A master stacked from another program's frames has no FOCALLEN/XPIXSZ; the finishing
    steps' solver searches every field size instead of giving up."""
    wcs = plate_solver(blind_cache)(field.astype(np.float32), {"OBJECT": "M 81"})

    ra_deg, dec_deg = wcs.pixel_to_world_values((field.shape[1] - 1) / 2, (field.shape[0] - 1) / 2)
    # As the blind solve above: within 0.4" plus a quarter pixel of the true centre.
    error_arcsec = 3600 * separation_deg(RA_DEG, DEC_DEG, float(ra_deg), float(dec_deg))
    assert error_arcsec < 0.4 + 0.25 * SCALE_ARCSEC_PX
