"""Finished pictures from processing jobs, through the real daemon under uvicorn (no devices):
a job finishes every target with its recipe after stacking, a done job is finished again
with another recipe without stacking, a recipe is previewed on a finished picture, and the
job's files are served from its folder only. Then the parts without a daemon: the recipe's
stacking steps over the options, and masters of one target in different sizes."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from daemon.processing_options import ProcessingOptions, recipe_pipeline_config
from daemon.recipes import default_job_recipe
from processing import synthetic
from processing.debayer import Demosaic
from processing.finish import LinearMaster, finish_targets
from processing.recipe import parse_recipe
from processing.register import Interpolation
from processing.rejection import Rejection, rejection_config
from processing.subframes import Weighting
from tests.daemon.conftest import RunningDaemon, bare_daemon, wait_for
from tests.helpers import SMALL_SESSION


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[RunningDaemon]:
    """A daemon with no devices (a bare profile starts no simulators); its data folder is
    the processing root."""
    yield from bare_daemon(tmp_path_factory, catalog_cache, "finish-daemon")


@pytest.fixture(scope="module")
def night_folder(daemon: RunningDaemon) -> Path:
    folder = daemon.data_dir / "night"
    synthetic.write_session(folder, SMALL_SESSION, target="NGC 7000")
    return folder


def finished(job: dict[str, Any]) -> bool:
    return job["state"] in ("done", "failed")


def run_job(daemon: RunningDaemon, path: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = httpx.post(f"{daemon.url}/api/processing/jobs{path}", json=body)
    assert reply.status_code == 201, reply.text
    url = f"{daemon.url}/api/processing/jobs/{reply.json()['id']}"
    done = wait_for(url, finished, timeout_s=120)
    assert done["state"] == "done", (done["error"], daemon.log()[-3000:])
    return done


FAST = {"threads": 1}
"""No pool of worker processes to start for 8 small lights."""


def mono_recipe(sky: float = 0.15) -> dict[str, Any]:
    """The default job recipe for a mono master: its curves step, which raises the colour
    saturation, is left out (a grey picture has none), and the STF's target background is
    `sky` (the default's is 0.15)."""
    document = default_job_recipe().model_dump(mode="json")
    document["steps"] = [s for s in document["steps"] if s["kind"] != "curves"]
    for step in document["steps"]:
        if step["kind"] == "stretch_stf":
            step["target_background"] = sky
    return document


@pytest.fixture(scope="module")
def done_job(daemon: RunningDaemon, night_folder: Path) -> dict[str, Any]:
    """A folder job (one mono target) stacked and finished."""
    return run_job(
        daemon, "", {"folder": str(night_folder), "options": FAST, "recipe": mono_recipe()}
    )


def relative(job: dict[str, Any], path: str) -> str:
    return str(Path(path).relative_to(job["out_dir"]))


def served(daemon: RunningDaemon, job: dict[str, Any], path: str) -> httpx.Response:
    return httpx.get(f"{daemon.url}/api/processing/jobs/{job['id']}/files/{relative(job, path)}")


def grey(jpeg: bytes) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), dtype=np.float64)


def test_a_job_finishes_every_target_and_serves_the_files(
    daemon: RunningDaemon, done_job: dict[str, Any]
) -> None:
    outputs = done_job["outputs"]
    assert [g["target"] for g in outputs["groups"]] == ["NGC 7000"]
    (entry,) = outputs["finished"]
    assert "error" not in entry, entry
    assert entry["target"] == "NGC 7000"
    assert entry["recipe_sha256"] == parse_recipe(mono_recipe()).digest()
    assert done_job["config"]["recipe"] == mono_recipe()  # the whole document
    assert {"fits", "jpeg", "web", "recipe"} <= set(entry["outputs"])
    finished_dir = Path(done_job["out_dir"]) / "finished"
    for path in entry["outputs"].values():
        assert Path(path).parent == finished_dir
        assert Path(path).is_file()

    web = served(daemon, done_job, entry["outputs"]["web"])
    assert web.status_code == 200, web.text
    assert web.headers["content-type"] == "image/jpeg"
    assert web.content[:2] == b"\xff\xd8"
    assert web.content == Path(entry["outputs"]["web"]).read_bytes()
    picture = served(daemon, done_job, entry["outputs"]["fits"])
    assert picture.headers["content-type"] == "application/fits"
    assert picture.content[:6] == b"SIMPLE"
    assert served(daemon, done_job, entry["outputs"]["recipe"]).json() == mono_recipe()
    previews = [step["preview"] for step in entry["steps"] if step["preview"]]
    assert previews, entry["steps"]
    step_reply = served(daemon, done_job, previews[0])
    assert step_reply.headers["content-type"] == "image/jpeg"
    assert step_reply.content[:2] == b"\xff\xd8"


