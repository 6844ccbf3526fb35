"""Processing jobs: queue one for a night, a target across nights or a folder, follow it,
cancel it, fetch its results; finish a done job again with another recipe, preview a recipe
on a finished picture."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import FileResponse, Response

from daemon import processing_jobs as service
from daemon import recipes
from daemon.api.deps import EngineDep, RuntimeDep
from daemon.api.responses import responses
from daemon.api.schemas.common import Offset, PageLimit, RecordId
from daemon.api.schemas.processing import (
    FinishCreate,
    HistogramRead,
    JobCreate,
    JobRead,
    PreviewCreate,
    TargetLights,
)

router = APIRouter(prefix="/api/processing", tags=["processing"])

PictureName = Annotated[
    str | None, Query(max_length=200, description="the picture's file name (its `name`)")
]
PictureTarget = Annotated[str | None, Query(max_length=200, description="the picture's target")]
HistogramBins = Annotated[int, Query(ge=16, le=4096, description="bins over the range")]
# The lowest upper level is processing.finish.HISTOGRAM_MIN_UPPER (not imported here: the
# finishing modules load only when a picture is asked for).
HistogramUpper = Annotated[
    float | None,
    Query(ge=1e-6, le=1.0, description="the range's upper level (default: chosen from the data)"),
]

_MEDIA = {"fits": "application/fits", "xisf": "application/octet-stream", "jpeg": "image/jpeg"}


@router.post("/jobs", status_code=status.HTTP_201_CREATED, responses=responses(404))
async def create_job(body: JobCreate, runtime: RuntimeDep, engine: EngineDep) -> JobRead:
    """Queue a job; it runs after the jobs before it. 404 for an unknown session, target or
    recipe, 422 for a folder that does not exist, a target without accepted lights (in the
    filter) or a recipe with problems (each with its path in the recipe, such as
    ``steps[3].smoothing``, under ``loc`` ``["body", "recipe", ...]``). The job's config
    keeps the full recipe document (and a target job's `target` and `filter`)."""
    recipe = await asyncio.to_thread(recipes.job_recipe, engine, body.recipe, body.recipe_id)
    job_id = await runtime.worker.submit(
        body.options,
        session_id=body.session_id,
        folder=body.folder,
        target=body.target,
        filter_name=body.filter,
        recipe=recipe,
        linear_only=body.linear_only,
    )
    return JobRead.model_validate(await asyncio.to_thread(service.get_job, engine, job_id))


@router.get("/targets")
async def list_targets(engine: EngineDep) -> list[TargetLights]:
    """The targets with accepted lights, for a job of one target across nights (`target`
    and `filter` of POST /api/processing/jobs)."""
    rows = await asyncio.to_thread(service.targets_with_lights, engine)
    return [TargetLights.model_validate(row) for row in rows]


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


@router.post("/jobs/{job_id}/cancel", responses=responses(404, 409))
async def cancel_job(job_id: RecordId, runtime: RuntimeDep, engine: EngineDep) -> JobRead:
    """Cancel a queued or running job: it ends failed with the error ``cancelled``; a
    running job's process is stopped (on a Dask cluster, the scheduler drops its tasks).
    409 for a job that has already ended."""
    await runtime.worker.cancel(job_id)
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


@router.post(
    "/jobs/{job_id}/finish", status_code=status.HTTP_201_CREATED, responses=responses(404, 409)
)
async def finish_again(
    job_id: RecordId, body: FinishCreate, runtime: RuntimeDep, engine: EngineDep
) -> JobRead:
    """Queue a new job that finishes this done job's linear masters again with another
    recipe (no stacking): its summary has `finished` like a job's. 409 unless the job is
    done, 422 for a recipe with problems."""
    recipe = await asyncio.to_thread(recipes.job_recipe, engine, body.recipe, body.recipe_id)
    new_id = await runtime.worker.submit_finish(job_id, recipe or recipes.default_job_recipe())
    return JobRead.model_validate(await asyncio.to_thread(service.get_job, engine, new_id))


@router.get(
    "/jobs/{job_id}/files/{path:path}", response_class=FileResponse, responses=responses(404)
)
async def job_file(job_id: RecordId, path: str, engine: EngineDep) -> FileResponse:
    """Any file in the job's output folder, by its path relative to the job's `out_dir`
    (the summary's paths, such as `finished[0].outputs.web` and each step's `preview`,
    with the out_dir stripped). 404 for anything outside the folder."""
    found = await asyncio.to_thread(service.job_file, engine, job_id, path)
    return FileResponse(
        found,
        media_type=service.media_type(found),
        filename=found.name,
        content_disposition_type="inline",
    )


@router.post(
    "/jobs/{job_id}/preview",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "the preview, a JPEG"},
        **responses(404),
    },
)
async def preview(job_id: RecordId, body: PreviewCreate, engine: EngineDep) -> Response:
    """A finished picture as another recipe would make it, for editing the stretch: the
    recipe's steps from its first stretch on, applied to the picture's small linear proxy
    (1024 px). 404 when the job has no such picture or no proxy, 422 for a recipe with
    problems or one that does not fit the picture."""
    recipe = await asyncio.to_thread(recipes.job_recipe, engine, body.recipe, body.recipe_id)
    jpeg = await asyncio.to_thread(
        service.preview_jpeg,
        engine,
        job_id,
        body.target,
        body.name,
        recipe or recipes.default_job_recipe(),
    )
    return Response(jpeg, media_type="image/jpeg")


@router.get("/jobs/{job_id}/histogram", responses=responses(404))
async def histogram(
    job_id: RecordId,
    engine: EngineDep,
    name: PictureName = None,
    target: PictureTarget = None,
    bins: HistogramBins = 512,
    upper: HistogramUpper = None,
) -> HistogramRead:
    """The histogram of a finished picture's small linear proxy (what the stretch acts
    on), per channel, and the stretch its handles start from: for editing the stretch with
    the preview endpoint. Without `upper` the range ends where the data and the handles
    need (at least the 99th percentile). 404 when the job has no such picture or proxy."""
    found = await asyncio.to_thread(service.histogram, engine, job_id, target, name, bins, upper)
    return HistogramRead.model_validate(found)
