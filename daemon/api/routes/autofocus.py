"""Autofocus: run one now on the camera and focuser, list earlier runs."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.api.deps import CaptureDep, EngineDep, EquipmentDep, RuntimeDep
from daemon.autofocus import report_dict, save_report
from daemon.capture import CaptureBusy
from daemon.db.models import AutofocusRun
from processing.focus import FocusModel
from sequences.autofocus import AutofocusConfig, run_autofocus

router = APIRouter(prefix="/api/autofocus", tags=["autofocus"])


class AutofocusCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step_size: int = Field(default=100, ge=1, le=100_000)
    steps_out: int = Field(default=4, ge=2, le=10)
    exposure_s: float = Field(default=2.0, gt=0, le=600)
    backlash_overshoot_steps: int = Field(default=0, ge=0)
    model: FocusModel = FocusModel.HYPERBOLA
    min_r_squared: float = Field(default=0.7, ge=0, le=1)


class AutofocusRead(BaseModel):
    id: int
    success: bool
    reason: str
    start_position: int
    final_position: int | None
    exposures: int
    report: dict[str, Any]


@router.post("", status_code=status.HTTP_201_CREATED)
async def autofocus(
    body: AutofocusCreate, equipment: EquipmentDep, service: CaptureDep, runtime: RuntimeDep
) -> AutofocusRead:
    """Run an autofocus now; a failed run answers 201 with `success: false` and the reason."""
    camera, focuser = equipment.camera, equipment.focuser
    if camera is None or focuser is None or not camera.connected or not focuser.connected:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "autofocus needs a connected camera and focuser"
        )
    config = AutofocusConfig(**body.model_dump())
    try:
        async with service.camera_reserved():
            report = await run_autofocus(camera, focuser, config)
    except CaptureBusy as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
    wheel = equipment.filter_wheel
    filter_name = (
        (await wheel.status()).filter_name if wheel is not None and wheel.connected else None
    )
    run_id = await asyncio.to_thread(
        save_report, runtime.engine, runtime.settings.data_dir / "autofocus", report, filter_name
    )
    return AutofocusRead(
        id=run_id,
        success=report.success,
        reason=report.reason,
        start_position=report.start_position,
        final_position=report.final_position,
        exposures=report.exposures,
        report=report_dict(report),
    )


@router.get("")
async def list_autofocus_runs(engine: EngineDep) -> list[AutofocusRead]:
    def query() -> list[AutofocusRead]:
        with Session(engine) as db:
            rows = db.scalars(select(AutofocusRun).order_by(AutofocusRun.started_at.desc()))
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
                for r in rows
            ]

    return await asyncio.to_thread(query)
