"""`nightowl process`: frame-rejection options, warnings on stderr and ``--strict``, on a
small synthetic night (8 lights of one target, no calibration frames)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from pydantic import ValidationError

from daemon.__main__ import main
from daemon.processing_options import ProcessingOptions, recipe_pipeline_config
from processing import synthetic
from processing.drizzle import DrizzleConfig
from processing.local_norm import LocalNormConfig
from processing.recipe import IntegrateStep, Recipe
from processing.subframes import SubframeRules
from tests.helpers import SMALL_SESSION

ONE = ["--threads", "1"]
"""Small frames: one process, no worker start-up to pay."""


@pytest.fixture(scope="module")
def lights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("night")
    synthetic.write_session(folder, SMALL_SESSION, target="M 42")
    return folder / "lights"


def process(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_status:
        main(["process", *argv])
    code = exit_status.value.code
    assert isinstance(code, int)
    return code


def test_strict_fails_a_group_that_kept_fewer_than_half_but_writes_it(
    lights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    # No light has 100000 stars: all fail the absolute limit, and the best-weighted one is
    # integrated all the same so the night still gives a result.
    code = process(
        [str(lights), "--out", str(out), "--min-stars", "100000", "--strict", "--json", *ONE]
    )
    captured = capsys.readouterr()
    assert code == 1, captured.err
    report = json.loads(captured.out)
    (group,) = report["groups"]
    assert group["integrated"] == 1
    warning = "M 42_L: only 1 of 8 lights integrated (7 rejected)"
    assert group["warnings"][0].startswith(warning)
    assert report["warnings"] == group["warnings"]
    rejected = [frame for frame in group["frames"] if not frame["accepted"]]
    assert len(rejected) == 7
    for frame in rejected:
        assert frame["reason"].startswith("stars "), frame
        assert frame["reason"].endswith("< minimum 100000"), frame
    assert f"nightowl process: --strict: {warning}" in captured.err
    assert Path(group["outputs"]["fits"]).is_file()  # written before the failure


def test_copies_are_reported_and_the_warning_goes_to_stderr(
    lights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two lights and three copies of them (a simulator's cached frames): two integrated,
    a warning, and without --strict the exit status is still 0."""
    folder = tmp_path / "copies"
    folder.mkdir()
    originals = sorted(lights.glob("*.fit"))[:2]
    for path in originals:
        shutil.copy(path, folder)
    for index, source in enumerate((originals[0], originals[1], originals[0])):
        shutil.copy(source, folder / f"zcopy_{index}.fit")
    code = process([str(folder), "--out", str(tmp_path / "out"), *ONE])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "M 42_L: 2 of 5 lights integrated" in captured.out
    assert f"rejected zcopy_2.fit: duplicate of {originals[0].name}" in captured.out
    assert (
        "nightowl process: warning: M 42_L: only 2 of 5 lights integrated (3 duplicates)"
        in captured.err
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--reject-sigma", "0"], "--reject-sigma: Input should be greater than 0"),
        (["--max-eccentricity", "1.5"], "--max-eccentricity: Input should be less than or equal"),
        (["--min-stars", "-1"], "--min-stars: Input should be greater than or equal to 0"),
        (["--min-weight", "1"], "--min-weight: Input should be less than 1"),
        (["--drizzle", "4"], "--drizzle: Input should be less than or equal to 3"),
        (["--pixfrac", "0"], "--pixfrac: Input should be greater than or equal to 0.1"),
        (["--ln-tile-px", "8"], "--ln-tile-px: Input should be greater than or equal to 32"),
    ],
)
def test_bad_rejection_options_name_the_option(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert process([str(tmp_path), "--out", str(tmp_path / "out"), *argv]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_options_carry_the_rules_into_the_pipeline() -> None:
    options = ProcessingOptions(
        reject_sigma=2.5, min_weight=0.1, max_eccentricity=0.8, max_fwhm_px=6.0, min_stars=20
    )
    rules = options.pipeline_config().subframes
    assert rules == SubframeRules(
        reject_sigma=2.5, min_weight=0.1, max_eccentricity=0.8, max_fwhm_px=6.0, min_stars=20
    )
    assert ProcessingOptions().pipeline_config().subframes == SubframeRules()
    with pytest.raises(ValidationError) as error:
        ProcessingOptions(max_fwhm_px=0)
    assert error.value.errors()[0]["loc"] == ("max_fwhm_px",)


def test_drizzle_and_local_normalization_end_to_end(
    lights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["--drizzle", "2", "--pixfrac", "0.8", "--local-normalization", "--ln-tile-px", "64"]
    code = process([str(lights), "--out", str(out), *argv, "--linear-only", "--json", *ONE])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (group,) = json.loads(captured.out)["groups"]
    y0, y1, x0, x1 = group["crop_yx"]
    with fits.open(group["outputs"]["fits"]) as hdul:
        image = hdul[0].data
        history = [str(line) for line in hdul[0].header["HISTORY"]]
    # The crop is the 1x stack's, scaled: even bounds on a grid twice as fine.
    assert image.shape == (y1 - y0, x1 - x0)
    assert all(v % 2 == 0 for v in (y0, y1, x0, x1))
    assert np.isfinite(image).all()
    assert "local normalization: tiles of 64 px" in history
    assert any(line.startswith("drizzle: scale 2, pixfrac 0.8, square kernel") for line in history)
    with fits.open(group["outputs"]["rejection_high"]) as hdul:
        assert hdul[0].data.shape == image.shape


def test_drizzle_and_local_normalization_options_reach_the_pipeline() -> None:
    plain = ProcessingOptions().pipeline_config()
    assert plain.drizzle is None
    assert plain.local_normalization is None
    recipe = Recipe(
        steps=(IntegrateStep(drizzle=3, pixfrac=0.7, local_normalization=True, ln_tile_px=128),)
    )
    config = recipe_pipeline_config(ProcessingOptions(drizzle=2), recipe)
    assert config.drizzle == DrizzleConfig(scale=3, pixfrac=0.7)
    assert config.local_normalization == LocalNormConfig(tile_px=128)
    with pytest.raises(ValidationError) as error:
        IntegrateStep(drizzle=4)
    assert error.value.errors()[0]["loc"] == ("drizzle",)
