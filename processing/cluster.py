"""Where a job's per-frame work runs: this process, a local pool of worker processes, or a
Dask cluster; and how Nightowl's Dask scheduler and workers are started.

Every executor maps a function over tasks (small dataclasses of file paths: frames never
travel inside a Dask graph, they live as ``.npy`` files in the job's work folder) and
returns the results in task order, calling a hook as each result arrives. On Dask, the
work folder and the input frames must be visible under the same paths on every worker
(one machine, or shared storage mounted at the same place).

A Nightowl worker (`worker_command`) runs one task at a time with one thread, and its
numerical libraries single-threaded (`WORKER_ENV`): several workers per machine fill the
cores without each library starting a thread per core on top. The environment must be in
force before numpy, numba and OpenCV load in the worker process, so it goes through the
nanny's pre-spawn environment: this module is the nanny's preload (``--preload-nanny``)
and adds `WORKER_ENV` there, and the worker's preload (``--preload``), which sets OpenCV's
thread count in the worker itself.

This is the only module of Nightowl that imports `distributed`, and only when a cluster is
used: its import takes seconds, which a job on this machine (and each process of a local
pool) does not pay.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast
from urllib.parse import urlsplit

from processing.stacking import PipelineError

if TYPE_CHECKING:
    import distributed

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")

WORKER_ENV: dict[str, str] = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "OPENCV_FOR_THREADS_NUM": "1",
}
"""Thread counts of the numerical libraries in a Dask worker: one each (a worker runs one
task at a time; more workers, not more threads, fill a machine's cores)."""

CONNECT_TIMEOUT_S = 30.0
"""How long a job waits for the scheduler to answer and for a first worker to register."""

_PARENT_POLL_S = 1.0
_STOP_TIMEOUT_S = 10.0


def scheduler_address_problem(address: str) -> str | None:
    """What is wrong with a Dask scheduler address (``tcp://host:port``), or None: the part
    of a message that names the setting or option it came from."""
    parts = urlsplit(address)
    if parts.scheme != "tcp":
        return "is not a tcp:// address"
    if not parts.hostname:
        return "has no host"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is None:
        return "has no port"
    if port == 0:
        return "has a port that is not a number from 1 to 65535"
    if parts.path or parts.query or parts.fragment or parts.username:
        return "has more than a host and a port"
    return None


def check_scheduler_address(address: str) -> str:
    """`address` when it reads ``tcp://host:port`` (port 1..65535); else ValueError saying
    what is wrong and the form expected."""
    problem = scheduler_address_problem(address)
    if problem is not None:
        raise ValueError(
            f"scheduler {address!r} {problem}: write tcp://host:port, e.g. tcp://127.0.0.1:8786"
        )
    return address


class ClusterError(PipelineError):
    """The Dask cluster cannot run the job (scheduler unreachable, no worker): the message
    names the address; check that the scheduler and its workers are running."""


class Executor(Protocol):
    """Runs a function over tasks somewhere; `name` says where, for the job's summary."""

    @property
    def name(self) -> str: ...

    @property
    def remote(self) -> bool:
        """True when the tasks run in other processes that may be on other machines."""
        ...

    @property
    def workers(self) -> int:
        """How many tasks run at once."""
        ...

    def map(
        self,
        function: Callable[[_T], _R],
        tasks: Sequence[_T],
        on_result: Callable[[int], None] = lambda done: None,
    ) -> list[_R]:
        """`function` over `tasks`, results in task order; `on_result` hears how many
        results have arrived, after each. Raises what `function` raised."""
        ...

    def release(self) -> None:
        """Let go of what idle workers hold while this process works alone (the
        integration); a later map brings them back."""
        ...

    def close(self) -> None: ...


class InProcess:
    """Every task here, one after the other."""

    name = "this process"
    remote = False
    workers = 1

    def map(
        self,
        function: Callable[[_T], _R],
        tasks: Sequence[_T],
        on_result: Callable[[int], None] = lambda done: None,
    ) -> list[_R]:
        done: list[_R] = []
        for task in tasks:
            done.append(function(task))
            on_result(len(done))
        return done

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class LocalPool:
    """Worker processes on this machine, ending with this process.

    On Linux they are forked from this process at the first map: a forked worker shares
    what this process has loaded by then (its imported modules, numba's compiled kernels
    and type registry, the masters; their pages are shared, not copied) and is ready in
    milliseconds, where a spawned one spends a second of CPU importing them again and each
    of its processes loads numba's registry (a quarter of a second) anew. The per-frame
    stages use no library whose threads a fork would leave broken (numba's parallel kernels
    are finishing steps, OpenCV and OpenBLAS start their pools again in the child).
    Elsewhere the workers are spawned at once and start importing, so their imports
    overlap whatever this process does before the first map."""

    remote = False

    def __init__(self, processes: int) -> None:
        self.workers = processes
        self.name = f"local pool ({processes} processes)"
        self._forked = sys.platform == "linux"
        self._pool: ProcessPoolExecutor | None = None
        if not self._forked:
            for _ in range(processes):
                self._started().submit(_warm)

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            give_back_memory()
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("fork" if self._forked else "spawn"),
                initializer=_start_pool_worker,
                initargs=(os.getpid(), self._forked),
            )
        return self._pool

    def map(
        self,
        function: Callable[[_T], _R],
        tasks: Sequence[_T],
        on_result: Callable[[int], None] = lambda done: None,
    ) -> list[_R]:
        done: list[_R] = []
        for result in self._started().map(functools.partial(_then_trim, function), tasks):
            done.append(result)
            on_result(len(done))
        return done

    def release(self) -> None:
        """Forked workers end, and with them the pages they have copied from this process
        and their own heap (~50 MB each on a 3 MP job), and are forked again at the next
        map; spawned ones, which would import everything again, stay."""
        if self._forked:
            self.close()
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


