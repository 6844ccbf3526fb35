"""The fork server's preload: what a processing job inherits from it."""

from __future__ import annotations

import subprocess
import sys


def test_a_job_forked_after_the_preload_leaves_what_it_inherited_to_the_collector() -> None:
    """A process forked after `daemon.job_preload` (as every job is, from the fork server)
    finds the preloaded objects frozen: its garbage collector tracks only what the process
    makes itself, so a full collection neither walks nor copies the inherited pages. A fresh
    interpreter, so that nothing this test process has loaded counts."""
    script = (
        "import gc, os\n"
        "import daemon.job_preload\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    tracked, frozen = len(gc.get_objects()), gc.get_freeze_count()\n"
        "    os.write(1, f'{tracked} {frozen}'.encode())\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    tracked, frozen = (int(word) for word in run.stdout.split())
    # The pipeline, the daemon's job functions and numba leave a few hundred thousand.
    assert frozen > 100_000, run.stdout
    assert tracked < frozen // 20, run.stdout
