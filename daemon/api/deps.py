"""Request dependencies: the pieces `create_app` wired into ``app.state``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from daemon.capture import CaptureService
from drivers.equipment import Equipment

if TYPE_CHECKING:
    from daemon.app import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_equipment(request: Request) -> Equipment:
    return get_runtime(request).equipment


def get_engine(request: Request) -> Engine:
    return get_runtime(request).engine


def get_capture(request: Request) -> CaptureService:
    return get_runtime(request).capture


EquipmentDep = Annotated[Equipment, Depends(get_equipment)]
CaptureDep = Annotated[CaptureService, Depends(get_capture)]
RuntimeDep = Annotated["Runtime", Depends(get_runtime)]
EngineDep = Annotated[Engine, Depends(get_engine)]
