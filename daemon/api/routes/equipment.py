"""Equipment: the state of every device as the background poller last read it; connect and
disconnect all."""

from __future__ import annotations

from fastapi import APIRouter

from daemon.api.deps import RuntimeDep
from daemon.api.schemas.equipment import EquipmentRead

router = APIRouter(prefix="/api/equipment", tags=["equipment"])


@router.get("")
async def get_equipment(runtime: RuntimeDep) -> EquipmentRead:
    """Every device's latest reading (taken every few seconds in the background) with its
    age; asks no device, so it answers at once. A device that fails to answer shows its error."""
    return EquipmentRead.from_snapshot(runtime.equipment_state.snapshot())


@router.post("/connect")
async def connect(runtime: RuntimeDep) -> EquipmentRead:
    """Connect every device. Failures show per device (`connected: false` and `error`)."""
    return EquipmentRead.from_snapshot(await runtime.equipment_state.connect_all())


@router.post("/disconnect")
async def disconnect(runtime: RuntimeDep) -> EquipmentRead:
    return EquipmentRead.from_snapshot(await runtime.equipment_state.disconnect_all())
