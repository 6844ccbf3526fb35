"""The sequence document: NINA's three areas (start, targets, end) of containers and instructions.

A document is JSON. Every node names its `kind` from a closed set (the unions below, each
written once: `Instructions`, `Triggers`, `Conditions`, `Containers`), so a template can be
stored, edited in a browser and validated without running code. Containers hold items
(instructions or containers), triggers (run between units of work inside the container) and
conditions (a container loops while its conditions hold; without conditions it runs once).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias, get_args

from pydantic import BaseModel, Field, ValidationError

from sequences.astro import observable_windows
from sequences.base import DOCUMENT_CONFIG, Condition, Instruction, Node, TargetName, Trigger
from sequences.conditions.loop import LoopCount, LoopUntilTime
from sequences.conditions.safety import WhileSafe
from sequences.conditions.sky import WhileAboveAltitude, WhileSunBelow
from sequences.conditions.weather import WhileWeatherOk
from sequences.context import ValidationEnv
from sequences.frames import TargetRef
from sequences.instructions.calibration import TakeBias, TakeDarks, TakeFlats
from sequences.instructions.camera import CoolCamera, WarmCamera
from sequences.instructions.equipment import ConnectEquipment, DisconnectEquipment
from sequences.instructions.focuser import MoveFocuser, RunAutofocus, SwitchFilter
from sequences.instructions.guider import Dither, StartGuiding, StopGuiding
from sequences.instructions.imaging import TakeExposures
from sequences.instructions.mount import (
    CenterTarget,
    Coordinates,
    Park,
    SetTracking,
    SlewToTarget,
    Unpark,
)
from sequences.instructions.observatory import (
    CalibratorOff,
    CalibratorOn,
    CloseCover,
    CloseRoof,
    OpenCover,
    OpenRoof,
    ParkDome,
    SetSwitch,
    SlaveDome,
)
from sequences.instructions.rotator import RotateTo
from sequences.instructions.utility import Annotation, RunCommand, WaitForTime
from sequences.instructions.waits import WaitForAltitude, WaitForSunAltitude, WaitUntilSafe
from sequences.model import Issue
from sequences.triggers.autofocus import (
    AutofocusAfterExposures,
    AutofocusAfterFilterChange,
    AutofocusAfterHfrIncrease,
    AutofocusAfterTemperatureChange,
    AutofocusAfterTime,
)
from sequences.triggers.centering import CenterAfterDrift
from sequences.triggers.dither import DitherAfterExposures
from sequences.triggers.guiding import RestartGuidingWhenLost
from sequences.triggers.meridian import MeridianFlip

SCHEMA_VERSION: Literal[1] = 1

Instructions: TypeAlias = (
    ConnectEquipment
    | DisconnectEquipment
    | Unpark
    | Park
    | SetTracking
    | SlewToTarget
    | CenterTarget
    | CoolCamera
    | WarmCamera
    | WaitForTime
    | WaitForAltitude
    | WaitForSunAltitude
    | WaitUntilSafe
    | SwitchFilter
    | RunAutofocus
    | MoveFocuser
    | StartGuiding
    | StopGuiding
    | Dither
    | TakeExposures
    | TakeDarks
    | TakeBias
    | TakeFlats
    | OpenRoof
    | CloseRoof
    | ParkDome
    | SlaveDome
    | OpenCover
    | CloseCover
    | CalibratorOn
    | CalibratorOff
    | RotateTo
    | SetSwitch
    | RunCommand
    | Annotation
)
"""Every instruction kind, once: the instruction and item unions below are built from it."""
Triggers: TypeAlias = (
    DitherAfterExposures
    | MeridianFlip
    | AutofocusAfterHfrIncrease
    | AutofocusAfterTemperatureChange
    | AutofocusAfterTime
    | AutofocusAfterExposures
    | AutofocusAfterFilterChange
    | CenterAfterDrift
    | RestartGuidingWhenLost
)
Conditions: TypeAlias = (
    LoopCount | LoopUntilTime | WhileAboveAltitude | WhileSunBelow | WhileSafe | WhileWeatherOk
)

AnyInstruction = Annotated[Instructions, Field(discriminator="kind")]
AnyTrigger = Annotated[Triggers, Field(discriminator="kind")]
AnyCondition = Annotated[Conditions, Field(discriminator="kind")]


class Container(Node):
    items: list[AnyItem] = Field(default_factory=list)
    triggers: list[AnyTrigger] = Field(default_factory=list)
    conditions: list[AnyCondition] = Field(default_factory=list)

    def walk(self, path: str) -> list[tuple[str, Node]]:
        """This container and every node below it, with their paths, depth first."""
        nodes: list[tuple[str, Node]] = [(path, self)]
        for i, item in enumerate(self.items):
            child = f"{path}.items[{i}]"
            nodes.extend(item.walk(child) if isinstance(item, Container) else [(child, item)])
        return nodes


class SequentialContainer(Container):
    kind: Literal["sequential"] = "sequential"


class ParallelContainer(Container):
    """Runs its items side by side; done when all are."""

    kind: Literal["parallel"] = "parallel"


class TargetContainer(Container):
    """Its items inherit the target: slews, centering and lights use these coordinates."""

    kind: Literal["target"] = "target"
    target_name: TargetName
    coordinates: Coordinates
    rotation_deg: float | None = Field(
        default=None,
        ge=0,
        lt=360,
        description="sky position angle of the frame's +y axis, east of north (a plate "
        "solution's rotation); `center` turns the rotator to it",
    )

    def target_ref(self) -> TargetRef:
        return TargetRef(self.target_name, self.coordinates.radec(), self.rotation_deg)

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        if env.site is None or env.night_start is None:
            return []
        limit = env.horizon if env.horizon is not None else 0.0
        if observable_windows(self.coordinates.radec(), env.site, env.night_start, limit):
            return []
        return [
            Issue(
                f"{path}.coordinates",
                f"{self.target_name} does not rise above the horizon in tonight's dark hours",
                "choose a target that is up tonight, or run this template another night",
            )
        ]


Containers: TypeAlias = SequentialContainer | ParallelContainer | TargetContainer

AnyContainer = Annotated[Containers, Field(discriminator="kind")]
AnyItem = Annotated[Containers | Instructions, Field(discriminator="kind")]
"""What a container holds: containers first, then the instructions (the order of the JSON
schema's `oneOf`)."""

INSTRUCTIONS: tuple[type[Instruction], ...] = get_args(Instructions)
TRIGGERS: tuple[type[Trigger], ...] = get_args(Triggers)
CONDITIONS: tuple[type[Condition], ...] = get_args(Conditions)
CONTAINERS: tuple[type[Container], ...] = get_args(Containers)


class SequenceDocument(BaseModel):
    model_config = DOCUMENT_CONFIG

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    start: SequentialContainer = Field(default_factory=SequentialContainer)
    targets: list[AnyContainer] = Field(default_factory=list)
    end: SequentialContainer = Field(default_factory=SequentialContainer)

    def walk(self) -> list[tuple[str, Node]]:
        nodes = self.start.walk("start")
        for i, target in enumerate(self.targets):
            nodes += target.walk(f"targets[{i}]")
        return nodes + self.end.walk("end")

    def check(self, env: ValidationEnv) -> list[Issue]:
        """Everything that would fail tonight with this equipment, as a list (empty = fine)."""
        issues: list[Issue] = []
        for path, node in self.walk():
            issues += node.check(env, path)
            if isinstance(node, Container):
                for i, trigger in enumerate(node.triggers):
                    issues += trigger.check(env, f"{path}.triggers[{i}]")
                for i, condition in enumerate(node.conditions):
                    issues += condition.check(env, f"{path}.conditions[{i}]")
        return issues

    def estimate_s(self, env: ValidationEnv) -> float:
        """One pass over every node (loops counted once): a lower bound for looping plans."""
        return sum(
            node.estimate_s(env) for _, node in self.walk() if not isinstance(node, Container)
        )


for _model in (SequentialContainer, ParallelContainer, TargetContainer, SequenceDocument):
    _model.model_rebuild()


def parse_document(data: dict[str, Any] | str | bytes) -> SequenceDocument:
    """Parse JSON text or a dict; raises pydantic's `ValidationError` naming each bad field."""
    if isinstance(data, str | bytes):
        return SequenceDocument.model_validate_json(data)
    return SequenceDocument.model_validate(data)


def error_issues(error: ValidationError) -> list[Issue]:
    """pydantic's errors as `Issue`s with dotted paths (``targets[0].items[2].exposure_s``)."""
    issues = []
    for e in error.errors():
        path = ""
        for part in e["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part in _KIND_TAGS:
                continue  # the union member pydantic tried: not part of the document's path
            else:
                path += f".{part}" if path else str(part)
        issues.append(Issue(path, e["msg"], _fix_hint(e)))
    return issues


_KIND_TAGS = frozenset(
    member.model_fields["kind"].default
    for member in (*CONTAINERS, *INSTRUCTIONS, *TRIGGERS, *CONDITIONS)
)


def _fix_hint(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "union_tag_invalid":
        return f"use one of the known kinds: {ctx.get('expected_tags', '')}"
    if kind == "missing":
        return "add this field"
    if kind == "extra_forbidden":
        return "remove this field (it is not part of this kind of node)"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "use a value " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in ctx.items())
    return "correct the value"