def test_only_files_inside_the_job_folder_are_served(
    daemon: RunningDaemon, done_job: dict[str, Any]
) -> None:
    out_dir = Path(done_job["out_dir"])
    (out_dir / "outside").symlink_to(daemon.data_dir / "daemon.log")
    base = f"{daemon.url}/api/processing/jobs/{done_job['id']}/files"
    # Encoded, so that the client does not resolve the dots itself: the daemon gets them.
    for path in (
        "..%2F..%2Fnightowl.db",
        "%2e%2e%2F%2e%2e%2Fnightowl.db",
        "finished%2F..%2F..%2F..%2Fnightowl.db",
        "%2Fetc%2Fhostname",
        "outside",  # a link out of the folder
        "finished",  # a folder, not a file
        "finished/nope.jpg",
    ):
        assert httpx.get(f"{base}/{path}").status_code == 404, path
    assert httpx.get(f"{daemon.url}/api/processing/jobs/999/files/x.jpg").status_code == 404


def test_linear_only_stops_at_the_masters(daemon: RunningDaemon, night_folder: Path) -> None:
    body = {"folder": str(night_folder), "options": FAST, "linear_only": True}
    done = run_job(daemon, "", body)
    assert "finished" not in done["outputs"]
    assert done["outputs"]["groups"][0]["integrated"] == 8
    assert not (Path(done["out_dir"]) / "finished").exists()
    preview = httpx.post(
        f"{daemon.url}/api/processing/jobs/{done['id']}/preview", json={"recipe": mono_recipe(0.2)}
    )
    assert preview.status_code == 404


