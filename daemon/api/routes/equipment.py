"""Equipment: the state of every device as the background poller last read it; connect and
disconnect all; the observatory's commands (roof or dome, cover, flat panel, switches), each
answering with the device read again once it reports its end state."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from daemon.api.deps import RuntimeDep
from daemon.api.responses import DEVICE, responses
from daemon.api.schemas.equipment import CalibratorOn, DeviceRead, EquipmentRead, SwitchSet
from daemon.observatory_control import ObservatoryControl

router = APIRouter(prefix="/api/equipment", tags=["equipment"])


def get_control(runtime: RuntimeDep) -> ObservatoryControl:
    return ObservatoryControl(
        runtime.engine, runtime.equipment, runtime.equipment_state, runtime.safety
    )


ControlDep = Annotated[ObservatoryControl, Depends(get_control)]
COMMAND = responses(404, *DEVICE)
"""A command's answers: 404 when the profile has no such device, the device errors."""


@router.get("")
async def get_equipment(runtime: RuntimeDep) -> EquipmentRead:
    """Every device's latest reading (taken every few seconds in the background) with its
    age; asks no device, so it answers at once. A device that fails to answer shows its error."""
    snapshot = runtime.equipment_state.snapshot()
    return EquipmentRead.from_snapshot(snapshot, runtime.runs.dome_slaved)


@router.post("/connect")
async def connect(runtime: RuntimeDep) -> EquipmentRead:
    """Connect every device. Failures show per device (`connected: false` and `error`)."""
    snapshot = await runtime.equipment_state.connect_all()
    return EquipmentRead.from_snapshot(snapshot, runtime.runs.dome_slaved)


@router.post("/disconnect")
async def disconnect(runtime: RuntimeDep) -> EquipmentRead:
    snapshot = await runtime.equipment_state.disconnect_all()
    return EquipmentRead.from_snapshot(snapshot, runtime.runs.dome_slaved)


@router.post("/roof/open", responses=COMMAND)
async def open_roof(control: ControlDep) -> DeviceRead:
    """Open the roof or dome shutter; answers once it reports open. 409 while safety holds
    the night (unsafe, or not yet safe for the safe delay) and for a roll-off roof over a mount
    that does not report parked."""
    return DeviceRead.from_reading(await control.open_roof())


@router.post("/roof/close", responses=COMMAND)
async def close_roof(control: ControlDep) -> DeviceRead:
    """Close the roof or dome shutter; answers once it reports closed. 409 for a roll-off
    roof over a mount that does not report parked: park the mount first."""
    return DeviceRead.from_reading(await control.close_roof())


@router.post("/dome/park", responses=COMMAND)
async def park_dome(control: ControlDep) -> DeviceRead:
    return DeviceRead.from_reading(await control.park_dome())


@router.post("/cover/open", responses=COMMAND)
async def open_cover(control: ControlDep) -> DeviceRead:
    return DeviceRead.from_reading(await control.open_cover())


@router.post("/cover/close", responses=COMMAND)
async def close_cover(control: ControlDep) -> DeviceRead:
    return DeviceRead.from_reading(await control.close_cover())


@router.post("/calibrator/on", responses=COMMAND)
async def calibrator_on(body: CalibratorOn, control: ControlDep) -> DeviceRead:
    """Light the flat panel; answers once it is ready (warmed up)."""
    return DeviceRead.from_reading(await control.calibrator_on(body.brightness))


@router.post("/calibrator/off", responses=COMMAND)
async def calibrator_off(control: ControlDep) -> DeviceRead:
    return DeviceRead.from_reading(await control.calibrator_off())


@router.post("/switch", responses=COMMAND)
async def set_switch(body: SwitchSet, control: ControlDep) -> DeviceRead:
    """Set one channel of the switch (a power outlet, a dew heater)."""
    return DeviceRead.from_reading(await control.set_switch(body.channel, body.value))
