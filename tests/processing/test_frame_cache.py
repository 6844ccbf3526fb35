"""The calibrated-light cache: a job that finds its lights calibrated gives the very result
of a cold job, and a changed master is another entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from processing import synthetic
from processing.frame_cache import masters_identity
from processing.grouping import group_frames
from processing.pipeline import PipelineConfig, run_pipeline, scan_folder
from tests.helpers import SMALL_SESSION


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("session")
    synthetic.write_session(folder, SMALL_SESSION, target="M 42")
    return folder


def test_a_job_with_its_lights_cached_equals_a_cold_job(session: Path, tmp_path: Path) -> None:
    groups = group_frames(scan_folder(session)[0])
    cold = run_pipeline(groups, tmp_path / "cold", PipelineConfig(threads=1))
    cached = PipelineConfig(threads=1, cache_dir=tmp_path / "cache")
    filling = run_pipeline(groups, tmp_path / "filling", cached)
    entries = sorted((tmp_path / "cache").glob("*.json"))
    assert len(entries) == len(groups[0].lights)
    reused = run_pipeline(groups, tmp_path / "reused", cached)
    # Calibration time falls to loading files (no calibration, no detection).
    assert reused.timings_s["calibrate"] < filling.timings_s["calibrate"]
    images = [fits.getdata(r.groups[0].outputs["fits"]) for r in (cold, filling, reused)]
    # Same arrays in, same arithmetic: equal to the bit.
    np.testing.assert_array_equal(images[0], images[1])
    np.testing.assert_array_equal(images[0], images[2])
    assert [f.weight for f in cold.groups[0].frames] == [f.weight for f in reused.groups[0].frames]


def test_another_master_is_another_identity() -> None:
    dark = np.zeros((4, 4), np.float32)
    other = dark.copy()
    other[1, 1] = 1.0
    assert masters_identity({"dark": dark}) == masters_identity({"dark": dark.copy()})
    assert masters_identity({"dark": dark}) != masters_identity({"dark": other})
    assert masters_identity({"dark": dark}) != masters_identity({"dark": None})
    assert masters_identity({"dark": dark}, "dark 60.0") != masters_identity({"dark": dark})
