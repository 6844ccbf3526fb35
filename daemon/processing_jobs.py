"""Processing jobs as the API shows them: the job rows and the result files of finished jobs.
Queuing and running them is the worker's (`daemon.worker`)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from daemon.db.models import ProcessingJob
from daemon.errors import Gone, NotFound
from daemon.events import record_event

OUTPUT_KINDS = ("fits", "xisf", "jpeg")


def list_jobs(engine: Engine, limit: int, offset: int) -> list[ProcessingJob]:
    """Jobs, newest first. Blocking."""
    with Session(engine) as db:
        query = select(ProcessingJob).order_by(ProcessingJob.id.desc()).limit(limit).offset(offset)
        return list(db.scalars(query))


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
