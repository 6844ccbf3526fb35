"""Processing jobs: queue one for a night or a folder, follow it, fetch its results."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from daemon.api.deps import EngineDep, RuntimeDep
from daemon.api.errors import unprocessable
from daemon.api.schemas.processing import JobCreate, JobRead
from daemon.db.models import ProcessingJob
from processing.pipeline import PipelineError

router = APIRouter(prefix="/api/processing", tags=["processing"])

_MEDIA = {"fits": "application/fits", "xisf": "application/octet-stream", "jpeg": "image/jpeg"}


@router.post("/jobs", status_code=status.HTTP_201_CREATED)
async def create_job(body: JobCreate, runtime: RuntimeDep, engine: EngineDep) -> JobRead:
    """Queue a job; it runs after the jobs before it. 404 for an unknown session, 422 for a
    folder that does not exist."""
    try:
        job_id = await runtime.worker.submit(
            body.options, session_id=body.session_id, folder=body.folder
        )
    except KeyError as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no session {body.session_id}") from e
    except PipelineError as e:
        raise unprocessable("folder", f"{e}; give a folder on the daemon's machine") from e
    return await asyncio.to_thread(_job, engine, job_id)


@router.get("/jobs")
async def list_jobs(
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[JobRead]:
    """Jobs, newest first."""

    def query() -> list[JobRead]:
        with Session(engine) as db:
            rows = db.scalars(
                select(ProcessingJob).order_by(ProcessingJob.id.desc()).limit(limit).offset(offset)
            )
            return [JobRead.model_validate(row) for row in rows]

    return await asyncio.to_thread(query)


@router.get("/jobs/{job_id}")
async def get_job(job_id: int, engine: EngineDep) -> JobRead:
    """A job with its stage, progress, and once done its summary: per group the outputs,
    reference, every light's verdict and weight; masters; timings per stage."""
    return await asyncio.to_thread(_job, engine, job_id)


@router.get("/jobs/{job_id}/groups/{group}/{kind}")
async def job_output(job_id: int, group: str, kind: str, engine: EngineDep) -> FileResponse:
    """One result file of a finished job: `kind` fits, xisf or jpeg (the stretched preview)."""
    job = await asyncio.to_thread(_job, engine, job_id)
    if kind not in _MEDIA:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no output kind {kind!r}; fits, xisf, jpeg")
    groups = {g["name"]: g for g in job.outputs.get("groups", [])}
    if group not in groups:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"job {job_id} has no result {group!r} (yet)"
        )
    path = Path(groups[group]["outputs"][kind])
    if not await asyncio.to_thread(path.is_file):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{path.name} is no longer on disk")
    return FileResponse(path, media_type=_MEDIA[kind], filename=path.name)


def _job(engine: Engine, job_id: int) -> JobRead:
    with Session(engine) as db:
        row = db.get(ProcessingJob, job_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no processing job {job_id}")
        return JobRead.model_validate(row)
