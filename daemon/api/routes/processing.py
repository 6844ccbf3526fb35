"""Processing jobs: queue one for a night or a folder, follow it, fetch its results."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import FileResponse

from daemon import processing_jobs as service
from daemon.api.deps import EngineDep, RuntimeDep
from daemon.api.schemas.processing import JobCreate, JobRead

router = APIRouter(prefix="/api/processing", tags=["processing"])

_MEDIA = {"fits": "application/fits", "xisf": "application/octet-stream", "jpeg": "image/jpeg"}


@router.post("/jobs", status_code=status.HTTP_201_CREATED)
async def create_job(body: JobCreate, runtime: RuntimeDep, engine: EngineDep) -> JobRead:
    """Queue a job; it runs after the jobs before it. 404 for an unknown session, 422 for a
    folder that does not exist."""
    job_id = await runtime.worker.submit(
        body.options, session_id=body.session_id, folder=body.folder
    )
    return JobRead.model_validate(await asyncio.to_thread(service.get_job, engine, job_id))


@router.get("/jobs")
async def list_jobs(
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[JobRead]:
    """Jobs, newest first."""
    rows = await asyncio.to_thread(service.list_jobs, engine, limit, offset)
    return [JobRead.model_validate(row) for row in rows]


@router.get("/jobs/{job_id}")
async def get_job(job_id: int, engine: EngineDep) -> JobRead:
    """A job with its stage, progress, and once done its summary: per group the outputs,
    reference, every light's verdict and weight; masters; timings per stage."""
    return JobRead.model_validate(await asyncio.to_thread(service.get_job, engine, job_id))


@router.get("/jobs/{job_id}/groups/{group}/{kind}")
async def job_output(job_id: int, group: str, kind: str, engine: EngineDep) -> FileResponse:
    """One result file of a finished job: `kind` fits, xisf or jpeg (the stretched preview)."""
    path = await asyncio.to_thread(service.job_output, engine, job_id, group, kind)
    return FileResponse(path, media_type=_MEDIA[kind], filename=path.name)
