"""`nightowl solve` on a simulator frame written as a FITS file with Nightowl's header cards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from daemon.__main__ import main
from drivers.base import RaDec
from drivers.equipment import Equipment
from processing.io import FitsCard, encode_fits, read_fits
from processing.solve import FovRange, ScaleRange, ensure_database, separation_deg
from processing.stars import plate_scale_arcsec_px

TARGET = RaDec(5.5, 22.0)  # near the Crab nebula, a star-rich Milky Way field
HEADER: list[FitsCard] = [
    ("IMAGETYP", "LIGHT", ""),
    ("XBINNING", 1, ""),
    ("XPIXSZ", 10.0, "[um] binned pixel width"),
    ("FOCALLEN", 600.0, "[mm] focal length"),
]


@pytest.fixture(scope="module")
def cache_dir(catalog_cache: Path) -> Path:
    """The pattern database for the simulator's camera, built once per checkout (~20 s)."""
    ensure_database(
        catalog_cache,
        FovRange.for_frames(ScaleRange.around(plate_scale_arcsec_px(10.0, 600.0)), 2048),
    )
    return catalog_cache


@pytest.fixture(scope="module")
async def light(equipment: Equipment) -> np.ndarray:
    """A 1 s light with the mount synced to TARGET (placed instantly, as in the solver tests)."""
    mount, camera = equipment.mount, equipment.camera
    assert mount is not None
    assert camera is not None
    if (await mount.status()).at_park:
        await mount.unpark()
    await mount.set_tracking(True)
    await mount.sync(TARGET)
    return (await camera.expose(1.001, light=True)).data


def write_frame(path: Path, data: np.ndarray, cards: list[FitsCard]) -> Path:
    path.write_bytes(encode_fits(data, cards, ["captured by a test"]))
    return path


def test_solve_prints_json_and_writes_the_wcs(
    light: np.ndarray, cache_dir: Path, tmp_path: Path
) -> None:
    frame = write_frame(tmp_path / "light.fits", light, HEADER)
    environment = {**os.environ, "NIGHTOWL_CACHE_DIR": str(cache_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "solve", str(frame), "--json", "--write-wcs"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) >= {
        "ra_deg", "dec_deg", "scale_arcsec_px", "rotation_deg", "parity", "matched",
        "residual_arcsec", "seconds",
    }  # fmt: skip
    error_arcsec = 3600 * separation_deg(
        TARGET.ra_deg, TARGET.dec_deg, result["ra_deg"], result["dec_deg"]
    )
    assert error_arcsec < 5.0
    assert result["parity"] == "flipped"
    assert 0 < result["seconds"] < 1.0

    data, cards = read_fits(frame)
    np.testing.assert_array_equal(data, light)
    assert cards["FOCALLEN"] == 600.0
    assert cards["HISTORY"][0] == "captured by a test"
    assert "Nightowl plate solve" in cards["HISTORY"][-1]
    wcs = WCS(fits.getheader(frame))
    ra, dec = wcs.pixel_to_world_values(1023.5, 767.5)
    assert 3600 * separation_deg(result["ra_deg"], result["dec_deg"], float(ra), float(dec)) < 0.01


def test_solve_of_a_bare_header_takes_the_scale_options(
    light: np.ndarray,
    cache_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without FOCALLEN the scale is searched (tests/processing/test_solve_blind.py); given,
    it picks the camera's database."""
    monkeypatch.setenv("NIGHTOWL_CACHE_DIR", str(cache_dir))
    frame = write_frame(tmp_path / "bare.fits", light, [("IMAGETYP", "LIGHT", "")])
    with pytest.raises(SystemExit) as exit_:
        main(["solve", str(frame), "--scale-low", "2.75"])
    assert "give --scale-low and --scale-high together" in str(exit_.value.code)

    # The range of the fixture's database (3.44 "/px +- 20 %): no second database to build.
    main(["solve", str(frame), "--scale-low", "2.75", "--scale-high", "4.125"])
    assert "scale     3.43" in capsys.readouterr().out


def test_solve_outside_the_hint_fails_with_the_reason(
    light: np.ndarray,
    cache_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NIGHTOWL_CACHE_DIR", str(cache_dir))
    frame = write_frame(tmp_path / "light.fits", light, HEADER)
    before = frame.read_bytes()
    hint = ["--ra", "120", "--dec", "22", "--radius", "3"]
    with pytest.raises(SystemExit) as exit_:
        main(["solve", str(frame), *hint, "--json", "--write-wcs"])
    assert "from the hint (radius 3 deg)" in str(exit_.value.code)
    assert json.loads(capsys.readouterr().out)["reason"] == "outside_hint"
    assert frame.read_bytes() == before
