"""A frame's star list as compact bytes: what capture measured, kept for registration.

Capture detects the stars of every light to judge it (`processing.stars.measure_frame_stars`);
keeping the brightest few hundred with the frame lets the live stack register it without a
second detection. The bytes are little-endian float32 rows of `COLUMNS`, brightest first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from processing.stars import StarTable

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

COLUMNS = ("y", "x", "flux", "hfr_px", "peak_adu")
KEPT_STARS = 300
"""Registration matches the 40 brightest and fits on all pairs; 300 is plenty (6 kB)."""

_DTYPE = np.dtype("<f4")


@dataclass(frozen=True, eq=False)
class StarList:
    """Stars as rows of `COLUMNS` (n, 5) float32, brightest first."""

    rows: F32

    def __post_init__(self) -> None:
        if self.rows.ndim != 2 or self.rows.shape[1] != len(COLUMNS):
            raise ValueError(f"a star list is (n, {len(COLUMNS)}), got {self.rows.shape}")

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def yx(self) -> F64:
        """``(n, 2)`` ``(y, x)`` positions, as `processing.register.register` takes them."""
        return self.rows[:, :2].astype(np.float64)

    def to_bytes(self) -> bytes:
        return np.ascontiguousarray(self.rows, dtype=_DTYPE).tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> StarList:
        """Raises ValueError when `blob` is not a whole number of rows."""
        row = _DTYPE.itemsize * len(COLUMNS)
        if len(blob) % row:
            raise ValueError(f"a star list is rows of {row} bytes, got {len(blob)} bytes")
        rows = np.frombuffer(blob, dtype=_DTYPE).reshape(-1, len(COLUMNS)).astype(np.float32)
        return cls(rows)

    @classmethod
    def of(cls, stars: StarTable, limit: int = KEPT_STARS) -> StarList:
        """The `limit` brightest stars of a star table (brightest first already)."""
        columns = [stars.y, stars.x, stars.flux, stars.hfr_px, stars.peak_adu]
        rows = np.column_stack(columns)[:limit] if len(stars) else np.empty((0, len(COLUMNS)))
        return cls(rows.astype(np.float32))
