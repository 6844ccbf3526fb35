"""The event log as the API shows it: one record per thing the daemon did or that went wrong."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    time: datetime
    level: str = Field(
        description="debug, info, warning or error; alert: news for a person (also sent to "
        "the webhooks)"
    )
    source: str = Field(description="what recorded it: sequence, capture, store, ...")
    message: str
    run_id: int | None
    node_path: str | None = Field(description="the sequence node it concerns, if any")
    data: dict[str, Any] = Field(description="structured details, e.g. frame_id of a capture")
    owner: str | None = Field(
        description="the observatory profile of the daemon that recorded it (several daemons may "
        "share one database); null: made without one"
    )
