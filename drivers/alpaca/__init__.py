"""ASCOM Alpaca drivers over alpyca; the only package that imports alpyca."""

from __future__ import annotations

from drivers.alpaca.camera import AlpacaCamera
from drivers.alpaca.filterwheel import AlpacaFilterWheel
from drivers.alpaca.focuser import AlpacaFocuser
from drivers.alpaca.mount import AlpacaMount
from drivers.alpaca.safety import AlpacaSafetyMonitor
from drivers.equipment import Equipment
from drivers.profile import EquipmentProfile

__all__ = [
    "AlpacaCamera",
    "AlpacaFilterWheel",
    "AlpacaFocuser",
    "AlpacaMount",
    "AlpacaSafetyMonitor",
    "build_equipment",
]


def build_equipment(profile: EquipmentProfile) -> Equipment:
    """Create (not connect) the Alpaca drivers for every role the profile names."""
    p = profile
    return Equipment(
        profile_name=p.name,
        camera=AlpacaCamera("camera", p.camera) if p.camera else None,
        guide_camera=AlpacaCamera("guide_camera", p.guide_camera) if p.guide_camera else None,
        mount=AlpacaMount("mount", p.mount) if p.mount else None,
        focuser=AlpacaFocuser("focuser", p.focuser) if p.focuser else None,
        filter_wheel=AlpacaFilterWheel("filter_wheel", p.filter_wheel) if p.filter_wheel else None,
        safety_monitor=(
            AlpacaSafetyMonitor("safety_monitor", p.safety_monitor) if p.safety_monitor else None
        ),
    )
