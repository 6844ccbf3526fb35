"""Processing recipes over the API of the real daemon under uvicorn (no devices): saved,
listed, replaced, deleted; every problem of a bad recipe answered with its path in the
recipe, for a saved recipe and for one inline in a job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon.conftest import RunningDaemon, bare_daemon


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[RunningDaemon]:
    """A daemon with no devices: a bare profile starts no simulators."""
    yield from bare_daemon(tmp_path_factory, catalog_cache, "recipes-daemon")


def small_recipe(name: str, target_background: float = 0.2) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [
            {"kind": "crop", "margin_percent": 1.0},
            {"kind": "stretch_stf", "target_background": target_background},
            {"kind": "export", "formats": ["fits", "jpeg"]},
        ],
    }


def test_recipes_round_trip(daemon: RunningDaemon) -> None:
    url = f"{daemon.url}/api/recipes"
    default = httpx.get(f"{url}/default").json()
    assert [s["kind"] for s in default["steps"]][:4] == [
        "calibrate",
        "frames",
        "register",
        "integrate",
    ]
    assert default["steps"][-1]["kind"] == "export"
    schema = httpx.get(f"{url}/schema").json()
    assert "steps" in schema["properties"]

    created = httpx.post(url, json={"document": {**default, "name": "seeds"}})
    assert created.status_code == 201, created.text
    row = created.json()
    assert row["name"] == "seeds"
    assert row["document"] == {**default, "name": "seeds"}  # stored as the full document

    mine = small_recipe("quick")
    second = httpx.post(url, json={"document": mine}).json()
    assert [r["name"] for r in httpx.get(url).json()] == ["quick", "seeds"]

    changed = small_recipe("quick", target_background=0.3)
    replaced = httpx.put(f"{url}/{second['id']}", json={"document": changed})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["document"]["steps"][1]["target_background"] == 0.3
    assert httpx.get(f"{url}/{second['id']}").json()["document"] == replaced.json()["document"]

    # Names are unique: a second recipe of a name, or a rename onto one, is a conflict.
    taken = httpx.post(url, json={"document": small_recipe("seeds")})
    assert taken.status_code == 409, taken.text
    assert "seeds" in taken.json()["detail"]
    renamed = httpx.put(f"{url}/{second['id']}", json={"document": small_recipe("seeds")})
    assert renamed.status_code == 409

    assert httpx.delete(f"{url}/{second['id']}").status_code == 204
    assert httpx.get(f"{url}/{second['id']}").status_code == 404
    assert httpx.delete(f"{url}/{second['id']}").status_code == 404
    assert httpx.put(f"{url}/{second['id']}", json={"document": mine}).status_code == 404
    assert [r["name"] for r in httpx.get(url).json()] == ["seeds"]


def test_a_bad_recipe_lists_every_problem_with_its_path(daemon: RunningDaemon) -> None:
    document = {
        "name": "broken",
        "steps": [
            {"kind": "crop"},
            {"kind": "stretch_stf"},
            {"kind": "register", "interpolation": "bilinear"},
            {"kind": "background", "smoothing": -1},
            {"kind": "sharpen"},
        ],
    }
    reply = httpx.post(f"{daemon.url}/api/recipes", json={"document": document})
    assert reply.status_code == 422, reply.text
    problems = {p["path"]: p for p in reply.json()["detail"]}
    assert set(problems) == {"steps[3].smoothing", "steps[4]"}
    assert problems["steps[3].smoothing"]["loc"] == ["body", "document", "steps[3]", "smoothing"]
    assert "ge 0" in problems["steps[3].smoothing"]["fix"]
    assert problems["steps[4]"]["fix"].startswith("set kind to one of")

    # Once the fields are valid, the order rules and the pipeline's own settings speak.
    document["steps"] = [*document["steps"][:3], {"kind": "background"}]
    reply = httpx.post(f"{daemon.url}/api/recipes", json={"document": document})
    assert reply.status_code == 422
    paths = sorted(p["path"] for p in reply.json()["detail"])
    assert paths == ["steps[2]", "steps[3]"]  # stacking after finishing; linear after a stretch
    document["steps"] = [{"kind": "register", "interpolation": "bilinear"}]
    reply = httpx.post(f"{daemon.url}/api/recipes", json={"document": document})
    assert reply.status_code == 422
    (problem,) = reply.json()["detail"]
    assert problem["path"] == "steps[0].interpolation"
    assert "lanczos4" in problem["fix"]
    assert "broken" not in [r["name"] for r in httpx.get(f"{daemon.url}/api/recipes").json()]


def test_a_job_with_a_bad_inline_recipe_is_refused_with_the_path(
    daemon: RunningDaemon,
) -> None:
    folder = daemon.data_dir / "empty-night"
    folder.mkdir()
    url = f"{daemon.url}/api/processing/jobs"
    queued = len(httpx.get(url).json())
    bad = {"name": "bad", "steps": [{"kind": "crop"}, {"kind": "background", "smoothing": -1}]}
    reply = httpx.post(url, json={"folder": str(folder), "recipe": bad})
    assert reply.status_code == 422, reply.text
    (problem,) = reply.json()["detail"]
    assert problem["path"] == "steps[1].smoothing"
    assert problem["loc"] == ["body", "recipe", "steps[1]", "smoothing"]

    both = httpx.post(url, json={"folder": str(folder), "recipe": bad, "recipe_id": 1})
    assert both.status_code == 422
    assert "recipe or recipe_id" in both.text
    assert httpx.post(url, json={"folder": str(folder), "recipe_id": 999}).status_code == 404
    assert len(httpx.get(url).json()) == queued  # nothing was queued

    # A good one is kept whole in the job's config, whatever happens to saved recipes.
    saved = httpx.post(f"{daemon.url}/api/recipes", json={"document": small_recipe("kept")})
    job = httpx.post(url, json={"folder": str(folder), "recipe_id": saved.json()["id"]}).json()
    httpx.delete(f"{daemon.url}/api/recipes/{saved.json()['id']}")
    assert job["config"]["recipe"] == saved.json()["document"]
    assert job["config"]["linear_only"] is False
