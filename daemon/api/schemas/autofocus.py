"""Autofocus requests and reports."""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sequences.autofocus import AutofocusConfig
from sequences.instructions.focuser import AutofocusSettings


class AutofocusCreate(AutofocusSettings):
    """The settings of a sequence's autofocus, and how good a fit must be."""

    model_config = ConfigDict(allow_inf_nan=False)

    min_r_squared: float = Field(default=0.7, ge=0, le=1)

    def config(self) -> AutofocusConfig:
        return dataclasses.replace(super().config(), min_r_squared=self.min_r_squared)


class AutofocusRead(BaseModel):
    id: int
    success: bool
    reason: str
    start_position: int
    final_position: int | None
    exposures: int
    report: dict[str, Any]
