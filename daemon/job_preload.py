"""What every processing job's process needs, loaded once.

The daemon's jobs are forked from multiprocessing's fork server, which imports this module
when it starts (at the daemon's first job): the worker's job functions with the pipeline
and the finishing steps behind them, and numba's clipping kernel, loaded from its cache. A
job then starts in milliseconds instead of paying ~1.5 s of imports and kernel loading in a
fresh interpreter. The fork server does nothing but these imports, so a job forked from it
is as a fresh process that made them, except that its garbage collector leaves them alone;
a job's own worker processes are forked from the job in turn (`processing.cluster`).
"""

from __future__ import annotations

import gc

from daemon import worker  # noqa: F401  (the job functions the fork server's children run)
from processing.rejection import load_kernels

load_kernels()
# What is loaded now stays out of the garbage collector's reach in every job forked from
# here: a job's first full collection would otherwise walk all of it, writing to every
# object and so copying every page it shares with the fork server (~0.2 s of a job's time
# and ~16,000 page faults, measured on an 8-light job).
gc.collect()
gc.freeze()
