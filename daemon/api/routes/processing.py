"""Processing jobs: queue one for a night or a folder, follow it, fetch its results."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, status
from fastapi.responses import FileResponse

from daemon import processing_jobs as service
from daemon.api.deps import EngineDep, RuntimeDep
from daemon.api.responses import responses
from daemon.api.schemas.common import Offset, PageLimit, RecordId
from daemon.api.schemas.processing import JobCreate, JobRead

router = APIRouter(prefix="/api/processing", tags=["processing"])

_MEDIA = {"fits": "application/fits", "xisf": "application/octet-stream", "jpeg": "image/jpeg"}


@router.post("/jobs", status_code=status.HTTP_201_CREATED, responses=responses(404))
async def create_job(body: JobCreate, runtime: RuntimeDep, engine: EngineDep) -> JobRead:
    """Queue a job; it runs after the jobs before it. 404 for an unknown session, 422 for a
    folder that does not exist."""
    job_id = await runtime.worker.submit(
        body.options, session_id=body.session_id, folder=body.folder
    )
    return JobRead.model_validate(await asyncio.to_thread(service.get_job, engine, job_id))


@router.get("/jobs")
async def list_jobs(engine: EngineDep, limit: PageLimit = 50, offset: Offset = 0) -> list[JobRead]:
    """Jobs, newest first."""
    rows = await asyncio.to_thread(service.list_jobs, engine, limit, offset)
    return [JobRead.model_validate(row) for row in rows]


@router.get("/jobs/{job_id}", responses=responses(404))
async def get_job(job_id: RecordId, engine: EngineDep) -> JobRead:
    """A job with its stage, progress, and once done its summary: per group the outputs,
    reference, every light's verdict and weight; masters; timings per stage."""
    return JobRead.model_validate(await asyncio.to_thread(service.get_job, engine, job_id))


@router.get(
    "/jobs/{job_id}/groups/{group}/{kind}",
    response_class=FileResponse,
    responses=responses(404, 410),
)
async def job_output(job_id: RecordId, group: str, kind: str, engine: EngineDep) -> FileResponse:
    """One result file of a finished job: `kind` fits, xisf or jpeg (the stretched preview);
    410 with its path when the file is no longer on disk."""
    path = await asyncio.to_thread(service.job_output, engine, job_id, group, kind)
    return FileResponse(path, media_type=_MEDIA[kind], filename=path.name)
