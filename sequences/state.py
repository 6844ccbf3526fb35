"""Run state, kept apart from the (immutable) sequence document and journaled after every step.

Everything here is plain JSON-able data keyed by node path (``targets[0].items[2]``), plus the
run's typed facts (`sequences.facts`), so the daemon stores it as it is and a restarted daemon
resumes from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from sequences.facts import RunFacts
from sequences.model import Status


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    """Every area ran; some nodes may have failed (their status says so)."""
    ABORTED = "aborted"
    FAILED = "failed"
    """The runner itself failed (a bug or an unrecoverable storage error); see the events."""
    INTERRUPTED = "interrupted"
    """The daemon stopped during the run; it can be resumed."""

    @property
    def finished(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.ABORTED, RunStatus.FAILED)


@dataclass
class NodeState:
    status: Status = Status.PENDING
    attempts: int = 0
    error: str | None = None
    counters: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None
    ended_at: str | None = None


@dataclass
class RunState:
    status: RunStatus = RunStatus.PENDING
    current: str | None = None
    """Path of the instruction running now."""
    pause_requested: bool = False
    """A pause was asked for and takes effect after the current step."""
    nodes: dict[str, NodeState] = field(default_factory=dict)
    triggers: dict[str, dict[str, Any]] = field(default_factory=dict)
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    iterations: dict[str, int] = field(default_factory=dict)
    """Completed passes of each looping container."""
    passes_ended: list[str] = field(default_factory=list)
    """Looping containers whose last pass ended: the states below them still show that pass
    (a finished run shows what each node did) and are cleared when the next pass begins."""
    area: str | None = None
    """Area reached: a resumed run does not re-run the start area once past it."""
    facts: RunFacts = field(default_factory=RunFacts)
    """What the run has learned; the runner hands this object to its context."""

    def node(self, path: str) -> NodeState:
        return self.nodes.setdefault(path, NodeState())

    def reset_below(self, path: str) -> None:
        """Forget node states inside the container at `path` for a new loop pass; triggers and
        conditions keep their state (a dither counter runs on across passes)."""
        prefix = path + "."
        for key in [k for k in self.nodes if k.startswith(prefix)]:
            del self.nodes[key]
        for key in [k for k in self.iterations if k.startswith(prefix)]:
            del self.iterations[key]
        self.passes_ended = [p for p in self.passes_ended if not p.startswith(prefix)]

    def prepare_resume(self) -> None:
        """After a crash: what was running starts over (its interrupted attempt does not
        count); what finished stays finished. Frame counters come from the frame sink. The
        facts carry over, but guiding is off until a `start_guiding` runs again (see
        `RunFacts.guiding`), and the next checkpoint is not taken for one before a light."""
        self.facts.guiding = False
        self.facts.light_next = False
        for node in self.nodes.values():
            if node.status is Status.RUNNING:
                node.status = Status.PENDING
                node.attempts = max(0, node.attempts - 1)
        self.current = None
        self.pause_requested = False
        self.status = RunStatus.PENDING

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "facts": self.facts.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        nodes = {
            path: NodeState(**{**node, "status": Status(node["status"])})
            for path, node in data.get("nodes", {}).items()
        }
        return cls(
            status=RunStatus(data.get("status", RunStatus.PENDING)),
            current=data.get("current"),
            pause_requested=bool(data.get("pause_requested", False)),
            nodes=nodes,
            triggers=dict(data.get("triggers", {})),
            conditions=dict(data.get("conditions", {})),
            iterations={k: int(v) for k, v in data.get("iterations", {}).items()},
            passes_ended=[str(p) for p in data.get("passes_ended", [])],
            area=data.get("area"),
            facts=RunFacts.from_json(data.get("facts", {})),
        )
