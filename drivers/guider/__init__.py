"""Guiding behind `drivers.base.Guider`: the native guider (guide camera + PulseGuide) or PHD2."""

from __future__ import annotations

from drivers.guider.calibration import Calibration, calibration_from_guide_rates
from drivers.guider.config import GuiderConfig
from drivers.guider.control import AxisSettings
from drivers.guider.errors import (
    CalibrationFailed,
    GuiderError,
    GuiderRefused,
    GuiderTimeout,
    GuiderUnreachable,
    NoGuideStar,
    NotGuiding,
    SettleTimeout,
)
from drivers.guider.native import NativeGuider
from drivers.guider.phd2 import Phd2Guider
from drivers.guider.stars import SelectionConfig

__all__ = [
    "AxisSettings",
    "Calibration",
    "CalibrationFailed",
    "GuiderConfig",
    "GuiderError",
    "GuiderRefused",
    "GuiderTimeout",
    "GuiderUnreachable",
    "NativeGuider",
    "NoGuideStar",
    "NotGuiding",
    "Phd2Guider",
    "SelectionConfig",
    "SettleTimeout",
    "calibration_from_guide_rates",
]
