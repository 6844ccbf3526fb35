"""Processing jobs as the API shows them: the job rows, the result files of finished jobs,
and previews of a finished picture under another recipe. Queuing and running them is the
worker's (`daemon.worker`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from daemon.db.models import Frame, ProcessingJob, Target
from daemon.errors import Gone, NotFound, Refused
from daemon.events import record_event
from daemon.frame_owners import own_frames
from processing.recipe import (
    STRETCH_KINDS,
    HistogramStep,
    Recipe,
    RecipeError,
    StfStep,
    parse_recipe,
)
from sequences.frames import FrameType

if TYPE_CHECKING:
    from processing.stretch import StfParameters

OUTPUT_KINDS = ("fits", "xisf", "jpeg")

MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".fits": "application/fits",
    ".fit": "application/fits",
    ".fts": "application/fits",
    ".xisf": "application/octet-stream",
    ".json": "application/json",
}
"""Media types of a job's files by suffix; anything else is application/octet-stream."""

PREVIEW_SIZE_PX = 1024
"""Longer side of a recipe preview: enough for the page's picture, fast to compute."""

_STF_NOTE = re.compile(r"STF linked: shadows ([0-9.eE+-]+), midtones ([0-9.eE+-]+)")
"""The note a linked `stretch_stf` step leaves (`processing.finish`)."""


def list_jobs(engine: Engine, limit: int, offset: int) -> list[ProcessingJob]:
    """Jobs, newest first. Blocking."""
    with Session(engine) as db:
        query = select(ProcessingJob).order_by(ProcessingJob.id.desc()).limit(limit).offset(offset)
        return list(db.scalars(query))


def targets_with_lights(engine: Engine) -> list[dict[str, Any]]:
    """The targets a job across nights can stack: each with accepted lights, how many,
    over how many nights, and in which filters; by name; this daemon's lights only (another
    telescope's frames are on its own disk). Blocking."""
    mine = own_frames(engine)
    with Session(engine) as db:
        rows = db.execute(
            select(
                Target.name,
                func.count(Frame.id),
                func.count(Frame.session_id.distinct()),
            )
            .join(Frame, Frame.target_id == Target.id)
            .where(Frame.frame_type == FrameType.LIGHT, Frame.accepted.is_(True), *mine)
            .group_by(Target.name)
            .order_by(Target.name)
        ).all()
        filters = db.execute(
            select(Target.name, Frame.filter_name)
            .join(Frame, Frame.target_id == Target.id)
            .where(Frame.frame_type == FrameType.LIGHT, Frame.accepted.is_(True), *mine)
            .distinct()
        ).all()
    by_target: dict[str, list[str]] = {}
    for name, filter_name in filters:
        if filter_name is not None:
            by_target.setdefault(name, []).append(filter_name)
    return [
        {
            "name": name,
            "accepted_lights": lights,
            "nights": nights,
            "filters": sorted(by_target.get(name, [])),
        }
        for name, lights, nights in rows
    ]


def get_job(engine: Engine, job_id: int) -> ProcessingJob:
    """`NotFound` for an unknown id. Blocking."""
    with Session(engine) as db:
        row = db.get(ProcessingJob, job_id)
        if row is None:
            raise NotFound(f"no processing job {job_id}")
        return row


def job_output(engine: Engine, job_id: int, group: str, kind: str) -> Path:
    """The file of one result (`kind`: fits, xisf or jpeg) of a finished job; `NotFound` for
    an unknown job, result or kind, `Gone` (and a warning event) for a file no longer on
    disk. Blocking."""
    job = get_job(engine, job_id)
    if kind not in OUTPUT_KINDS:
        raise NotFound(f"no output kind {kind!r}; {', '.join(OUTPUT_KINDS)}")
    groups = {g["name"]: g for g in job.outputs.get("groups", [])}
    if group not in groups:
        raise NotFound(f"job {job_id} has no result {group!r} (yet)")
    path = Path(groups[group]["outputs"][kind])
    if not path.is_file():
        message = (
            f"job {job_id}, result {group!r}: its {kind} file is no longer on disk "
            "(moved or deleted outside Nightowl)"
        )
        data = {"job_id": job_id, "group": group, "path": str(path)}
        record_event(engine, "warning", "processing", message, data)
        raise Gone(message, path)
    return path


def job_file(engine: Engine, job_id: int, relative: str) -> Path:
    """A file inside the job's output folder, by its path relative to that folder (the
    paths in a job's summary are absolute: strip the job's `out_dir`). `NotFound` for an
    unknown job and for anything that is not a file inside the folder once resolved (``..``,
    absolute paths and symlinks out of it included: one answer, so nothing outside is
    told). Blocking."""
    job = get_job(engine, job_id)
    missing = NotFound(f"job {job_id} has no file {relative!r}")
    if job.out_dir is None:
        raise missing
    try:
        root = Path(job.out_dir).resolve(strict=True)
        path = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError, ValueError) as e:  # absent, a symlink loop, a NUL byte
        raise missing from e
    if not path.is_relative_to(root) or not path.is_file():
        raise missing
    return path


def media_type(path: Path) -> str:
    return MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


