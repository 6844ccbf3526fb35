"""Autofocus: run one now on the camera and focuser, list earlier runs."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, status

from daemon.api.deps import RuntimeDep
from daemon.api.responses import DEVICE, responses
from daemon.api.schemas.autofocus import AutofocusCreate, AutofocusRead
from daemon.autofocus import report_dict

router = APIRouter(prefix="/api/autofocus", tags=["autofocus"])


@router.post("", status_code=status.HTTP_201_CREATED, responses=responses(*DEVICE, 507))
async def autofocus(body: AutofocusCreate, runtime: RuntimeDep) -> AutofocusRead:
    """Run an autofocus now; a failed run answers 201 with `success: false` and the reason."""
    done = await runtime.autofocus.run(body.config())
    report = done.report
    return AutofocusRead(
        id=done.id,
        success=report.success,
        reason=report.reason,
        start_position=report.start_position,
        final_position=report.final_position,
        exposures=report.exposures,
        report=report_dict(report),
    )


@router.get("")
async def list_autofocus_runs(runtime: RuntimeDep) -> list[AutofocusRead]:
    return [
        AutofocusRead(
            id=r.id,
            success=r.success,
            reason=r.reason or "",
            start_position=r.start_position,
            final_position=r.final_position,
            exposures=int(r.report.get("exposures", 0)),
            report=r.report,
        )
        for r in await asyncio.to_thread(runtime.autofocus.list_runs)
    ]
