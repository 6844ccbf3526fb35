"""Calibrated lights kept between jobs, so a frame calibrated during the night (by the live
stack) is not calibrated again in the morning.

An entry is the calibrated planes (``.npy``), the stars found on them and the frame's
figures, under a key made of everything the result depends on: the light file's SHA-256,
its Bayer pattern, the identity of the masters (their pixels and defect maps) and the
calibrate stage's settings. A different master, dark scaling, star setting or debayering
method is another key, so a hit is the very array a cold calibration would produce. The
figures are written last: an entry without them is incomplete and ignored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from processing.stars import FrameQuality
from processing.subframes import FrameMetrics

F64 = npt.NDArray[np.float64]

_VERSION = "1"


@dataclass(frozen=True, eq=False)
class CachedCalibration:
    """What a cache entry gives back besides the planes (placed at the caller's path)."""

    sha256: str
    pixels_sha256: str
    stars_yx: F64
    metrics: FrameMetrics


def masters_identity(arrays: Mapping[str, npt.NDArray[np.generic] | None], extra: str = "") -> str:
    """A digest of named master arrays (None: absent) and `extra` (e.g. the dark's
    exposure): equal only for the same masters."""
    digest = hashlib.sha256(f"{_VERSION}|{extra}".encode())
    for name in sorted(arrays):
        array = arrays[name]
        digest.update(name.encode())
        if array is None:
            digest.update(b"none")
            continue
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def calibrated_key(sha256: str, bayer_pattern: str | None, masters: str, settings: str) -> str:
    """The entry of a light file (`sha256`) calibrated with `masters` (`masters_identity`)
    under the stage's `settings` (its repr)."""
    text = "|".join((_VERSION, sha256, bayer_pattern or "mono", masters, settings))
    return hashlib.sha256(text.encode()).hexdigest()


def load_calibrated(cache: Path, key: str, target: Path) -> CachedCalibration | None:
    """The entry `key` with its planes placed at `target` (a hard link where possible), or
    None when there is no complete entry."""
    figures = cache / f"{key}.json"
    planes = cache / f"{key}.npy"
    stars = cache / f"{key}_stars.npy"
    try:
        document = json.loads(figures.read_text())
        stars_yx = np.load(stars)
        entry = CachedCalibration(
            sha256=document["sha256"],
            pixels_sha256=document["pixels_sha256"],
            stars_yx=stars_yx,
            metrics=metrics_from_document(document["metrics"]),
        )
        _place(planes, target)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return entry


def store_calibrated(cache: Path, key: str, planes: Path, entry: CachedCalibration) -> None:
    """Keep the calibrated `planes` file and `entry` as `key`. Raises OSError."""
    cache.mkdir(parents=True, exist_ok=True)
    _place(planes, cache / f"{key}.npy")
    np.save(cache / f"{key}_stars.npy", entry.stars_yx)
    document = {
        "sha256": entry.sha256,
        "pixels_sha256": entry.pixels_sha256,
        "metrics": metrics_document(entry.metrics),
    }
    temporary = cache / f".{key}.json.tmp"
    temporary.write_text(json.dumps(document))
    os.replace(temporary, cache / f"{key}.json")


def metrics_document(metrics: FrameMetrics) -> dict[str, Any]:
    """`metrics` as JSON-ready data (floats round-trip exactly)."""
    return dataclasses.asdict(metrics)


def metrics_from_document(document: dict[str, Any]) -> FrameMetrics:
    """The inverse of `metrics_document`. Raises TypeError or KeyError for another shape."""
    fields = dict(document)
    quality = FrameQuality(**fields.pop("quality"))
    return FrameMetrics(quality=quality, **fields)


def _place(source: Path, target: Path) -> None:
    """`source`'s content at `target`: a hard link (no copy of a large array), else a copy.
    Raises OSError when `source` is absent."""
    temporary = target.with_name(f".{target.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    try:
        os.link(source, temporary)
    except OSError:
        if not source.exists():
            raise
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)
