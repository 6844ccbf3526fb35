"""A real Dask cluster for tests: a scheduler and worker processes started with Nightowl's
own commands (`processing.cluster.scheduler_command` / `worker_command`) on loopback free
ports, each in its own process group, logs in a folder. Importable on its own, for tests of
any package:

    with dask_cluster(2, tmp_path) as cluster:
        cluster.address          # "tcp://127.0.0.1:PORT"
        cluster.kill_worker(0)   # SIGKILL worker 0's nanny and worker process
        cluster.add_worker()     # a replacement, registered when this returns
        cluster.client           # a distributed.Client of the scheduler

Everything is stopped on exit (SIGTERM, then SIGKILL after a timeout).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from processing.cluster import ClusterProcesses, start_local_cluster


@contextmanager
def dask_cluster(
    workers: int, directory: Path, *, timeout_s: float = 60.0
) -> Iterator[ClusterProcesses]:
    """A scheduler and `workers` registered workers, stopped on exit."""
    cluster = start_local_cluster(workers, directory, timeout_s=timeout_s)
    try:
        yield cluster
    finally:
        cluster.close()


__all__ = ["ClusterProcesses", "dask_cluster"]
