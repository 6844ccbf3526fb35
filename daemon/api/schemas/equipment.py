"""Equipment responses: every device's role, address, connection, facts, status and error,
as the background poller last read them, with the reading's time and age; the bodies of the
observatory's commands (flat panel, switches)."""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from daemon.api.schemas.common import RequestBody
from daemon.api.schemas.frames import ALPACA_INT32_MAX
from daemon.equipment_state import (
    IN_USE_PERIOD_S,
    POLL_PERIOD_S,
    DeviceReading,
    EquipmentSnapshot,
)


class DeviceRead(BaseModel):
    role: str
    location: str
    connected: bool
    info: dict[str, Any] | None
    status: dict[str, Any] | None
    error: str | None
    read_at: datetime | None = Field(description="when this was read; None before the first read")
    age_s: float | None = Field(description="how old the reading is, s")
    in_use: bool = Field(
        description=f"held by a capture or the guider: read every {IN_USE_PERIOD_S:g} s "
        f"rather than every {POLL_PERIOD_S:g} s"
    )

    @classmethod
    def from_reading(cls, reading: DeviceReading) -> DeviceRead:
        report = reading.report
        return cls(
            role=report.role,
            location=report.location,
            connected=report.connected,
            info=_plain(report.info),
            status=_plain(report.status),
            error=report.error,
            read_at=reading.read_at,
            age_s=reading.age_s,
            in_use=reading.in_use,
        )


class EquipmentRead(BaseModel):
    profile: str
    read_at: datetime | None = Field(description="when the oldest of the readings was taken")
    age_s: float | None = Field(description="the age of the oldest reading, s")
    dome_slaved: bool = Field(
        default=False, description="a run keeps the dome aimed at the mount's pointing"
    )
    devices: list[DeviceRead]

    @classmethod
    def from_snapshot(cls, snapshot: EquipmentSnapshot, dome_slaved: bool) -> EquipmentRead:
        return cls(
            profile=snapshot.profile,
            read_at=snapshot.read_at,
            age_s=snapshot.age_s,
            dome_slaved=dome_slaved,
            devices=[DeviceRead.from_reading(d) for d in snapshot.devices],
        )


class CalibratorOn(RequestBody):
    brightness: int = Field(
        ge=0, le=ALPACA_INT32_MAX, description="0 up to the panel's max_brightness (its info)"
    )


class SwitchSet(RequestBody):
    channel: int = Field(ge=0, le=ALPACA_INT32_MAX, description="the channel's id (its info)")
    value: float = Field(
        description="0 or 1 for an on/off channel, else within its minimum..maximum"
    )


def _plain(snapshot: object | None) -> dict[str, Any] | None:
    """A snapshot dataclass as JSON-ready data; enums by name ("IDLE", "EAST")."""
    if snapshot is None or not dataclasses.is_dataclass(snapshot):
        return None
    return {f.name: _value(getattr(snapshot, f.name)) for f in dataclasses.fields(snapshot)}


def _value(value: object) -> Any:
    if isinstance(value, enum.Enum):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(value)
    if isinstance(value, tuple):
        return [_value(v) for v in value]
    return value