def test_a_done_job_is_finished_again_with_another_recipe(
    daemon: RunningDaemon, done_job: dict[str, Any]
) -> None:
    brighter = mono_recipe(0.35)  # the job's had 0.15
    again = run_job(daemon, f"/{done_job['id']}/finish", {"recipe": brighter})
    assert again["config"] == {"finish_of": done_job["id"], "recipe": brighter}
    assert again["session_id"] is None
    assert again["folder"] is None
    assert "groups" not in again["outputs"]  # nothing stacked again
    assert again["outputs"]["finish_of"] == done_job["id"]
    (entry,) = again["outputs"]["finished"]
    assert entry["target"] == "NGC 7000"
    assert Path(entry["outputs"]["web"]).parent == Path(again["out_dir"]) / "finished"
    before = grey(
        served(daemon, done_job, done_job["outputs"]["finished"][0]["outputs"]["web"]).content
    )
    after = grey(served(daemon, again, entry["outputs"]["web"]).content)
    # The sky (the median) is lifted: 0.15 -> 0.35 before the arcsinh stretch is far more
    # than the JPEG's rounding (1/255) and the denoising's differences.
    assert np.median(after) > np.median(before) + 20, (np.median(before), np.median(after))

    # A recipe that does not fit the picture: the target's entry says why, a warning event
    # tells the person, and the job is done (the linear masters are still there).
    tiny = {"steps": [{"kind": "crop", "box": [0, 8, 0, 8]}, {"kind": "stretch_stf"}]}
    cropped = run_job(daemon, f"/{done_job['id']}/finish", {"recipe": tiny})
    (failure,) = cropped["outputs"]["finished"]
    assert failure["target"] == "NGC 7000"
    assert "crop leaves 8 x 8 px" in failure["error"]
    events = httpx.get(f"{daemon.url}/api/events", params={"limit": 1000}).json()
    assert any(
        e["level"] == "warning" and e["data"].get("job_id") == cropped["id"] for e in events
    ), events[-5:]

    empty = daemon.data_dir / "no-lights"
    empty.mkdir()
    reply = httpx.post(f"{daemon.url}/api/processing/jobs", json={"folder": str(empty)})
    job_url = f"{daemon.url}/api/processing/jobs/{reply.json()['id']}"
    assert wait_for(job_url, finished)["state"] == "failed"
    assert httpx.post(f"{job_url}/finish", json={}).status_code == 409
    assert httpx.post(f"{daemon.url}/api/processing/jobs/999/finish", json={}).status_code == 404
    bad = httpx.post(
        f"{daemon.url}/api/processing/jobs/{done_job['id']}/finish",
        json={"recipe": {"steps": [{"kind": "stretch_stf", "target_background": 2}]}},
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["path"] == "steps[0].target_background"


def test_a_recipe_is_previewed_on_a_finished_picture(
    daemon: RunningDaemon, done_job: dict[str, Any]
) -> None:
    url = f"{daemon.url}/api/processing/jobs/{done_job['id']}/preview"
    dark = httpx.post(url, json={"target": "NGC 7000", "recipe": mono_recipe(0.1)})
    assert dark.status_code == 200, dark.text
    assert dark.headers["content-type"] == "image/jpeg"
    bright = httpx.post(url, json={"recipe": mono_recipe(0.4)})  # the job's only picture
    assert max(grey(bright.content).shape) <= 1024
    # Same margin as above: a sky of 0.1 against 0.4 before the arcsinh stretch.
    assert np.median(grey(bright.content)) > np.median(grey(dark.content)) + 20
    assert httpx.post(url, json={"target": "M 31", "recipe": mono_recipe(0.1)}).status_code == 404
    bad = httpx.post(url, json={"recipe": {"steps": [{"kind": "ghs", "LP": 0.5, "SP": 0.1}]}})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["path"] == "steps[0]"


def test_recipe_stacking_steps_override_the_options() -> None:
    options = ProcessingOptions(
        rejection=Rejection.SIGMA, interpolation=Interpolation.BICUBIC, crop=False, min_stars=5
    )
    recipe = parse_recipe(
        {
            "steps": [
                {"kind": "calibrate", "cosmetic": False, "demosaic": "bilinear"},
                {"kind": "frames", "weighting": "noise", "reject_sigma": 2.5},
                {"kind": "integrate", "rejection": "esd"},
                {"kind": "stretch_stf"},
            ]
        }
    )
    config = recipe_pipeline_config(options, recipe)
    assert config.integration.rejection == rejection_config(Rejection.ESD)
    assert config.crop is True  # integrate's crop_to_coverage default
    assert config.cosmetic is None
    assert config.demosaic is Demosaic.BILINEAR
    assert config.weighting is Weighting.NOISE
    assert config.subframes.reject_sigma == 2.5
    assert config.subframes.min_stars is None  # the recipe's limit: off
    assert config.interpolation is Interpolation.BICUBIC  # no register step: the option's
    # Without stacking steps (a job given no recipe), the options decide alone.
    plain = recipe_pipeline_config(options, default_job_recipe())
    assert plain == options.pipeline_config()


def write_master(path: Path, shape: tuple[int, int], filter_name: str, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    data = (0.05 + 0.01 * rng.standard_normal(shape)).astype(np.float32)
    header = fits.Header({"OBJECT": "M 1", "FILTER": filter_name})
    fits.writeto(path, data, header)
    return path


def test_masters_of_one_target_in_different_sizes_are_finished_alone(tmp_path: Path) -> None:
    recipe = parse_recipe(
        {"steps": [{"kind": "stretch_stf"}, {"kind": "export", "formats": ["jpeg"]}]}
    )
    masters = [
        LinearMaster("M 1_R", "M 1", write_master(tmp_path / "r.fits", (64, 96), "R", 1)),
        LinearMaster("M 1_G", "M 1", write_master(tmp_path / "g.fits", (80, 96), "G", 2)),
        LinearMaster("M 2_L", "M 2", tmp_path / "missing.fits"),
    ]
    seen: list[float] = []
    entries = finish_targets(masters, recipe, tmp_path / "out", lambda _s, f: seen.append(f))
    red, green, lost = entries
    assert (red["name"], green["name"]) == ("M_1_R", "M_1_G")
    for entry in (red, green):
        assert entry["target"] == "M 1"
        assert "differ in size (64 x 96, 80 x 96 px)" in entry["notes"][0]
        assert Path(entry["outputs"]["jpeg"]).is_file()
    assert lost["target"] == "M 2"
    assert "missing.fits" in lost["error"]
    assert seen == sorted(seen)
    assert seen[0] >= 0.0
    assert seen[-1] <= 1.0
