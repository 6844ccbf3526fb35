"""`nightowl finish` and `nightowl recipe` on a small colour master with stars and a gradient."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from daemon.__main__ import main
from processing import synthetic
from processing.io import encode_fits


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linear RGB master in ADU: sky with a gradient and a slight colour cast, 80 stars."""
    rng = np.random.default_rng(3)
    shape = (200, 260)
    stars = synthetic.random_star_field(rng, shape, 80, (2e3, 2e5), margin_px=5)
    light = synthetic.render_stars(shape, stars.yx, stars.flux_e, 1.6)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    sky = 600.0 + 0.8 * xx + 0.4 * yy
    planes = np.stack(
        [(light + sky) * gain + rng.normal(0, 12, shape) for gain in (1.1, 1.0, 0.85)]
    ).astype(np.float32)
    path = tmp_path_factory.mktemp("master") / "M_42.fits"
    path.write_bytes(encode_fits(planes, [("OBJECT", "M 42", "target")], ["test master"]))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as caught:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(caught.value.code or 0), out, err


def test_finish_writes_the_picture_and_redoes_it_from_its_recipe(
    master: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "finish", str(master), "--out", str(tmp_path / "a"), "--json")
    assert code == 0
    summary = json.loads(out)
    final = Path(summary["outputs"]["fits"])
    assert final.name == "M_42_final.fits"
    assert Path(summary["outputs"]["jpeg"]).is_file()
    code, _, _ = run(
        capsys, "finish", str(master), "--out", str(tmp_path / "b"), "--recipe-from", str(final)
    )
    assert code == 0
    np.testing.assert_array_equal(
        fits.getdata(tmp_path / "b" / "M_42_final.fits"), fits.getdata(final)
    )


def test_recipe_default_is_editable_and_a_bad_edit_names_the_field(
    master: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "recipe", "default")
    assert code == 0
    recipe = json.loads(out)
    recipe["steps"][6]["degree"] = 9
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(recipe))
    code, _, err = run(capsys, "recipe", "check", str(bad))
    assert code == 1
    assert "steps[6].degree" in err
    assert "le 4" in err
    code, _, err = run(capsys, "finish", str(master), "--out", str(tmp_path), "--recipe", str(bad))
    assert code == 1
    assert "steps[6].degree" in err
    assert not (tmp_path / "M_42_final.fits").exists()


def test_finish_of_a_file_that_is_not_a_master_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.fits"
    text.write_text("not a FITS file")
    code, _, err = run(capsys, "finish", str(text), "--out", str(tmp_path / "out"))
    assert code == 1
    assert "notes.fits" in err
