"""Equipment: status of every device, connect and disconnect all."""

from __future__ import annotations

from fastapi import APIRouter

from daemon.api.deps import EquipmentDep
from daemon.api.schemas.equipment import DeviceRead, EquipmentRead
from drivers.equipment import Equipment

router = APIRouter(prefix="/api/equipment", tags=["equipment"])


async def _read(equipment: Equipment) -> EquipmentRead:
    reports = await equipment.snapshot()
    return EquipmentRead(
        profile=equipment.profile_name, devices=[DeviceRead.from_report(r) for r in reports]
    )


@router.get("")
async def get_equipment(equipment: EquipmentDep) -> EquipmentRead:
    """The status of every device; a device that fails to answer shows its error."""
    return await _read(equipment)


@router.post("/connect")
async def connect(equipment: EquipmentDep) -> EquipmentRead:
    """Connect every device. Failures show per device (`connected: false` and `error`)."""
    await equipment.connect_all()
    return await _read(equipment)


@router.post("/disconnect")
async def disconnect(equipment: EquipmentDep) -> EquipmentRead:
    await equipment.disconnect_all()
    return await _read(equipment)
