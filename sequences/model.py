"""The small shared vocabulary of the sequence engine: statuses, error behaviour, issues."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (Status.SUCCEEDED, Status.FAILED, Status.SKIPPED, Status.CANCELLED)


class OnError(StrEnum):
    """What the runner does when a node has failed all its attempts.

    The failure is always recorded (node status FAILED, an error event); these only choose what
    runs next.
    """

    CONTINUE = "continue"
    """Go on with the next node of the same container."""
    SKIP_CONTAINER = "skip_container"
    """Skip the rest of the enclosing container (the default; NINA: "skip instruction set")."""
    SKIP_TO_END = "skip_to_end"
    """Skip every remaining target and run the end area (park, warm)."""
    ABORT = "abort"
    """Stop the run as aborted; the end area still runs."""


class Area(StrEnum):
    START = "start"
    TARGETS = "targets"
    END = "end"


@dataclass(frozen=True)
class Issue:
    """A problem found before a run: where (`path` of the node and field), what, how to fix it."""

    path: str
    message: str
    fix: str
    forbidden: bool = False
    """A setting of the daemon rules it out (not tonight's sky or equipment): a start that
    ignores issues is refused anyway."""
