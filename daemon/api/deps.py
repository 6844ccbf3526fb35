"""Request dependencies: the pieces `create_app` wired into ``app.state``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

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


EquipmentDep = Annotated[Equipment, Depends(get_equipment)]
EngineDep = Annotated[Engine, Depends(get_engine)]
