"""Equipment responses: every device's role, address, connection, facts, status and error."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from pydantic import BaseModel

from drivers.equipment import DeviceReport


class DeviceRead(BaseModel):
    role: str
    location: str
    connected: bool
    info: dict[str, Any] | None
    status: dict[str, Any] | None
    error: str | None

    @classmethod
    def from_report(cls, report: DeviceReport) -> DeviceRead:
        return cls(
            role=report.role,
            location=report.location,
            connected=report.connected,
            info=_plain(report.info),
            status=_plain(report.status),
            error=report.error,
        )


class EquipmentRead(BaseModel):
    profile: str
    devices: list[DeviceRead]


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
