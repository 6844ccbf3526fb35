"""Live stacks as the dashboard reads them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class LiveStackRead(BaseModel):
    """One live stack: a night's target and filter, what is folded in so far."""

    session_id: int
    name: str = Field(description="the stack's name in its preview's URL")
    target: str
    filter_name: str | None
    frames: int = Field(description="lights folded into the stack")
    rejected_fraction: float = Field(
        description="pixels rejected (k-sigma from the running mean) of those tested"
    )
    skipped: int = Field(description="lights that could not be stacked (see the events)")
    reference_frame_id: int | None
    notes: list[str] = Field(description="how the lights are calibrated")
    updated: datetime | None
    preview_url: str
