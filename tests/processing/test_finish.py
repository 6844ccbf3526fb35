"""Finishing: the default recipe turns the pipeline's synthetic colour master into a picture.

The master is the small synthetic night of `tests.helpers.SMALL_SESSION` taken through an
RGGB mosaic (a grey sky and grey stars), calibrated, registered and integrated by the
pipeline: what a night of a one-shot-colour camera hands over in the morning.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from processing import synthetic
from processing.finish import FinishError, finish, load_master, recipe_of_output, render_preview
from processing.grouping import group_frames
from processing.io import encode_fits
from processing.pipeline import run_pipeline, scan_folder
from processing.recipe import default_recipe, parse_recipe
from processing.stars import StarConfig, detect_stars
from tests.helpers import SMALL_SESSION


@pytest.fixture(scope="module")
def colour_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("osc")
    synthetic.write_session(folder / "night", SMALL_SESSION, target="M 42", bayer_pattern="RGGB")
    (group,) = run_pipeline(group_frames(scan_folder(folder / "night")[0]), folder / "out").groups
    return group.outputs["fits"]


@pytest.fixture(scope="module")
def finished(colour_master: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    before = hashlib.sha256(colour_master.read_bytes()).hexdigest()
    master = load_master(colour_master)
    pixels = master.image.copy()
    result = finish([master], default_recipe(), tmp_path_factory.mktemp("finished"))
    np.testing.assert_array_equal(master.image, pixels)  # the input is never modified
    assert hashlib.sha256(colour_master.read_bytes()).hexdigest() == before
    return {"result": result, "master": master}


def test_the_default_recipe_gives_a_neutral_unclipped_picture(finished: dict[str, object]) -> None:
    result = finished["result"]
    master = finished["master"]
    picture = fits.getdata(result.outputs["fits"]).astype(np.float64)  # type: ignore[attr-defined]
    assert picture.shape[0] == 3
    # Neutral background: the channels' medians (the sky covers most pixels) agree to 1 %.
    medians = np.median(picture.reshape(3, -1), axis=1)
    np.testing.assert_allclose(medians, medians.mean(), rtol=0.01)
    assert 0.05 < medians.mean() < 0.5
    # Under 0.1 % of pixels crushed to black.
    black = np.mean(np.all(picture <= 0.0, axis=0))
    assert black < 0.001
    # Star cores: no unsaturated star of the linear master is clipped to white beyond its
    # brightest pixel.
    linear = master.image.mean(axis=2)  # type: ignore[attr-defined]
    final = picture.mean(axis=0)
    crop = _crop_of(result)
    stars = detect_stars(linear, StarConfig(max_stars=30))
    checked = 0
    for y, x in zip(stars.y, stars.x, strict=True):
        cy, cx = round(y) - crop[0], round(x) - crop[1]
        if not (3 <= cy < final.shape[0] - 3 and 3 <= cx < final.shape[1] - 3):
            continue
        if linear[round(y) - 2 : round(y) + 3, round(x) - 2 : round(x) + 3].max() > 0.9:
            continue  # saturated already in the linear data
        core = final[cy - 2 : cy + 3, cx - 2 : cx + 3]
        assert np.count_nonzero(core >= 0.999) <= 1
        checked += 1
    assert checked >= 10


def test_every_step_leaves_a_preview_and_the_outputs_carry_the_recipe(
    finished: dict[str, object], tmp_path: Path
) -> None:
    result = finished["result"]
    summary = result.summary()  # type: ignore[attr-defined]
    kinds = [step["kind"] for step in summary["steps"]]
    assert kinds == [step.kind for step in default_recipe().finishing()]
    for step in summary["steps"][:-1]:
        preview = Image.open(Path(step["preview"]))
        assert preview.format == "JPEG"
    outputs = result.outputs  # type: ignore[attr-defined]
    for kind in ("fits", "xisf", "tiff", "jpeg", "web", "recipe", "proxy", "background_model"):
        assert outputs[kind].is_file(), kind
    samples = json.loads(outputs["background_samples"].read_text())
    assert len(samples) >= 20
    header = fits.getheader(outputs["fits"])
    assert header["NOWLRCP"] == default_recipe().digest()
    assert any("step 2" in str(line) for line in header["HISTORY"])
    assert recipe_of_output(outputs["fits"]) == default_recipe()


def test_the_recipe_of_an_output_redoes_it_exactly(
    finished: dict[str, object], colour_master: Path, tmp_path: Path
) -> None:
    result = finished["result"]
    recipe = recipe_of_output(result.outputs["fits"])  # type: ignore[attr-defined]
    again = finish([load_master(colour_master)], recipe, tmp_path)
    np.testing.assert_array_equal(
        fits.getdata(again.outputs["fits"]),
        fits.getdata(result.outputs["fits"]),  # type: ignore[attr-defined]
    )


def test_a_preview_of_other_stretch_settings_comes_from_the_proxy(
    finished: dict[str, object],
) -> None:
    result = finished["result"]
    proxy = result.outputs["proxy"]  # type: ignore[attr-defined]
    data = json.loads(json.dumps(default_recipe().model_dump(mode="json")))
    darker = render_preview(proxy, parse_recipe(data))
    for step in data["steps"]:
        if step["kind"] == "stretch_stf":
            step["target_background"] = 0.4
    brighter = render_preview(proxy, parse_recipe(data))
    dark = np.asarray(Image.open(io.BytesIO(darker)), dtype=np.float64)
    bright = np.asarray(Image.open(io.BytesIO(brighter)), dtype=np.float64)
    assert np.median(bright) > np.median(dark) + 20


def test_several_masters_need_a_combine_step(colour_master: Path, tmp_path: Path) -> None:
    master = load_master(colour_master)
    recipe = parse_recipe({"steps": [{"kind": "stretch_stf"}]})
    with pytest.raises(FinishError, match="combine step"):
        finish([master, master], recipe, tmp_path)


def _crop_of(result: object) -> tuple[int, int]:
    """Rows and columns the crop step cut from the top and left."""
    for step in result.summary()["steps"]:  # type: ignore[attr-defined]
        for note in step["notes"]:
            if note.startswith("crop: rows"):
                rows, cols = note.removeprefix("crop: rows ").split(", columns ")
                return int(rows.split(":")[0]), int(cols.split(":")[0])
    return 0, 0


def test_a_mono_master_becomes_a_grey_picture_with_the_default_recipe(
    colour_master: Path, tmp_path: Path
) -> None:
    data = fits.getdata(colour_master).astype(np.float32).mean(axis=0)
    mono = tmp_path / "mono.fits"
    mono.write_bytes(encode_fits(data, [("OBJECT", "M 42", ""), ("FILTER", "L", "")], []))
    result = finish([load_master(mono)], default_recipe(), tmp_path / "out")
    picture = fits.getdata(result.outputs["fits"])
    assert picture.ndim == 2
    assert 0.05 < float(np.median(picture)) < 0.5
    notes = " ".join(result.notes)
    assert "one L master" in notes
    assert "no colour curves" in notes


def test_mono_masters_a_dither_apart_are_aligned_and_combined_into_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    shape = (240, 320)
    stars = synthetic.random_star_field(rng, shape, 70, (3e3, 1e5), margin_px=20)
    colour_of = {"R": 1.2, "G": 1.0, "B": 0.8}
    shift_yx = {"R": (0.0, 0.0), "G": (3.3, -2.1), "B": (-1.7, 4.4)}  # G and B: another light
    paths = []
    for name, gain in colour_of.items():
        yx = stars.yx + np.array(shift_yx[name])
        plane = synthetic.render_stars(shape, yx, stars.flux_e * gain, 1.5) + 500.0
        plane += rng.normal(0.0, 5.0, shape)
        path = tmp_path / f"{name}.fits"
        cards = [("OBJECT", "M 1", ""), ("FILTER", name, "")]
        path.write_bytes(encode_fits(plane.astype(np.float32), cards, []))
        paths.append(path)
    masters = [load_master(p) for p in paths]
    recipe = parse_recipe({"steps": [{"kind": "combine"}, {"kind": "export", "formats": ["fits"]}]})
    result = finish(masters, recipe, tmp_path / "out")
    notes = " ".join(result.notes)
    assert "combined RGB from B, G, R" in notes
    assert "G aligned to R" in notes
    assert "B aligned to R" in notes
    rgb = fits.getdata(result.outputs["fits"]).astype(np.float32)
    red = detect_stars(rgb[0], StarConfig(max_stars=30))
    for channel in (1, 2):
        other = detect_stars(rgb[channel], StarConfig(max_stars=30))
        # Every bright star of R has its G and B counterparts on the same pixel: the
        # registration is good to hundredths of a pixel on such stars, 0.15 px allows noise.
        for y, x in zip(red.y[:10], red.x[:10], strict=True):
            distance = np.hypot(other.y - y, other.x - x).min()
            assert distance < 0.15
