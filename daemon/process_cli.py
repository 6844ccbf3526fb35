"""`nightowl process FOLDER --out DIR`: process a folder of FITS files from any capture tool.

Frames are found in FOLDER and its subfolders (``.fits``, ``.fit``, ``.fts``) and grouped
from their headers alone (IMAGETYP in its common spellings, EXPTIME, FILTER, XBINNING, GAIN,
CCD-TEMP, OBJECT), so Siril's, NINA's and Nightowl's layouts all work. Results go to
``DIR/<target>_<filter>.fits`` / ``.xisf`` / ``.jpg`` with the rejection maps beside them
and the masters under ``DIR/masters/``. A progress bar goes to stderr; ``--json`` prints
the summary to stdout.

Lights are rejected relative to their group (``--reject-sigma``, ``--min-weight``) and,
when asked, by absolute limits (``--max-eccentricity``, ``--max-fwhm-px``, ``--min-stars``);
copies of a light are integrated once. A group that integrates fewer than half of its
lights is a warning on stderr, and with ``--strict`` the exit status is 1 (the results are
written all the same).

Then every target is finished with the default recipe (``--recipe R.json`` for another):
the picture and a preview per step go to ``DIR/finished/`` (see `processing.finish`); a
colour master without a WCS is plate solved (FOCALLEN, XPIXSZ) for its photometric colour
calibration. ``--linear-only`` stops at the linear masters.

``--local-normalization`` matches every light to the reference tile by tile before
integration; ``--drizzle 2 --pixfrac 0.8`` drizzles the lights onto a grid twice as fine
after it (`processing.drizzle`).

``--dask tcp://host:port`` (or ``NIGHTOWL_DASK_SCHEDULER``) runs the per-frame work on that
Dask cluster and the finishing on one of its workers, which must see FOLDER and DIR at the
same paths; without it a local process pool does the work (``--threads``). The summary's
``executor`` says which ran the job.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from processing.integrate import Rejection
from processing.register import Interpolation
from processing.subframes import SubframeRules, Weighting

if TYPE_CHECKING:
    from pydantic import ValidationError

    from processing.pipeline import PipelineResult

_RULES = SubframeRules()


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    process = commands.add_parser("process", help="calibrate, register and stack a folder")
    process.add_argument("folder", type=Path, help="folder of FITS files (subfolders too)")
    process.add_argument("--out", type=Path, required=True, help="folder for the results")
    process.add_argument("--reference", type=Path, help="a light whose pixel grid to use")
    process.add_argument("--no-crop", action="store_true", help="keep the full reference grid")
    process.add_argument(
        "--rejection",
        choices=[r.value for r in Rejection],
        default=Rejection.WINSORIZED.value,
        help="pixel rejection of the lights (default winsorized)",
    )
    process.add_argument(
        "--interpolation",
        choices=[i.value for i in Interpolation],
        default=Interpolation.LANCZOS4.value,
        help="resampling of the registration (default lanczos4; bicubic as Siril's register)",
    )
    process.add_argument(
        "--weighting",
        choices=[w.value for w in Weighting],
        default=Weighting.PSF_NOISE.value,
        help="frame weights (default psf_noise: PSF signal and inverse variance; psf_signal: "
        "sharpest stars; noise: lowest noise; none: equal)",
    )
    process.add_argument(
        "--threads",
        type=int,
        default=2,
        help="lights calibrated and registered at once, one worker process each "
        "(default 2; 1 runs everything in this process)",
    )
    stacking = process.add_argument_group("drizzle and local normalisation")
    stacking.add_argument(
        "--drizzle",
        type=int,
        default=1,
        metavar="SCALE",
        help="drizzle onto a grid SCALE times finer (2 or 3; default 1: off), for "
        "undersampled, well-dithered lights",
    )
    stacking.add_argument(
        "--pixfrac",
        type=float,
        default=1.0,
        metavar="F",
        help="drizzle drop size as a fraction of a pixel, 0.1-1 (default 1, as Siril's)",
    )
    stacking.add_argument(
        "--local-normalization",
        action="store_true",
        help="match each light to the reference tile by tile before integration "
        "(frames with different sky gradients)",
    )
    stacking.add_argument(
        "--ln-tile-px",
        type=int,
        default=256,
        metavar="PX",
        help="tile side of the local normalisation, px (default 256)",
    )
    rules = process.add_argument_group(
        "frame rejection",
        "a light is rejected when its FWHM, eccentricity or background lies more than "
        "K robust sigmas (1.4826 MAD, with a floor) above its group's median, or its star "
        "count as far below; absolute limits are off unless given",
    )
    rules.add_argument(
        "--reject-sigma",
        type=float,
        metavar="K",
        help=f"relative rejection threshold in sigmas (default {_RULES.reject_sigma:g})",
    )
    rules.add_argument(
        "--min-weight",
        type=float,
        metavar="W",
        help="reject a light below W x the median weight "
        f"(default {_RULES.min_weight:g}; 0 turns it off)",
    )
    rules.add_argument(
        "--max-eccentricity",
        type=float,
        metavar="E",
        help="reject a light whose stars' median eccentricity is above E (0-1)",
    )
    rules.add_argument(
        "--max-fwhm-px",
        type=float,
        metavar="F",
        help="reject a light whose stars' median FWHM is above F pixels",
    )
    rules.add_argument(
        "--min-stars", type=int, metavar="N", help="reject a light with fewer than N stars"
    )
    process.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when a group integrates fewer than half of its lights "
        "(the results are still written)",
    )
    finishing = process.add_mutually_exclusive_group()
    finishing.add_argument(
        "--recipe",
        type=Path,
        help="a recipe JSON file (`nightowl recipe default` prints one to edit); its stacking "
        "steps override the options above",
    )
    finishing.add_argument(
        "--linear-only", action="store_true", help="stop at the linear masters (no picture)"
    )
    process.add_argument(
        "--dask",
        metavar="tcp://HOST:PORT",
        help="run on the Dask cluster of this scheduler (default: NIGHTOWL_DASK_SCHEDULER; "
        "unset: a local process pool); its workers must see FOLDER and --out at the same paths",
    )
    process.add_argument("--json", action="store_true", help="print the summary as JSON")


def process_folder(args: argparse.Namespace) -> int:
    """Run the pipeline on a folder; exit status 0, or 1 with the reason on stderr."""
    from dataclasses import replace

    from pydantic import ValidationError
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from daemon.processing_options import FINISHED_DIR, ProcessingOptions, recipe_pipeline_config
    from processing.grouping import group_frames
    from processing.pipeline import PipelineError, run_pipeline, scan_folder, summary
    from processing.recipe import RecipeError, default_recipe, recipe_from_json

    # What is loaded by now lives as long as the command: out of the garbage collector's
    # reach (`gc.freeze`), the full collections of the masters' stage and of the exit do not
    # walk all of it again (~0.2 s on a small job).
    gc.freeze()
    limits = {
        name: getattr(args, name)
        for name in ("reject_sigma", "min_weight", "max_eccentricity", "max_fwhm_px", "min_stars")
        if getattr(args, name) is not None
    }
    try:
        options = ProcessingOptions(
            rejection=Rejection(args.rejection),
            interpolation=Interpolation(args.interpolation),
            weighting=Weighting(args.weighting),
            crop=not args.no_crop,
            reference=args.reference,
            threads=args.threads,
            drizzle=args.drizzle,
            pixfrac=args.pixfrac,
            local_normalization=args.local_normalization,
            ln_tile_px=args.ln_tile_px,
            **limits,
        )
    except ValidationError as e:
        return _fail(_options_error(e))
    try:
        recipe = (
            default_recipe() if args.recipe is None else recipe_from_json(args.recipe.read_bytes())
        )
        config = (
            recipe_pipeline_config(options, recipe) if args.recipe else options.pipeline_config()
        )
    except OSError as e:
        return _fail(f"--recipe {args.recipe}: {e.strerror}")
    except RecipeError as e:
        return _fail(f"--recipe {args.recipe} has problems: {e}")
    except ValueError as e:
        return _fail(f"--recipe {args.recipe}: {e}")
    scheduler, problem = _scheduler(args.dask)
    if problem is not None:
        return _fail(problem)
    if scheduler is not None:
        # The cluster's workers have working folders of their own: absolute paths only.
        config = replace(config, scheduler=scheduler)
        args.folder, args.out = args.folder.resolve(), args.out.resolve()
    try:
        frames, skipped = scan_folder(args.folder)
    except PipelineError as e:
        return _fail(str(e))
    for path, reason in skipped:
        print(f"nightowl process: skipped {path}: {reason}", file=sys.stderr)
    groups = group_frames(frames)
    if not groups:
        return _fail(f"no light frames among the {len(frames)} FITS files in {args.folder}")
    if args.reference is not None and not args.reference.is_file():
        return _fail(f"--reference {args.reference}: no such file")
    with (
        tqdm(total=1000, unit="", desc="processing", file=sys.stderr, leave=False) as bar,
        logging_redirect_tqdm(),  # log lines above the bar, not through it
    ):

        def progress(stage: str, fraction: float) -> None:
            bar.set_description(stage)
            bar.update(max(0, round(fraction * 1000) - bar.n))

        share = 1.0 if args.linear_only else 0.85
        try:
            result = run_pipeline(groups, args.out, config, lambda s, f: progress(s, f * share))
            report = summary(result)
            if not args.linear_only:
                # Imported here: a linear-only job needs neither (astropy's coordinates
                # and the colour catalogue are half a second of a small job's start).
                from daemon.settings import Settings
                from processing.finish import finish_targets, linear_masters, plate_solver

                solver = plate_solver(Settings().resolved_solver_cache_dir)
                masters = linear_masters(report)
                if scheduler is None:
                    report["finished"] = finish_targets(
                        masters,
                        recipe,
                        args.out / FINISHED_DIR,
                        lambda s, f: progress(s, share + (1 - share) * f),
                        solver,
                    )
                else:  # on one worker of the cluster
                    from processing.cluster import run_on_cluster

                    progress("finishing", share)
                    report["finished"] = run_on_cluster(
                        scheduler,
                        finish_targets,
                        masters,
                        recipe,
                        args.out / FINISHED_DIR,
                        lambda s, f: None,
                        solver,
                    )
        except (PipelineError, OSError) as e:
            return _fail(str(e))
    report["skipped"] = [{"path": str(path), "reason": reason} for path, reason in skipped]
    warnings = [warning for group in result.groups for warning in group.warnings]
    finished = report.get("finished", [])
    assert isinstance(finished, list)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(result)
        for picture in finished:
            _print_picture(picture)
    warnings += [f"{p['name']}: no picture: {p['error']}" for p in finished if "error" in p]
    if args.strict and warnings:
        return _fail("--strict: " + "; ".join(warnings))
    for warning in warnings:
        print(f"nightowl process: warning: {warning}", file=sys.stderr)
    return 0


def _print_report(result: PipelineResult) -> None:
    """The human-readable summary on stdout: per group what was integrated and why not."""
    for group in result.groups:
        print(
            f"{group.name}: {group.integrated} of {len(group.frames)} lights integrated, "
            f"reference {group.reference.name}"
        )
        for frame in group.frames:
            if not frame.accepted:
                print(f"  rejected {frame.path.name}: {frame.reason}")
        for note in group.notes:
            print(f"  note: {note}")
        for kind, path in group.outputs.items():
            print(f"  {kind:15s} {path}")
    timings = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in result.timings_s.items())
    print(f"timings: {timings}")


def _print_picture(picture: dict[str, object]) -> None:
    """One finished picture: where it is and what its steps noted."""
    if "error" in picture:
        return
    outputs = picture.get("outputs")
    assert isinstance(outputs, dict)
    print(f"{picture['name']}: finished picture {outputs.get('jpeg') or outputs.get('fits')}")
    for note in picture.get("notes", []):  # type: ignore[attr-defined]
        print(f"  note: {note}")


def _scheduler(option: str | None) -> tuple[str | None, str | None]:
    """(the Dask scheduler to run on, None) from ``--dask``, else from
    NIGHTOWL_DASK_SCHEDULER, else (None, None): a local pool; (None, the problem) for an
    address that is not ``tcp://host:port``."""
    from pydantic import ValidationError

    from daemon.settings import Settings
    from processing.cluster import scheduler_address_problem

    if option is not None:
        problem = scheduler_address_problem(option.strip())
        if problem is None:
            return option.strip(), None
        return None, (
            f"--dask {option!r} {problem}; give the Dask scheduler's address as "
            "tcp://host:port (e.g. tcp://192.168.1.20:8786)"
        )
    try:
        return Settings().dask_scheduler, None
    except ValidationError as e:
        return None, "; ".join(str(p["msg"]) for p in e.errors())


def _options_error(error: ValidationError) -> str:
    """Pydantic's errors as one line per option, in the command line's spelling."""
    lines = []
    for problem in error.errors():
        name = "--" + "-".join(str(part) for part in problem["loc"]).replace("_", "-")
        lines.append(f"{name}: {problem['msg']}")
    return "; ".join(lines)


def _fail(message: str) -> int:
    print(f"nightowl process: {message}", file=sys.stderr)
    return 1
