"""Liveness and readiness: the daemon answers and its database works."""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import version
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from daemon.api.deps import EngineDep, EquipmentDep

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["health"])


class HealthRead(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    database: str
    equipment_profile: str


def _database_ok(engine: Engine) -> str:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        # Health is open to anyone: the details (paths, statements) go to the log only.
        log.error("database check failed: %s", e)
        return f"error: {e.__class__.__name__}"
    return "ok"


@router.get("/health")
async def health(engine: EngineDep, equipment: EquipmentDep) -> HealthRead:
    database = await asyncio.to_thread(_database_ok, engine)
    return HealthRead(
        status="ok" if database == "ok" else "degraded",
        version=version("nightowl"),
        database=database,
        equipment_profile=equipment.profile_name,
    )