class DaskExecutor:
    """Tasks on the workers of the Dask scheduler at `address` ("tcp://host:port"). A
    worker lost mid-task is survived: the scheduler runs its tasks again elsewhere (a task
    whose workers die 3 times, Dask's ``distributed.scheduler.allowed-failures``, fails the
    map with ClusterError). Raises ClusterError when the scheduler does not answer or no
    worker registers within `timeout_s`."""

    remote = True

    def __init__(self, address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.address = check_scheduler_address(address)
        self._client: Any = connect(address, timeout_s)
        self.workers = len(self._client.scheduler_info(n_workers=-1)["workers"])
        plural = "s" if self.workers != 1 else ""
        self.name = f"dask {address} ({self.workers} worker{plural})"

    def map(
        self,
        function: Callable[[_T], _R],
        tasks: Sequence[_T],
        on_result: Callable[[int], None] = lambda done: None,
    ) -> list[_R]:
        if not tasks:
            return []
        dask = _dask()
        futures = self._client.map(function, tasks, pure=False)
        try:
            for done, future in enumerate(
                dask.as_completed(futures, loop=self._client.loop), start=1
            ):
                if future.status == "error":
                    future.result()
                on_result(done)
            results: list[_R] = self._client.gather(futures)
        except dask.KilledWorker as e:
            raise ClusterError(
                f"{e}: the workers of {self.address} kept dying on this task; see their "
                "logs (out of memory?)"
            ) from e
        finally:
            self._client.cancel(futures)
        return results

    def release(self) -> None:
        """The cluster's workers are its own: nothing to let go here."""

    def close(self) -> None:
        self._client.close()


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> distributed.Client:
    """A client of the scheduler at `address` with at least one worker registered; raises
    ClusterError naming the address when either is missing after `timeout_s`."""
    try:
        client: Any = _dask().Client(address, timeout=timeout_s, set_as_default=False)
    except OSError as e:
        raise ClusterError(
            f"no Dask scheduler answers at {address} ({e}): start one, or unset "
            "NIGHTOWL_DASK_SCHEDULER to process on this machine"
        ) from e
    try:
        client.wait_for_workers(1, timeout=timeout_s)
    except TimeoutError as e:
        client.close()
        raise ClusterError(
            f"the Dask scheduler at {address} has no worker after {timeout_s:g} s: "
            f"start its workers ({' '.join(worker_command(address))})"
        ) from e
    return cast("distributed.Client", client)


def run_on_cluster(
    address: str, function: Callable[..., _R], *args: Any, timeout_s: float = CONNECT_TIMEOUT_S
) -> _R:
    """`function(*args)` once, on one worker of the scheduler at `address`; its result.
    Raises ClusterError when the cluster cannot be reached, else what `function` raised."""
    client: Any = connect(check_scheduler_address(address), timeout_s)
    try:
        result: _R = client.submit(function, *args, pure=False).result()
        return result
    finally:
        client.close()


def _dask() -> Any:
    """The `distributed` package, imported on first use; untyped, so reached through Any
    (results are typed where they are used)."""
    import distributed

    return distributed


def give_back_memory() -> None:
    """Return the heap's free pages to the system (glibc's malloc_trim). Frames come and go
    in tens of megabytes; once such a block has been freed, glibc serves the next ones from
    its heap and keeps their pages after they are freed too, so a process that has worked
    on frames goes on holding that much resident memory. No-op without glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return cast("Callable[[int], int]", ctypes.CDLL("libc.so.6").malloc_trim)
    except (OSError, AttributeError):
        return None


def _then_trim(function: Callable[[_T], _R], task: _T) -> _R:
    """`function(task)` in a pool worker, which then gives back the memory of its frames
    (`give_back_memory`) instead of holding it until the next task."""
    try:
        return function(task)
    finally:
        give_back_memory()


def _warm() -> None:
    """The imports of every stage, in a local pool's worker before its first task."""
    importlib.import_module("processing.pipeline")


def _start_pool_worker(parent: int, forked: bool) -> None:
    """A local pool's worker process, ending with its parent. A spawned one keeps to one
    OpenCV thread, as the processes already fill the cores. A forked one leaves OpenCV's
    threads alone: changing them waits forever on the parent's pool, which the fork did not
    copy, if the parent has used it."""
    if not forked:
        import cv2

        cv2.setNumThreads(1)
    exit_with_parent(parent)


def exit_with_parent(parent: int) -> None:
    """End this (child) process when `parent` (the pid that started it) is gone, killed with
    the daemon, instead of living on as an orphan waiting for work forever: for the
    initializer of a pool, with the parent's pid as its argument (a parent killed while the
    child was still starting is already gone when the initializer runs)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent watch", daemon=True).start()


def dask_setup(server: object) -> None:
    """Dask's preload hook, run by a nanny (``--preload-nanny processing.cluster``) and by a
    worker (``--preload processing.cluster``): the nanny adds `WORKER_ENV` to the
    environment its worker process is spawned with; the worker sets OpenCV's threads."""
    dask = _dask()
    if isinstance(server, dask.Nanny):
        server.pre_spawn_env.update(WORKER_ENV)
    elif isinstance(server, dask.Worker):
        import cv2

        cv2.setNumThreads(1)


def scheduler_command(
    port: int = 8786, *, host: str | None = None, executable: str = "dask"
) -> list[str]:
    """The command line of Nightowl's Dask scheduler listening on `port` (of `host`; None:
    every interface)."""
    command = [executable, "scheduler", "--port", str(port), "--no-dashboard"]
    if host is not None:
        command += ["--host", host]
    return command


def worker_command(
    scheduler_address: str,
    *,
    host: str | None = None,
    name: str | None = None,
    local_directory: str | None = None,
    executable: str = "dask",
) -> list[str]:
    """The command line of one Nightowl Dask worker of the scheduler at
    `scheduler_address`: one process with one thread, its libraries single-threaded
    (`WORKER_ENV` through the nanny, OpenCV through the worker's preload); `host` is the
    address it listens on and gives the scheduler (None: Dask's choice)."""
    command = [
        executable,
        "worker",
        check_scheduler_address(scheduler_address),
        "--nthreads",
        "1",
        "--nworkers",
        "1",
        "--preload-nanny",
        "processing.cluster",
        "--preload",
        "processing.cluster",
        "--no-dashboard",
    ]
    if host is not None:
        command += ["--host", host]
    if name is not None:
        command += ["--name", name]
    if local_directory is not None:
        command += ["--local-directory", local_directory]
    return command


def dask_executable() -> str:
    """The ``dask`` command beside this Python (a virtualenv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("dask")
    return str(beside) if beside.exists() else "dask"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class ClusterProcesses:
    """A Dask scheduler and workers started on this machine's loopback with Nightowl's
    commands (`scheduler_command`, `worker_command`), each in its own process group with
    its log in `directory`: for tests and benchmarks. Use as a context manager or call
    `close`. Raises ClusterError when the workers do not register within `timeout_s`."""

    host = "127.0.0.1"

    def __init__(self, workers: int, directory: Path, *, timeout_s: float = 60.0) -> None:
        self.directory = directory
        self.timeout_s = timeout_s
        self._executable = dask_executable()
        self._scheduler = self._start("scheduler", self._scheduler_command())
        self.workers: list[subprocess.Popen[bytes] | None] = []
        self._started = 0
        try:
            self.client: Any = _dask().Client(self.address, timeout=timeout_s, set_as_default=False)
            for _ in range(workers):
                self.add_worker(wait=False)
            self.wait_for_workers(workers)
        except BaseException:
            self.close()
            raise

    def _scheduler_command(self) -> list[str]:
        self.port = free_port(self.host)
        self.address = f"tcp://{self.host}:{self.port}"
        return scheduler_command(self.port, host=self.host, executable=self._executable)

    def _start(self, label: str, command: list[str]) -> subprocess.Popen[bytes]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"{label}.log", "wb") as logfile:
            return subprocess.Popen(
                command,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def add_worker(self, *, wait: bool = True) -> int:
        """Start one more worker; its index (for `kill_worker`). With `wait`, return once
        the scheduler has as many workers as are alive."""
        index = self._started
        self._started += 1
        label = f"worker-{index}"
        command = worker_command(
            self.address,
            host=self.host,
            name=label,
            local_directory=str(self.directory / label),
            executable=self._executable,
        )
        self.workers.append(self._start(label, command))
        if wait:
            self.wait_for_workers(self.alive)
        return index

    @property
    def alive(self) -> int:
        """Workers started and not killed."""
        return sum(1 for w in self.workers if w is not None and w.poll() is None)

    def wait_for_workers(self, count: int) -> None:
        try:
            self.client.wait_for_workers(count, timeout=self.timeout_s)
        except TimeoutError as e:
            raise ClusterError(
                f"{count} Dask workers did not register at {self.address} within "
                f"{self.timeout_s:g} s; see the logs in {self.directory}"
            ) from e

    def worker_pids(self) -> dict[str, int]:
        """The worker processes' pids by worker address (from the workers themselves)."""
        pids: dict[str, int] = self.client.run(os.getpid)
        return pids

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker `index`'s process group (its nanny and its worker process)."""
        process = self.workers[index]
        if process is None:
            return
        _kill_group(process, signal.SIGKILL)
        process.wait()
        self.workers[index] = None

    def close(self) -> None:
        """Stop the workers, then the scheduler: SIGTERM, SIGKILL after a timeout."""
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        for process in [*(w for w in self.workers if w is not None), self._scheduler]:
            _kill_group(process, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for process in [*(w for w in self.workers if w is not None), self._scheduler]:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(process, signal.SIGKILL)
                process.wait()
        self.workers = [None] * len(self.workers)

    def __enter__(self) -> ClusterProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_local_cluster(
    workers: int, directory: Path, *, timeout_s: float = 60.0
) -> ClusterProcesses:
    """A scheduler and `workers` workers on loopback, registered; logs in `directory`."""
    return ClusterProcesses(workers, directory, timeout_s=timeout_s)


def _kill_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


__all__ = [
    "WORKER_ENV",
    "ClusterError",
    "ClusterProcesses",
    "DaskExecutor",
    "Executor",
    "InProcess",
    "LocalPool",
    "check_scheduler_address",
    "connect",
    "dask_executable",
    "dask_setup",
    "exit_with_parent",
    "free_port",
    "run_on_cluster",
    "scheduler_command",
    "start_local_cluster",
    "worker_command",
]
