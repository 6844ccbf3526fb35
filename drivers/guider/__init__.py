"""Guiding: the native guider (guide camera + PulseGuide) behind `drivers.base.Guider`."""

from __future__ import annotations

from drivers.guider.calibration import Calibration, calibration_from_guide_rates
from drivers.guider.config import GuiderConfig
from drivers.guider.control import AxisSettings
from drivers.guider.errors import (
    CalibrationFailed,
    GuiderError,
    NoGuideStar,
    NotGuiding,
    SettleTimeout,
)
from drivers.guider.native import NativeGuider
from drivers.guider.stars import SelectionConfig

__all__ = [
    "AxisSettings",
    "Calibration",
    "CalibrationFailed",
    "GuiderConfig",
    "GuiderError",
    "NativeGuider",
    "NoGuideStar",
    "NotGuiding",
    "SelectionConfig",
    "SettleTimeout",
    "calibration_from_guide_rates",
]
