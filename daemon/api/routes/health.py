"""Liveness and readiness: the daemon answers and its database works."""

from __future__ import annotations

import asyncio
from importlib.metadata import version
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from daemon.api.deps import EngineDep, EquipmentDep, RuntimeDep
from daemon.health import database_state

router = APIRouter(prefix="/api", tags=["health"])


class HealthRead(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    database: str
    equipment_profile: str
    timezone: str | None
    """The site's IANA time zone (NIGHTOWL_TIMEZONE); None: the system's."""
    event_loop_stalls: int
    """Times the daemon's event loop was held over a second since it started (each is a
    warning event naming what held it; `daemon.loop_watchdog`)."""


@router.get("/health")
async def health(engine: EngineDep, equipment: EquipmentDep, runtime: RuntimeDep) -> HealthRead:
    database = await asyncio.to_thread(database_state, engine)
    return HealthRead(
        status="ok" if database == "ok" else "degraded",
        version=version("nightowl"),
        database=database,
        equipment_profile=equipment.profile_name,
        timezone=runtime.settings.timezone,
        event_loop_stalls=0 if runtime.watchdog is None else runtime.watchdog.count,
    )
