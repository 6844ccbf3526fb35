"""The states of a night and of a processing job: stored in the database's rows and shown by
the API, so they belong to neither the ORM models nor the schemas."""

from __future__ import annotations

import enum


class SessionState(enum.StrEnum):
    """A night (imaging session): open while frames may still join it, closed once over."""

    OPEN = "open"
    CLOSED = "closed"


class JobState(enum.StrEnum):
    """A processing job's life: queued, running, then done or failed."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
