"""Run a Python module as the main program for as long as the process that started it lives.

``python -m daemon.simulator.tethered PARENT_PID MODULE [ARGS...]``: the simulator rig starts
the simulator server this way, so that a daemon killed outright (SIGKILL, a crash, the OOM
killer: no clean-up runs) does not leave the server behind holding its port. A watchdog thread
notices that the parent changed (the kernel re-parents an orphan) and ends the process at once.

A watchdog rather than Linux's parent-death signal: that signal fires when the *thread* that
started the child ends, and the daemon starts the rig from a worker thread.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time

WATCH_INTERVAL_S = 0.2


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCH_INTERVAL_S)
    os._exit(1)  # no clean-up to wait for: the port and files go with the process


def main() -> None:
    parent_pid, module, *args = sys.argv[1:]
    if os.getppid() != int(parent_pid):  # the parent died before the watch could start
        sys.exit(1)
    threading.Thread(target=_watch, args=(int(parent_pid),), name="tether", daemon=True).start()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
