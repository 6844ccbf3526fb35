"""Test helpers: star counts with sep, frame shifts by phase correlation, read-only folders,
a small synthetic session, waiting for a condition in async tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import sep

from processing import synthetic

SMALL_SESSION = synthetic.SessionConfig(
    sensor=synthetic.SensorModel(shape=(192, 256), gain_e_per_adu=1.5, seed=6),
    bias_frames=8,
    dark_frames=8,
    flat_frames=8,
    light_frames=8,
    star_count=60,
    seeing_sigma_px=(1.8, 1.8),
    dither_px=6.0,
    rotation_deg=0.5,
    trail_every=4,
    seed=7,
)
"""A small night with known truth: calibration frames and 8 dithered, rotated lights with
cosmic rays and a satellite trail, the same seeing in every light (~2 s to process)."""


def count_stars(image: npt.NDArray[np.generic], threshold_sigma: float = 5.0) -> int:
    """Sources `threshold_sigma` above sep's background model."""
    data = np.ascontiguousarray(image, dtype=np.float32)
    background = sep.Background(data)
    return len(sep.extract(data - background, threshold_sigma, err=background.globalrms))


def measure_shift(
    reference: npt.NDArray[np.generic], moved: npt.NDArray[np.generic]
) -> tuple[float, float]:
    """The (dy, dx) translation that maps `reference` onto `moved`, to ~0.1 px.

    Phase correlation of background-subtracted frames with a 3-point parabolic fit of the peak.
    """

    def prepare(image: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
        data = image.astype(np.float64)
        return np.clip(data - np.median(data), 0.0, None)

    a, b = np.fft.rfft2(prepare(reference)), np.fft.rfft2(prepare(moved))
    cross = b * np.conj(a)
    correlation = np.fft.irfft2(cross / np.maximum(np.abs(cross), 1e-12), s=reference.shape)
    peak = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    shift = []
    for axis, size in enumerate(correlation.shape):
        index = list(peak)
        values = []
        for step in (-1, 0, 1):
            index[axis] = (peak[axis] + step) % size
            values.append(correlation[tuple(index)])
        left, centre, right = values
        denominator = left - 2 * centre + right
        offset = 0.5 * (left - right) / denominator if denominator != 0 else 0.0
        position = peak[axis] + offset
        shift.append(position - size if position > size / 2 else position)
    return float(shift[0]), float(shift[1])


@contextmanager
def read_only_folder(folder: Path) -> Iterator[None]:
    """Make `folder` unwritable, even for root (who ignores permission bits): chattr +i."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


async def eventually(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` every 0.2 s until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)
