"""Errors of the sequence engine; the runner turns them into node failures with the message."""

from __future__ import annotations

from sequences.model import Issue


class SequenceError(Exception):
    """Base of the engine's errors."""


class InstructionError(SequenceError):
    """An instruction could not do its job (missing device, bad state, target not visible).

    The runner records the message, retries up to the node's `attempts`, then applies its
    `on_error` behaviour.
    """


class DocumentError(SequenceError):
    """A sequence document (or night plan) that cannot run; `issues` says where and how to
    fix it. `field` names the request body's field that held it."""

    def __init__(self, issues: list[Issue], field: str = "document") -> None:
        self.issues = issues
        self.field = field
        super().__init__("; ".join(f"{i.path}: {i.message}" for i in issues))
