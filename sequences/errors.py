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
    """A sequence document that cannot run; `issues` says where and how to fix it."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("; ".join(f"{i.path}: {i.message}" for i in issues))
