"""What the stacking stages share: their error, how a frame file is read, and how an input is
named in provenance.

The stages of a stacking job (`processing.pipeline`) each live in a module of their family:
`stack_masters`, `stack_calibrate`, `stack_judge`, `stack_register`, `stack_integrate`, and
`stack_outputs`, which writes every file of the job. They are apart from the science modules
(`masters`, `calibrate`, `register`, `integrate`) because they read frame files and keep
intermediate frames on disk; the science modules stay pure functions of arrays.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from processing.grouping import FrameInfo
from processing.io import decode_fits

F32 = npt.NDArray[np.float32]


class PipelineError(ValueError):
    """The job cannot produce anything (no lights, no frame left to integrate): the message
    says what to add or change."""


def read_planes(path: Path) -> tuple[F32, str]:
    """The image as float32 planes ``(1, y, x)`` and the file's SHA-256. Raises OSError when
    the file cannot be read, ValueError when it is not a FITS image."""
    buffer = path.read_bytes()
    data, _ = decode_fits(buffer)
    return data.astype(np.float32)[None], hashlib.sha256(buffer).hexdigest()


def file_sha256(frame: FrameInfo) -> str:
    """The frame file's SHA-256: the one grouping recorded, else read from the file."""
    if frame.sha256:
        return frame.sha256
    return hashlib.sha256(frame.path.read_bytes()).hexdigest()


def input_lines(path: Path, sha256: str, note: str = "") -> tuple[str, str]:
    """Two HISTORY lines naming an input and its checksum (a card holds 72 characters)."""
    return (f"input {path.name} {note}".rstrip(), f"sha256 {sha256}")
