"""Processing jobs on a real Dask cluster: a scheduler and two worker processes started with
Nightowl's own commands (`tests.cluster`), once for the module.

The same small synthetic night is processed in this process, on the local pool and on the
cluster: the results must be the same, bit for bit, and the cluster's tasks must have run
on its workers. A worker killed in the middle of a job is survived.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from processing import synthetic
from processing.cluster import (
    WORKER_ENV,
    ClusterError,
    ClusterProcesses,
    DaskExecutor,
    free_port,
    run_on_cluster,
    worker_command,
)
from processing.grouping import LightGroup, group_frames
from processing.integrate import IntegrationConfig, block_plan
from processing.pipeline import PipelineConfig, PipelineResult, run_pipeline, scan_folder, summary
from tests.cluster import dask_cluster
from tests.helpers import SMALL_SESSION

# Every output image of a group: the integration and its rejection maps.
IMAGES = ("fits", "rejection_low", "rejection_high")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcesses]:
    def warm() -> None:
        import processing.pipeline  # noqa: F401 - the workers' imports, before the clock

    with dask_cluster(2, tmp_path_factory.mktemp("dask")) as running:
        running.client.get_task_stream()  # the scheduler records tasks from now on
        running.client.run(warm)
        yield running


@pytest.fixture(scope="module")
def groups(tmp_path_factory: pytest.TempPathFactory) -> list[LightGroup]:
    folder = tmp_path_factory.mktemp("night")
    synthetic.write_session(folder, SMALL_SESSION, target="M 42")
    return group_frames(scan_folder(folder)[0])


@pytest.fixture(scope="module")
def in_process(
    groups: list[LightGroup], tmp_path_factory: pytest.TempPathFactory
) -> PipelineResult:
    # One integration thread: its row blocks differ from the cluster's.
    config = PipelineConfig(threads=1, integration=IntegrationConfig(threads=1))
    return run_pipeline(groups, tmp_path_factory.mktemp("here"), config)


def images(result: PipelineResult) -> dict[tuple[str, str], np.ndarray]:
    return {
        (group.name, kind): fits.getdata(group.outputs[kind])
        for group in result.groups
        for kind in IMAGES
    }


def assert_identical(result: PipelineResult, expected: PipelineResult) -> None:
    got, want = images(result), images(expected)
    assert got.keys() == want.keys()
    for key, image in want.items():
        assert np.array_equal(got[key], image, equal_nan=True), key
    assert [f.accepted for g in result.groups for f in g.frames] == [
        f.accepted for g in expected.groups for f in g.frames
    ]


def task_stream(cluster: ClusterProcesses) -> list[dict[str, Any]]:
    stream: list[dict[str, Any]] = cluster.client.get_task_stream()
    return stream


def test_a_job_on_the_cluster_is_bit_identical_to_this_process_and_the_pool(
    cluster: ClusterProcesses,
    groups: list[LightGroup],
    in_process: PipelineResult,
    tmp_path: Path,
) -> None:
    assert in_process.executor == "this process"
    pooled = run_pipeline(
        groups, tmp_path / "pool", PipelineConfig(threads=2, pool_min_megapixels=0.0)
    )
    assert pooled.executor == "local pool (2 processes)"
    assert_identical(pooled, in_process)

    before = {task["key"] for task in task_stream(cluster)}
    stages: list[str] = []
    result = run_pipeline(
        groups,
        tmp_path / "dask",
        PipelineConfig(scheduler=cluster.address),
        progress=lambda stage, fraction: stages.append(stage),
    )
    assert_identical(result, in_process)
    assert summary(result)["executor"] == f"dask {cluster.address} (2 workers)"
    assert stages[-1] == "done"
    assert not (tmp_path / "dask" / ".work").exists()

    # The work ran on the workers: every light calibrated and registered there, and every
    # row block of the integration.
    ran = [task for task in task_stream(cluster) if task["key"] not in before]
    workers = set(cluster.worker_pids())
    by_function: dict[str, int] = {}
    for task in ran:
        assert task["worker"] in workers
        name = str(task["key"]).split("-", 1)[0]  # function-uuid-index
        by_function[name] = by_function.get(name, 0) + 1
    lights = sum(len(group.lights) for group in groups)
    assert by_function["calibrate_light"] == lights
    assert by_function["register_light"] >= lights - 1  # the reference is not resampled
    assert by_function["integrate_row_block"] >= 2
    assert len({task["worker"] for task in ran}) == 2


def test_a_worker_killed_mid_job_is_survived(
    cluster: ClusterProcesses,
    groups: list[LightGroup],
    in_process: PipelineResult,
    tmp_path: Path,
) -> None:
    killed: list[float] = []
    calls = {"calibrate": 0}

    def progress(stage: str, fraction: float) -> None:
        if stage == "calibrate":
            calls["calibrate"] += 1
            # The first call opens the stage; the second is the first light's result.
            if calls["calibrate"] == 2:
                cluster.kill_worker(0)
                killed.append(fraction)

    try:
        result = run_pipeline(
            groups, tmp_path, PipelineConfig(scheduler=cluster.address), progress=progress
        )
    finally:
        cluster.add_worker()  # the module's other tests want two
    assert killed, "the progress callback never saw a calibrated light"
    assert cluster.workers[0] is None
    assert_identical(result, in_process)


def test_a_worker_runs_its_libraries_single_threaded(cluster: ClusterProcesses) -> None:
    def threads() -> dict[str, object]:
        import cv2
        import numba

        return {
            "env": {name: os.environ.get(name) for name in WORKER_ENV},
            "numba": numba.config.NUMBA_NUM_THREADS,
            "cv2": cv2.getNumThreads(),
        }

    found = cluster.client.run(threads)
    assert len(found) == cluster.alive == 2
    for report in found.values():
        assert report == {"env": WORKER_ENV, "numba": 1, "cv2": 1}
    command = worker_command(cluster.address)
    assert command[:3] == ["dask", "worker", cluster.address]
    assert command[command.index("--nthreads") + 1] == "1"


def test_one_call_runs_on_a_worker(cluster: ClusterProcesses) -> None:
    pid = run_on_cluster(cluster.address, os.getpid)
    assert pid != os.getpid()
    assert pid in cluster.worker_pids().values()


def test_bad_scheduler_addresses_are_refused_with_the_form_expected() -> None:
    for bad in ("localhost:8786", "tcp://host", "http://h:8786", "tcp://h:99999"):
        with pytest.raises(ValueError, match=r"scheduler .* write tcp://host:port"):
            PipelineConfig(scheduler=bad)
    with pytest.raises(ClusterError, match="no Dask scheduler answers"):
        DaskExecutor(f"tcp://127.0.0.1:{free_port()}", timeout_s=1.0)


def test_row_blocks_on_a_cluster_use_each_workers_budget() -> None:
    # 30 frames 1000 px wide: a row of a block holds 30 x 1000 float32 samples (120 kB).
    config = IntegrationConfig(memory_budget_bytes=8 * 1024 * 1024, threads=2)
    local_rows, _ = block_plan(30, (4000, 1000), config)
    cluster_rows, chunk = block_plan(30, (4000, 1000), config, workers=4)
    # Each worker has the whole budget, a thread half of it: about twice the rows.
    assert 1.8 * local_rows <= cluster_rows <= 2.2 * local_rows
    assert cluster_rows * 1000 * 30 * 4 <= config.memory_budget_bytes
    # With budget to spare, blocks are balanced over the workers: 4 blocks per worker.
    roomy = IntegrationConfig(memory_budget_bytes=1 << 30)
    assert block_plan(30, (4000, 1000), roomy, workers=4)[0] == 250
    assert chunk >= 1
