"""The result of a stacking job (`processing.pipeline.run_pipeline`): per group what was
written and what became of every light, and the whole as plain JSON data for the CLI, the
daemon's job record and the web page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from processing.stack_judge import FrameOutcome


@dataclass(frozen=True)
class GroupResult:
    """One integrated group: its outputs (kind -> path) and what went in."""

    name: str
    target: str
    filter_name: str | None
    exposure_s: float
    frames: tuple[FrameOutcome, ...]
    reference: Path
    outputs: dict[str, Path]
    crop_yx: tuple[int, int, int, int] | None
    notes: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def integrated(self) -> int:
        return sum(1 for f in self.frames if f.accepted)

    @property
    def duplicates(self) -> tuple[FrameOutcome, ...]:
        return tuple(f for f in self.frames if f.duplicate_of is not None)


@dataclass(frozen=True)
class PipelineResult:
    """A whole job: its groups, the masters it wrote (name -> path), how many files of each
    kind went in, the seconds each stage took, and where the per-frame work and the
    integration ran (`processing.cluster`: "this process", "local pool (2 processes)",
    "dask tcp://host:port (2 workers)")."""

    groups: tuple[GroupResult, ...]
    masters: dict[str, Path]
    inputs: dict[str, int]
    timings_s: dict[str, float]
    executor: str = "this process"


def summary(result: PipelineResult) -> dict[str, object]:
    """The result as plain JSON data: inputs per kind, per group its outputs, reference,
    every light's verdict with its reason, the duplicates and warnings, masters written,
    timings per stage, where the work ran (`executor`); `warnings` at the top gathers every
    group's."""
    return {
        "inputs": result.inputs,
        "executor": result.executor,
        "warnings": [warning for group in result.groups for warning in group.warnings],
        "groups": [
            {
                "name": group.name,
                "target": group.target,
                "filter": group.filter_name,
                "exposure_s": group.exposure_s,
                "integrated": group.integrated,
                "reference": str(group.reference),
                "crop_yx": group.crop_yx,
                "outputs": {kind: str(path) for kind, path in group.outputs.items()},
                "rejected": [
                    {"path": str(f.path), "reason": f.reason}
                    for f in group.frames
                    if not f.accepted
                ],
                "duplicates": [
                    {"path": str(f.path), "duplicate_of": str(f.duplicate_of)}
                    for f in group.duplicates
                ],
                "frames": [
                    {
                        "path": str(f.path),
                        "accepted": f.accepted,
                        "reason": f.reason,
                        "duplicate_of": None if f.duplicate_of is None else str(f.duplicate_of),
                        "weight": f.weight,
                        "stars": f.stars,
                        "fwhm_px": f.fwhm_px,
                        "eccentricity": f.eccentricity,
                        "background_adu": f.background_adu,
                        "noise_adu": f.noise_adu,
                        "sha256": f.sha256,
                    }
                    for f in group.frames
                ],
                "notes": list(group.notes),
                "warnings": list(group.warnings),
            }
            for group in result.groups
        ],
        "masters": {name: str(path) for name, path in result.masters.items()},
        "timings_s": {stage: round(seconds, 3) for stage, seconds in result.timings_s.items()},
    }


def group_warnings(name: str, frames: Sequence[FrameOutcome]) -> tuple[str, ...]:
    """A warning when fewer than half of the group's lights were integrated, with how many
    were rejected (outliers, unreadable, not registered) and how many were copies."""
    kept = sum(1 for f in frames if f.accepted)
    if 2 * kept >= len(frames):
        return ()
    duplicates = sum(1 for f in frames if f.duplicate_of is not None)
    rejected = len(frames) - kept - duplicates
    parts = [f"{rejected} rejected"] if rejected else []
    if duplicates:
        parts.append(f"{duplicates} duplicates")
    return (
        f"{name}: only {kept} of {len(frames)} lights integrated ({', '.join(parts)}); "
        "see each light's reason",
    )
