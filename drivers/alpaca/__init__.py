"""ASCOM Alpaca drivers over alpyca; the only package that imports alpyca."""

from __future__ import annotations

from drivers.alpaca.camera import AlpacaCamera
from drivers.alpaca.cover_calibrator import AlpacaCoverCalibrator
from drivers.alpaca.dome import AlpacaDome
from drivers.alpaca.filterwheel import AlpacaFilterWheel
from drivers.alpaca.focuser import AlpacaFocuser
from drivers.alpaca.mount import AlpacaMount
from drivers.alpaca.rotator import AlpacaRotator
from drivers.alpaca.safety import AlpacaSafetyMonitor
from drivers.alpaca.switch import AlpacaSwitch
from drivers.alpaca.weather import AlpacaWeatherStation
from drivers.equipment import Equipment
from drivers.errors import FaultListener
from drivers.profile import EquipmentProfile

__all__ = [
    "AlpacaCamera",
    "AlpacaCoverCalibrator",
    "AlpacaDome",
    "AlpacaFilterWheel",
    "AlpacaFocuser",
    "AlpacaMount",
    "AlpacaRotator",
    "AlpacaSafetyMonitor",
    "AlpacaSwitch",
    "AlpacaWeatherStation",
    "build_equipment",
]


def build_equipment(profile: EquipmentProfile, on_fault: FaultListener | None = None) -> Equipment:
    """Create (not connect) the Alpaca drivers for every role the profile names; `on_fault`
    hears of every fault a driver retried."""
    p, f = profile, on_fault
    return Equipment(
        profile_name=p.name,
        camera=AlpacaCamera("camera", p.camera, f) if p.camera else None,
        guide_camera=AlpacaCamera("guide_camera", p.guide_camera, f) if p.guide_camera else None,
        mount=AlpacaMount("mount", p.mount, f) if p.mount else None,
        focuser=AlpacaFocuser("focuser", p.focuser, f) if p.focuser else None,
        filter_wheel=AlpacaFilterWheel("filter_wheel", p.filter_wheel, f)
        if p.filter_wheel
        else None,
        safety_monitor=(
            AlpacaSafetyMonitor("safety_monitor", p.safety_monitor, f) if p.safety_monitor else None
        ),
        dome=AlpacaDome("dome", p.dome, f) if p.dome else None,
        cover_calibrator=(
            AlpacaCoverCalibrator("cover_calibrator", p.cover_calibrator, f)
            if p.cover_calibrator
            else None
        ),
        rotator=AlpacaRotator("rotator", p.rotator, f) if p.rotator else None,
        weather=AlpacaWeatherStation("weather", p.weather, f) if p.weather else None,
        switch=AlpacaSwitch("switch", p.switch, f) if p.switch else None,
        external_guider=None if p.guider.kind == "native" else p.guider.kind,
        site=p.site,
    )
