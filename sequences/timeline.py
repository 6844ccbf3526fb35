"""Predict when each node of a document runs tonight, without touching any device.

Instructions take their `estimate_s`; waits for a time, a target's altitude or the sun end when
the ephemerides say so; a parallel container lasts as long as its longest item. Loops count one
pass (their length depends on conditions met at run time), so a looping plan is a lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from drivers.base import RaDec
from sequences.astro import clearance_deg, next_rise, next_sun_crossing, sun_altitude_deg
from sequences.base import Instruction
from sequences.context import ValidationEnv
from sequences.document import Container, ParallelContainer, SequenceDocument, TargetContainer
from sequences.instructions.utility import WaitForTime
from sequences.instructions.waits import WaitForAltitude, WaitForSunAltitude


@dataclass(frozen=True)
class TimelineEntry:
    path: str
    label: str
    start: datetime
    end: datetime


def predict(document: SequenceDocument, env: ValidationEnv, start: datetime) -> list[TimelineEntry]:
    """Entries for every node in document order, beginning at `start`."""
    entries: list[TimelineEntry] = []
    cursor = _container(document.start, "start", start, None, env, entries)
    for i, target in enumerate(document.targets):
        cursor = _container(target, f"targets[{i}]", cursor, None, env, entries)
    _container(document.end, "end", cursor, None, env, entries)
    return entries


def _container(
    container: Container,
    path: str,
    start: datetime,
    target: RaDec | None,
    env: ValidationEnv,
    entries: list[TimelineEntry],
) -> datetime:
    if isinstance(container, TargetContainer):
        target = container.coordinates.radec()
    index = len(entries)
    ends = [start]
    cursor = start
    for i, item in enumerate(container.items):
        child = f"{path}.items[{i}]"
        begin = start if isinstance(container, ParallelContainer) else cursor
        if isinstance(item, Container):
            end = _container(item, child, begin, target, env, entries)
        else:
            end = begin + timedelta(seconds=_duration_s(item, begin, target, env))
            entries.append(TimelineEntry(child, item.label, begin, end))
        ends.append(end)
        cursor = end
    finish = max(ends)
    entries.insert(index, TimelineEntry(path, container.label, start, finish))
    return finish


def _duration_s(
    instruction: Instruction, when: datetime, target: RaDec | None, env: ValidationEnv
) -> float:
    site = env.site
    if isinstance(instruction, WaitForTime):
        return max(0.0, (instruction.deadline(when) - when).total_seconds())
    if isinstance(instruction, WaitForAltitude) and site is not None:
        position = instruction.coordinates.radec() if instruction.coordinates else target
        if position is None:
            return 0.0
        bound = instruction.above.limit(env.horizon)
        if clearance_deg(position, site, when, bound) >= 0:
            return 0.0
        rise = next_rise(position, site, when, bound)
        return (rise - when).total_seconds() if rise is not None else 0.0
    if isinstance(instruction, WaitForSunAltitude) and site is not None:
        rising = instruction.direction == "rising"
        sun = sun_altitude_deg(site, when)
        if (sun >= instruction.altitude_deg) if rising else (sun <= instruction.altitude_deg):
            return 0.0
        crossing = next_sun_crossing(site, when, instruction.altitude_deg, rising=rising)
        return (crossing - when).total_seconds() if crossing is not None else 0.0
    return instruction.estimate_s(env)