def finished_entry(
    engine: Engine, job_id: int, target: str | None, name: str | None
) -> dict[str, Any]:
    """One finished picture of a done job: its `finished` entry matching `target` and
    `name` (either may be None; with both None the job must have a single picture).
    `NotFound` when there is none (yet) or the choice is ambiguous. Blocking."""
    job = get_job(engine, job_id)
    entries = [
        e
        for e in job.outputs.get("finished", [])
        if "error" not in e
        and (target is None or e.get("target") == target)
        and (name is None or e.get("name") == name)
    ]
    if len(entries) != 1:
        which = ", ".join(f"{k} {v!r}" for k, v in (("target", target), ("name", name)) if v)
        found = "no finished picture" if not entries else f"{len(entries)} finished pictures"
        raise NotFound(
            f"job {job_id} has {found}{' for ' + which if which else ''}: "
            "name one by target or name"
        )
    entry: dict[str, Any] = entries[0]
    return entry


def preview_jpeg(
    engine: Engine, job_id: int, target: str | None, name: str | None, recipe: Recipe
) -> bytes:
    """A JPEG of a finished picture as `recipe` would make it: its steps from the first
    stretch on, applied to the picture's saved linear proxy (`processing.finish`).
    `NotFound` when the picture or its proxy is missing, `Refused` (field ``recipe``) when
    the recipe does not fit the picture. Blocking and CPU-heavy: run it in a thread."""
    entry = finished_entry(engine, job_id, target, name)
    proxy = entry.get("outputs", {}).get("proxy")
    if proxy is None or not Path(proxy).is_file():
        raise NotFound(f"job {job_id}: {entry.get('name')} has no linear proxy to preview")
    # Imported here: the finishing modules load only when a preview is asked for.
    from processing.finish import render_preview

    try:
        return render_preview(Path(proxy), recipe, max_size_px=PREVIEW_SIZE_PX)
    except ValueError as e:  # FinishError: the recipe does not fit this picture
        raise Refused("recipe", str(e)) from e


def histogram(
    engine: Engine,
    job_id: int,
    target: str | None,
    name: str | None,
    bins: int,
    upper: float | None,
) -> dict[str, Any]:
    """The histogram of a finished picture's linear proxy, for editing its stretch: counts
    per channel (`bins` equal bins over `range`) and the stretch the handles start from
    (`stf`; its `source`: ``recipe`` when the job's first stretch is a histogram step,
    ``job`` for the shadows and midtones its linked auto-STF noted, ``proxy`` for the
    proxy's own auto-STF otherwise, such as after an unlinked STF or an arcsinh stretch).
    `NotFound` when the picture or its proxy is missing. Blocking (about 0.1 s for a
    1024 px colour proxy)."""
    job = get_job(engine, job_id)
    entry = finished_entry(engine, job_id, target, name)
    proxy = entry.get("outputs", {}).get("proxy")
    if proxy is None or not Path(proxy).is_file():
        raise NotFound(f"job {job_id}: {entry.get('name')} has no linear proxy")
    # Imported here: the finishing modules load only when a histogram is asked for.
    from processing.finish import proxy_histogram, read_proxy
    from processing.stretch import StfConfig
    from processing.stretch import StfParameters as Transform

    start: StfParameters | None = None
    source, config = "proxy", StfConfig()
    try:
        steps = parse_recipe(job.config["recipe"]).finishing()
    except (KeyError, RecipeError):  # a job of an older daemon: no recipe in its config
        steps = ()
    first = next((s for s in steps if s.kind in STRETCH_KINDS), None)
    if isinstance(first, HistogramStep):
        start = Transform(first.shadows, first.midtones, first.highlights)
        source = "recipe"
    elif isinstance(first, StfStep):
        config = StfConfig(first.shadows_clip_mad, first.target_background)
        start = _noted_stf(entry) if first.linked else None
        source = "job" if start is not None else "proxy"
    try:
        image = read_proxy(Path(proxy))
    except ValueError as e:
        raise NotFound(f"job {job_id}: the proxy of {entry.get('name')} is unreadable: {e}") from e
    made = proxy_histogram(image, bins=bins, upper=upper, stf=start, config=config)
    channels = ["R", "G", "B"] if made.counts.shape[0] == 3 else ["L"]
    return {
        "name": entry.get("name"),
        "target": entry.get("target"),
        "channels": channels,
        "bins": made.counts.tolist(),
        "range": [0.0, made.upper],
        "stf": {
            "shadows": made.stf.shadows,
            "midtones": made.stf.midtones,
            "highlights": made.stf.highlights,
            "source": source,
        },
    }


def _noted_stf(entry: dict[str, Any]) -> StfParameters | None:
    """The shadows and midtones a linked auto-STF step noted in a picture's summary, or
    None (a summary without the note, values out of range)."""
    from processing.stretch import StfParameters as Transform

    for step in entry.get("steps", []):
        if step.get("kind") != "stretch_stf":
            continue
        for note in step.get("notes", []):
            found = _STF_NOTE.search(str(note))
            if found is None:
                continue
            try:
                return Transform(float(found[1]), float(found[2]))
            except ValueError:
                return None
    return None
