"""The `nightowl` command (also `python -m daemon`).

    nightowl serve   run the daemon's HTTP API (default command)
    nightowl sim     run the Alpaca simulator rig alone, e.g. for a daemon elsewhere
    nightowl solve   plate-solve a FITS frame offline
    nightowl run     run a sequence document headless and print its progress
    nightowl process calibrate, register and stack a folder of FITS files
    nightowl finish  finish linear masters into a picture with a recipe
    nightowl recipe  print the default recipe, or check one
    nightowl import-nina  import a NINA Advanced Sequencer file or a .hrz horizon
    nightowl target  find an object by name or read coordinates (both forms printed)

Settings come from ``NIGHTOWL_*`` environment variables (see `daemon.settings.Settings`).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from daemon import finish_cli, nina_cli, process_cli, targets_cli

if TYPE_CHECKING:
    from daemon.settings import Settings
    from processing.solve import ScaleRange

log = logging.getLogger("nightowl")

_GRACEFUL_SHUTDOWN_S = 5


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(prog="nightowl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"nightowl {version('nightowl')}")
    parser.set_defaults(command="serve", host=None, port=None)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the daemon's HTTP API")
    serve.add_argument("--host", help="listen address (NIGHTOWL_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (NIGHTOWL_PORT, default 8000)")
    sim = commands.add_parser("sim", help="run the Alpaca simulator rig in the foreground")
    sim.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=11111, help="listen port (default 11111)")
    sim.add_argument("--run-dir", type=Path, default=None, help="default: DATA_DIR/simulator")
    solve = commands.add_parser(
        "solve",
        help="plate-solve an image offline",
        description="Plate-solve an image offline. Accepted: FITS (any BITPIX, colour, or Bayer "
        "with BAYERPAT, also fpack .fz), XISF, TIFF, PNG and JPEG.",
    )
    solve.add_argument("image", type=Path, help="FITS, XISF, TIFF, PNG or JPEG file")
    solve.add_argument("--ra", type=float, help="hint: RA of the centre, deg (with --dec)")
    solve.add_argument("--dec", type=float, help="hint: Dec of the centre, deg (with --ra)")
    solve.add_argument("--radius", type=float, default=5.0, help="hint radius, deg (default 5)")
    solve.add_argument(
        "--scale-low",
        type=float,
        help="arcsec/px; default: FOCALLEN and XPIXSZ -20 %%, without them any scale",
    )
    solve.add_argument(
        "--scale-high",
        type=float,
        help="arcsec/px; default: FOCALLEN and XPIXSZ +20 %%, without them any scale",
    )
    solve.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    solve.add_argument("--json", action="store_true", help="print the solution as JSON")
    solve.add_argument(
        "--write-wcs",
        action="store_true",
        help="add the WCS to a FITS file's header; for other formats write <stem>.wcs "
        "(header only) and <stem>.new (a FITS copy with the WCS) beside it, as solve-field does",
    )
    run = commands.add_parser("run", help="run a sequence document headless")
    run.add_argument("document", type=Path, help="sequence JSON (a template or an example)")
    run.add_argument(
        "--target",
        nargs=3,
        action="append",
        metavar=("NAME", "RA_HOURS", "DEC_DEG"),
        help="drop a target into the document's first target container (repeatable)",
    )
    run.add_argument(
        "--simulated-clock",
        metavar="START_ISO",
        help="rehearse on a simulated clock starting at this UTC time (waits jump ahead)",
    )
    run.add_argument(
        "--ignore-issues", action="store_true", help="run even when validation finds problems"
    )
    process_cli.add_parser(commands)
    finish_cli.add_parsers(commands)
    nina_cli.add_parser(commands)
    targets_cli.add_parser(commands)
    return parser


def _settings(**overrides: Any) -> Settings:
    # Imported here: `nightowl process` needs no settings, and they import astropy's
    # coordinates (half a second of a small job's start).
    from pydantic import ValidationError

    from daemon.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        lines = [
            f"  NIGHTOWL_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in e.errors()
        ]
        _settings_error("invalid settings:\n" + "\n".join(lines))


def _settings_error(message: str) -> NoReturn:
    """Exit status 2, as for a bad command line: the daemon cannot run as configured."""
    print(f"nightowl: {message}", file=sys.stderr)
    sys.exit(2)


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from daemon.app import create_app
    from drivers.profile import ProfileError, load_profile

    settings = _settings(host=args.host, port=args.port)
    if (problem := settings.exposure_problem()) is not None:
        _settings_error(problem)
    if settings.equipment_profile is not None:
        try:
            load_profile(settings.equipment_profile)
        except ProfileError as e:
            _settings_error(f"{e}\n  (NIGHTOWL_EQUIPMENT_PROFILE)")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # An open event stream (a browser tab) must not hold up a stop: the running night
        # is interrupted and resumable only once the lifespan's shutdown runs.
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )


def sim(args: argparse.Namespace) -> None:
    from daemon.simulator.rig import SimulatorError, SimulatorRig

    settings = _settings()
    rig = SimulatorRig(
        run_dir=args.run_dir or settings.data_dir / "simulator",
        cache_dir=settings.resolved_cache_dir,
        host=args.host,
        port=args.port,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        rig.start()
    except SimulatorError as e:
        sys.exit(f"nightowl sim: {e}")
    print(f"Alpaca simulators serving on {rig.url} (Ctrl-C stops them)", flush=True)
    try:
        while not stop.wait(1.0):
            if not rig.running:
                sys.exit(f"nightowl sim: the simulator exited; see {rig.log_path}")
    finally:
        rig.stop()


def solve_frame(args: argparse.Namespace) -> None:
    """Solve one image file; exit 1 with the reason on failure."""
    from processing.io import (
        dec_deg_to_sexagesimal,
        ra_hours_to_sexagesimal,
        read_image_for_solving,
        write_atomic,
    )
    from processing.solve import (
        ScaleRange,
        SkyHint,
        SolveConfig,
        SolveError,
        SolverDatabaseError,
        fits_with_wcs,
        solve,
    )
    from processing.wcs_files import fits_copy, in_file_pixels, sidecar_paths, wcs_file

    path: Path = args.image

    def fail(reason: str, message: str) -> NoReturn:
        if args.json:
            print(json.dumps({"error": message, "reason": reason}))
        sys.exit(f"nightowl solve: {path}: {message}")

    settings = _settings()
    try:
        frame = read_image_for_solving(path)
    except (OSError, ValueError) as e:
        fail("unreadable", f"cannot read the image: {e}")
    data, header = frame.pixels, frame.header
    hint = None
    if (args.ra is None) != (args.dec is None):
        fail("usage", "give --ra and --dec together")
    try:
        if args.ra is not None:
            hint = SkyHint(args.ra % 360.0, args.dec, args.radius)
        scale = _scale_range(args, header)
        if scale is not None and frame.binning > 1:  # the solver sees Bayer superpixels
            scale = ScaleRange(
                scale.low_arcsec_px * frame.binning, scale.high_arcsec_px * frame.binning
            )
        config = SolveConfig(
            timeout_s=args.timeout, cache_max_bytes=settings.solver_cache_max_mb * 1_000_000
        )
    except ValueError as e:
        fail("usage", str(e))
    if scale is None:
        log.info(
            "no usable FOCALLEN and XPIXSZ in the header and no --scale-low/--scale-high: "
            "searching every field size (the known scale is faster)"
        )
    try:
        solution = solve(
            data,
            scale=scale,
            cache_dir=settings.resolved_solver_cache_dir,
            hint=hint,
            config=config,
        )
    except SolveError as e:
        fail(e.reason, "; ".join([str(e), *getattr(e, "__notes__", [])]))
    except SolverDatabaseError as e:
        fail("database", str(e))
    solution = in_file_pixels(solution, frame.binning, frame.image.shape[-2:])
    written = ""
    if args.write_wcs:
        try:
            if frame.file_format == "fits":
                write_atomic(path, fits_with_wcs(path.read_bytes(), solution))
                written = "WCS written into the header"
            else:
                wcs_path, new_path = sidecar_paths(path)
                write_atomic(wcs_path, wcs_file(solution, frame.image.shape[-2:]))
                write_atomic(new_path, fits_copy(frame, solution, path.name))
                written = f"WCS written to {wcs_path.name} and {new_path.name}"
        except (OSError, ValueError) as e:
            fail("write_wcs", f"solved, but cannot write the WCS: {e}")
    if args.json:
        print(json.dumps(solution.as_dict()))
        return
    ra_hours = solution.ra_deg / 15.0
    print(f"{path}: solved in {solution.seconds:.2f} s ({solution.engine})")
    print(f"  centre    RA {ra_hours_to_sexagesimal(ra_hours)} ({solution.ra_deg:.5f} deg)")
    print(
        f"            Dec {dec_deg_to_sexagesimal(solution.dec_deg)} ({solution.dec_deg:+.5f} deg)"
    )
    print(f"  scale     {solution.scale_arcsec_px:.4f} arcsec/px")
    print(f"  rotation  {solution.rotation_deg:.2f} deg (position angle of +y, east of north)")
    print(f"  parity    {solution.parity.value}")
    print(f"  matched   {solution.matched} stars, residual {solution.residual_arcsec:.2f} arcsec")
    if written:
        print(f"  {written}")


def _scale_range(args: argparse.Namespace, header: dict[str, object]) -> ScaleRange | None:
    """From --scale-low/--scale-high, else from FOCALLEN and XPIXSZ (the binned pixel, as NINA
    and Nightowl write it) +- 20 %, else None: any scale (some tools write 0 or nothing).
    Raises ValueError for a lone or bad --scale-*."""
    from processing.solve import ScaleRange
    from processing.stars import plate_scale_arcsec_px

    if (args.scale_low is None) != (args.scale_high is None):
        raise ValueError("give --scale-low and --scale-high together")
    if args.scale_low is not None:
        return ScaleRange(args.scale_low, args.scale_high)
    focal_mm = _positive_card(header, "FOCALLEN")
    pixel_um = _positive_card(header, "XPIXSZ") or _positive_card(header, "YPIXSZ")
    if focal_mm is None or pixel_um is None:
        return None
    return ScaleRange.around(plate_scale_arcsec_px(pixel_um, focal_mm))


def _positive_card(header: dict[str, object], keyword: str) -> float | None:
    value = header.get(keyword)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


class _PrintedEvents(logging.Filter):
    """`nightowl run` prints the run's events itself, one line each: their log records (the
    runner's and the event table's) would repeat every one of them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "daemon.events":
            args = record.args
            return not (isinstance(args, tuple) and args and args[0] == "sequence")
        return not (record.name == "sequences.runner" and record.exc_info is None)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # tetra3rs forwards its Rust log records, hundreds per database build.
    logging.getLogger("tetra3").setLevel(logging.WARNING)
    if args.command == "sim":
        sim(args)
    elif args.command == "solve":
        solve_frame(args)
    elif args.command == "process":
        sys.exit(process_cli.process_folder(args))
    elif args.command == "finish":
        sys.exit(finish_cli.finish_masters(args))
    elif args.command == "recipe":
        sys.exit(finish_cli.recipe_command(args))
    elif args.command == "import-nina":
        sys.exit(nina_cli.import_nina_command(args))
    elif args.command == "target":
        sys.exit(targets_cli.target_command(args))
    elif args.command == "run":
        from daemon.headless import run_document

        for handler in logging.getLogger().handlers:
            handler.addFilter(_PrintedEvents())

        settings = _settings(
            clock="simulated" if args.simulated_clock else None,
            clock_start=args.simulated_clock,
        )
        sys.exit(run_document(settings, args.document, args.target or [], args.ignore_issues))
    else:
        serve(args)


if __name__ == "__main__":
    main()
