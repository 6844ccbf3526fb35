"""Plate solving real images from other people, with no scale hint, beside astrometry.net.

Sets (in ../shared/realdata, outside the repository), each with a known centre:
- tetra3_esa: 8 star-tracker TIFFs, 11.4 x 8.6 deg; centre from astrometry.net's solution
  stored beside them.
- astropy_data: 2 DSS plate scans, 0.25 and 0.5 deg; centre from the plate solution in their
  header (which the solvers never see: they get the pixels only).
- siril_star_test: a 0.32 deg QHY268M crop; centre from its TAN-SIP header.
- seestar: 16 Bayer GRBG frames of M 94, 0.71 x 1.27 deg (2x2 superpixels for solving);
  night 1's centre from the real-data README, night 2's (field rotated) unknown: solved only.

Ours is `processing.solve.solve` as ``nightowl solve`` runs it with no FOCALLEN/XPIXSZ and no
``--scale-*``: scale-free (tetra3rs's multi-scale databases, then astrometry.net for small
fields when installed). Plain astrometry.net is ``solve-field`` on the file, scale-free (FITS
files as a copy of the pixels without the header's WCS), killed at ``--timeout``. Prints
solved/total, median centre error (arcsec) and median time per set and engine.

    .venv/bin/python bench/solve_real.py [--realdata DIR] [--timeout S] [--sets a,b]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from daemon.settings import Settings
from processing.io import encode_fits, read_image_for_solving
from processing.solve import SolveConfig, SolveError, separation_deg, solve
from processing.wcs_files import in_file_pixels

DEFAULT_REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
SEESTAR_NIGHT1_CENTRE_DEG = (192.7775, 41.1168)


@dataclass(frozen=True)
class Case:
    path: Path
    centre_deg: tuple[float, float] | None


def centre_of(header: fits.Header, width: int, height: int) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        ra, dec = WCS(header).all_pix2world([[(width - 1) / 2, (height - 1) / 2]], 0)[0]
    return float(ra), float(dec)


def image_header(path: Path) -> fits.Header:
    with fits.open(path) as hdus:
        return next(h.header for h in hdus if h.is_image and h.data is not None)


def cases(realdata: Path) -> dict[str, list[Case]]:
    sky = realdata / "solved_sky"
    solutions = sky / "tetra3_esa" / "astrometry_net_wcs"
    tetra3 = [
        Case(tiff, centre_of(fits.getheader(solutions / f"{tiff.stem}.wcs"), 1024, 768))
        for tiff in sorted((sky / "tetra3_esa").glob("*.tiff"))
    ]
    plates = []
    for path in sorted((sky / "astropy_data").glob("*.fits")) + sorted(
        (sky / "siril_star_test").glob("*.fit*")
    ):
        header = image_header(path)
        plates.append(Case(path, centre_of(header, header["NAXIS1"], header["NAXIS2"])))
    seestar = [
        Case(path, SEESTAR_NIGHT1_CENTRE_DEG if "night1" in path.parent.name else None)
        for path in sorted((realdata / "seestar").glob("*/*.fit"))
    ]
    return {
        "tetra3_esa (11 deg TIFF)": tetra3,
        "astropy_data (0.25-0.5 deg DSS)": [c for c in plates if "astropy" in str(c.path)],
        "siril_star_test (0.32 deg)": [c for c in plates if "siril" in str(c.path)],
        "seestar (0.71 x 1.27 deg Bayer)": seestar,
    }


def ours(case: Case, cache_dir: Path, timeout_s: float) -> tuple[tuple[float, float] | None, float]:
    image = read_image_for_solving(case.path)
    started = time.perf_counter()
    try:
        solution = solve(
            image.pixels,
            scale=None,
            cache_dir=cache_dir,
            config=SolveConfig(astrometry_net_timeout_s=timeout_s),
        )
    except SolveError as e:
        why = "; ".join([str(e), *getattr(e, "__notes__", [])])
        print(f"    nightowl failed on {case.path.name}: {e.reason}: {why}", flush=True)
        return None, time.perf_counter() - started
    seconds = time.perf_counter() - started
    solution = in_file_pixels(solution, image.binning, image.image.shape[-2:])
    return (solution.ra_deg, solution.dec_deg), seconds


def solve_field_input(case: Case, folder: Path) -> tuple[Path, int, int]:
    """The file solve-field is given (a FITS file as a copy of its pixels only, so no WCS or
    pointing card helps it), and the image's width and height."""
    image = read_image_for_solving(case.path)
    height, width = image.image.shape[-2:]
    if image.file_format != "fits":
        return case.path, width, height
    copy = folder / "frame.fits"
    copy.write_bytes(encode_fits(image.image, []))
    return copy, width, height


def plain_solve_field(case: Case, timeout_s: float) -> tuple[tuple[float, float] | None, float]:
    with tempfile.TemporaryDirectory(prefix="bench-solve-field-") as tmp:
        folder = Path(tmp)
        source, width, height = solve_field_input(case, folder)
        command = [
            "solve-field", str(source), "--dir", str(folder), "--out", "result",
            "--overwrite", "--no-plots", "--new-fits", "none", "--cpulimit", str(int(timeout_s)),
        ]  # fmt: skip
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        seconds = time.perf_counter() - started
        wcs_path = folder / "result.wcs"
        if not wcs_path.exists():
            return None, seconds
        return centre_of(fits.getheader(wcs_path), width, height), seconds


def report(
    name: str, engine: str, results: list[tuple[Case, tuple[float, float] | None, float]]
) -> None:
    solved = [(c, found) for c, found, _ in results if found is not None]
    errors = [separation_deg(*found, *c.centre_deg) * 3600 for c, found in solved if c.centre_deg]
    error = f"{statistics.median(errors):8.1f}" if errors else "     n/a"
    seconds = statistics.median(s for _, _, s in results)
    print(
        f"{name:34s} {engine:15s} {len(solved):3d}/{len(results):<3d} {error} {seconds:8.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    parser.add_argument("--timeout", type=float, default=30.0, help="astrometry.net wall time, s")
    parser.add_argument("--sets", help="comma-separated set name prefixes (default: all)")
    args = parser.parse_args()
    if not args.realdata.is_dir():
        sys.exit(f"no real data at {args.realdata}")
    cache_dir = Settings().resolved_solver_cache_dir
    have_solve_field = shutil.which("solve-field") is not None
    print(f'{"set":34s} {"engine":15s} solved  err(")  time(s)  (median; error vs known centre)')
    for name, group in cases(args.realdata).items():
        if args.sets and not any(name.startswith(p) for p in args.sets.split(",")):
            continue
        report(name, "nightowl", [(c, *ours(c, cache_dir, args.timeout)) for c in group])
        if have_solve_field:
            report(name, "solve-field", [(c, *plain_solve_field(c, args.timeout)) for c in group])
    if not have_solve_field:
        print("solve-field is not installed (make solver): astrometry.net's column left out")


if __name__ == "__main__":
    main()
