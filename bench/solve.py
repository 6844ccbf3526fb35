"""Plate solving: blind and hinted solve time and centre error over random real-sky fields.

Fields are rendered by the simulator's own renderer (cabaret) from the offline catalog with the
simulator's camera and optics (2048 x 1536, 3.44 "/px, 1 s, 1" seeing), but through a WCS of
our choosing: random pointings uniform on the sky (Dec -85..+85, so the galactic plane and the
poles come up), random roll, a quarter mirrored, 30 hot pixels. Prints the one-time database
build and load, then median/max of the solve time (star detection included) and the centre
error, for tetra3rs and, in the same run, astrometry.net's solve-field when it is installed.
The hinted solves get the true centre moved by up to 2 deg and a 5 deg radius. The "no scale"
rows solve the same fields as a file without FOCALLEN would (`nightowl solve` with no
options), against the multi-scale database; its build is timed too unless --solver-cache
names a folder that already holds it (e.g. ~/.cache/nightowl/solver).

    .venv/bin/python bench/solve.py [--fields 20] [--seed 1] [--solver-cache DIR]
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cabaret
import numpy as np
import numpy.typing as npt
from astropy.wcs import WCS
from cabaret.queries import GaiaSQLiteSource

from processing import astrometry_net
from processing.catalog import star_catalog_sqlite
from processing.solve import (
    BLIND_FOV,
    Engine,
    FovRange,
    ScaleRange,
    SkyHint,
    SolveConfig,
    SolveError,
    database_path,
    ensure_database,
    forget_databases,
    load_database,
    separation_deg,
    solve,
)
from processing.stars import plate_scale_arcsec_px

SHAPE = (1536, 2048)
SCALE_ARCSEC_PX = plate_scale_arcsec_px(10.0, 600.0)
SCALE = ScaleRange.around(SCALE_ARCSEC_PX)


@dataclass(frozen=True)
class Field:
    image: npt.NDArray[np.uint16]
    ra_deg: float
    dec_deg: float
    hint: SkyHint


def render_fields(catalog: Path, count: int, seed: int) -> list[Field]:
    rng = np.random.default_rng(seed)
    observatory = cabaret.Observatory(
        camera=cabaret.Camera(
            width=SHAPE[1], height=SHAPE[0], pitch=10.0, gain=1.0, well_depth=50_000
        ),
        telescope=cabaret.Telescope(focal_length=0.6, diameter=0.1),
        site=cabaret.Site(sky_background=150, seeing=1.0),
    )
    fields = []
    low, high = math.sin(math.radians(-85.0)), math.sin(math.radians(85.0))
    for index in range(count):
        ra = float(rng.uniform(0.0, 360.0))
        dec = math.degrees(math.asin(rng.uniform(low, high)))
        s, t = SCALE_ARCSEC_PX / 3600.0, rng.uniform(0.0, 2 * math.pi)
        cd = np.array([[-s * math.cos(t), s * math.sin(t)], [s * math.sin(t), s * math.cos(t)]])
        if index % 4 == 0:
            cd[:, 0] *= -1.0
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [ra, dec]
        wcs.wcs.crpix = [(SHAPE[1] + 1) / 2, (SHAPE[0] + 1) / 2]
        wcs.wcs.cd = cd
        image = observatory.generate_image(
            ra=ra,
            dec=dec,
            exp_time=1.0,
            wcs=wcs,
            tap_source=GaiaSQLiteSource(str(catalog)),
            seed=seed * 1000 + index,
        )
        image.flat[rng.integers(0, image.size, 30)] = rng.uniform(5_000, 60_000, 30)
        offset, direction = rng.uniform(0.0, 2.0), rng.uniform(0.0, 2 * math.pi)
        hint_dec = max(-90.0, min(90.0, dec + offset * math.cos(direction)))
        hint_ra = (ra + offset * math.sin(direction) / max(math.cos(math.radians(dec)), 0.05)) % 360
        fields.append(
            Field(
                np.clip(image, 0, 65_535).astype(np.uint16),
                ra,
                dec,
                SkyHint(hint_ra, hint_dec, radius_deg=5.0),
            )
        )
    return fields


def run(
    fields: list[Field], cache_dir: Path, engine: Engine, hinted: bool, scale: ScaleRange | None
) -> str:
    config = SolveConfig(engines=(engine,), astrometry_net_timeout_s=120.0)
    times, errors, failures = [], [], 0
    for field in fields:
        started = time.perf_counter()
        try:
            solution = solve(
                field.image,
                scale=scale,
                cache_dir=cache_dir,
                hint=field.hint if hinted else None,
                config=config,
            )
        except SolveError:
            failures += 1
            continue
        times.append(time.perf_counter() - started)
        errors.append(
            3600 * separation_deg(field.ra_deg, field.dec_deg, solution.ra_deg, solution.dec_deg)
        )
    name = f"{engine.value} {'hinted' if hinted else 'blind'}{'' if scale else ', no scale'}"
    solved = f"{len(times)}/{len(fields)}"
    if not times:
        return f"{name:26s} {solved:>7s}"
    return (
        f"{name:26s} {solved:>7s} {statistics.median(times):9.3f} {max(times):7.3f}"
        f" {statistics.median(errors):10.2f} {max(errors):7.2f}"
    )


def prepare_database(cache_dir: Path, fov: FovRange, once_per: str) -> None:
    """Build (timed, unless the folder holds it) and load (timed) the database for `fov`."""
    built = database_path(cache_dir, fov).exists()
    started = time.perf_counter()
    path = ensure_database(cache_dir, fov)
    build = "found built" if built else f"built in {time.perf_counter() - started:.1f} s"
    forget_databases()
    started = time.perf_counter()
    load_database(path)
    load_s = time.perf_counter() - started
    print(
        f"database for {fov} fields: {build} (once per {once_per}), "
        f"{path.stat().st_size / 1e6:.0f} MB, loaded in {load_s:.2f} s (once per process)"
    )


def main(count: int, seed: int, solver_cache: Path | None) -> None:
    logging.getLogger("tetra3").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="nightowl-bench-solve-") as tmp:
        cache_dir = Path(tmp)
        catalog = star_catalog_sqlite(cache_dir)
        prepare_database(cache_dir, FovRange.for_frames(SCALE, SHAPE[1]), "camera")
        blind_cache = solver_cache or cache_dir
        prepare_database(blind_cache, BLIND_FOV, "user")
        started = time.perf_counter()
        fields = render_fields(catalog, count, seed)
        print(f"rendered {count} fields in {time.perf_counter() - started:.1f} s")
        header = ("solved", "median s", "max s", 'median err"', 'max err"')
        widths = (7, 9, 7, 10, 7)
        cells = (f"{c:>{w}s}" for c, w in zip(header, widths, strict=True))
        print(f"{'solver':26s} " + " ".join(cells))
        for hinted in (False, True):
            print(run(fields, cache_dir, Engine.TETRA3RS, hinted, SCALE))
        for hinted in (False, True):
            print(run(fields, blind_cache, Engine.TETRA3RS, hinted, None))
        if astrometry_net.available():
            for hinted in (False, True):
                print(run(fields, cache_dir, Engine.ASTROMETRY_NET, hinted, SCALE))
        else:
            print("astrometry.net: solve-field is not installed (Debian: astrometry.net and")
            print("  astrometry-data-tycho2); nothing to compare with in this run")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--solver-cache",
        type=Path,
        help="folder holding (or to keep) the multi-scale database; default: a temporary one",
    )
    arguments = parser.parse_args()
    main(arguments.fields, arguments.seed, arguments.solver_cache)
