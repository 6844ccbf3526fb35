"""Templates into runs: copies of a template's target container aimed at chosen targets.

A template's first target container is the pattern for imaging one target. Targets dropped into
a template (the API's and the CLI's `targets`) and a night plan's run for one of its targets both
copy it with the target's name, coordinates and rotation, here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sequences.document import SequenceDocument, TargetContainer
from sequences.errors import DocumentError
from sequences.instructions.mount import Coordinates
from sequences.model import Issue


@dataclass(frozen=True)
class TargetSpec:
    """A target to aim a template at."""

    name: str
    ra_hours: float
    """J2000 right ascension."""
    dec_deg: float
    """J2000 declination."""
    rotation_deg: float | None = None


def aimed_target(
    template: SequenceDocument, target: TargetSpec, *, fallback: TargetContainer | None = None
) -> TargetContainer:
    """A copy of the template's first target container aimed at `target` (its name, coordinates
    and rotation); `fallback` is copied instead when the template has none.

    Raises `DocumentError` when there is neither, and pydantic's `ValidationError` for
    coordinates out of range."""
    base = next((t for t in template.targets if isinstance(t, TargetContainer)), fallback)
    if base is None:
        raise DocumentError(
            [Issue("targets", "the template has no target container", "add one to drop into")]
        )
    return base.model_copy(
        update={
            "target_name": target.name,
            "name": target.name,
            "coordinates": Coordinates(ra_hours=target.ra_hours, dec_deg=target.dec_deg),
            "rotation_deg": target.rotation_deg,
        }
    )


def drop_targets(template: SequenceDocument, targets: Sequence[TargetSpec]) -> SequenceDocument:
    """The template with its targets replaced by one aimed copy of its first target container
    per target; the template itself when `targets` is empty. Raises as `aimed_target`."""
    if not targets:
        return template
    return template.model_copy(update={"targets": [aimed_target(template, t) for t in targets]})
