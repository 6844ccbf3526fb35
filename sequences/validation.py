"""Check a document against the equipment and tonight's sky before a run starts: what the
nodes check themselves, and when the run would begin against the sun and its targets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from drivers.equipment import Equipment
from sequences.astro import (
    NAUTICAL_TWILIGHT_DEG,
    Horizon,
    Limit,
    Site,
    clearance_deg,
    next_rise,
    next_sun_crossing,
    night_window,
    sun_altitude_deg,
)
from sequences.clock import Clock
from sequences.conditions.sky import WhileAboveAltitude, WhileSunBelow
from sequences.context import ValidationEnv
from sequences.document import SequenceDocument, TargetContainer
from sequences.frames import FrameType
from sequences.instructions.imaging import TakeExposures
from sequences.instructions.waits import WaitForAltitude, WaitForSunAltitude
from sequences.model import Issue


def site_of(equipment: Equipment) -> Site | None:
    """The observatory site: as the connected mount reports it, else the profile's ``site:``
    (None when neither is known)."""
    reported = mount_site(equipment)
    if reported is not None:
        return reported
    kept = equipment.site
    if kept is None:
        return None
    return Site(kept.latitude_deg, kept.longitude_deg, kept.elevation_m)


def mount_site(equipment: Equipment) -> Site | None:
    """The site as the mount reports it (None before it connects or without one)."""
    mount = equipment.mount
    if mount is None or not mount.connected:
        return None
    info = mount.info
    if info.site_latitude_deg is None or info.site_longitude_deg is None:
        return None
    return Site(
        latitude_deg=info.site_latitude_deg,
        longitude_deg=info.site_longitude_deg,
        elevation_m=info.site_elevation_m or 0.0,
    )


async def validation_env(
    equipment: Equipment,
    clock: Clock,
    horizon: Horizon | None = None,
    *,
    scripts_dir: Path | None = None,
) -> ValidationEnv:
    """What the connected equipment offers and tonight's dark window at its site;
    `scripts_dir`: the folder run_command may start programs from (None: it may not)."""
    roles = frozenset(device.role for device in equipment.devices())
    if equipment.external_guider is not None:
        roles |= {"guide_camera"}  # the guiding program runs it
    wheel = equipment.filter_wheel
    filters = wheel.info.names if wheel is not None and wheel.connected else None
    camera = equipment.camera
    exposure_max = camera.info.exposure_max_s if camera is not None and camera.connected else None
    site = site_of(equipment)
    start = end = None
    if site is not None:
        # Off the loop: the first sky computation reads astropy's Earth orientation tables
        # (2 s on a busy machine), and each new day builds a table of the sun's places.
        window = await asyncio.to_thread(night_window, site, clock.now())
        if window is not None:
            start, end = window
    return ValidationEnv(
        roles=roles,
        filter_names=tuple(filters) if filters is not None else None,
        exposure_max_s=exposure_max,
        site=site,
        horizon=horizon,
        night_start=start,
        night_end=end,
        scripts_dir=scripts_dir,
    )


def sky_issues(document: SequenceDocument, env: ValidationEnv, now: datetime) -> list[Issue]:
    """What tonight's sky does to a run started at `now`: the sun still up when the lights
    would begin, a target below its limit then (and when it rises above it), or not above it
    before dawn. Empty without a site."""
    site = env.site
    if site is None or not any(_takes_lights(node) for _, node in document.walk()):
        return []
    issues: list[Issue] = []
    start = now
    sun_wait = _sun_wait_deg(document)
    dark_deg = sun_wait if sun_wait is not None else NAUTICAL_TWILIGHT_DEG
    sun_now = sun_altitude_deg(site, now)
    if sun_now > dark_deg:
        dark = next_sun_crossing(site, now, dark_deg, rising=False)
        if sun_wait is not None and dark is not None:
            start = dark  # the run waits for the dark itself
        else:
            when = (
                f"it is dark (sun at {dark_deg:g} deg) from {_at(dark, now)}"
                if dark
                else (f"the sun does not reach {dark_deg:g} deg in the next 36 h")
            )
            issues.append(
                Issue(
                    "start",
                    f"the sun is up ({sun_now:.0f} deg) at the planned start; {when}",
                    "add wait_for_sun_altitude to the start area, or start the run later",
                )
            )
    night_end = env.night_end
    for i, target in enumerate(document.targets):
        if not isinstance(target, TargetContainer):
            continue
        issues += _target_issues(target, f"targets[{i}]", env, start, night_end)
    return issues


def _target_issues(
    target: TargetContainer,
    path: str,
    env: ValidationEnv,
    start: datetime,
    night_end: datetime | None,
) -> list[Issue]:
    assert env.site is not None
    radec = target.coordinates.radec()
    waits = [
        item.above.limit(env.horizon) for item in target.items if isinstance(item, WaitForAltitude)
    ]
    limits = [
        c.above.limit(env.horizon) for c in target.conditions if isinstance(c, WhileAboveAltitude)
    ]
    limit: Limit = (limits or waits or [env.horizon if env.horizon is not None else 0.0])[0]
    if clearance_deg(radec, env.site, start, limit) >= 0:
        return []
    name = target.target_name
    what = "its limit" if isinstance(limit, Horizon) else f"its limit ({limit:g} deg)"
    rise = next_rise(radec, env.site, start, limit)
    if rise is None:
        return [
            Issue(
                f"{path}.coordinates",
                f"{name} does not rise above {what} in the next 36 h",
                "choose a target that is up tonight, or lower its altitude limit",
            )
        ]
    hours = (rise - start).total_seconds() / 3600.0
    late = night_end is not None and rise >= night_end
    if waits and not late:
        return []  # the run waits for it, and it rises before dawn
    message = (
        f"{name} is below {what} at the planned start ({_at(start, start)}) and rises above "
        f"it in {hours:.1f} h ({_at(rise, start)})" + (", after dawn" if late else "")
    )
    fix = (
        "run this template another night or choose a target that is up tonight"
        if late
        else "add wait_for_altitude first in the target, or start the run later"
    )
    return [Issue(f"{path}.coordinates", message, fix)]


def _takes_lights(node: object) -> bool:
    return isinstance(node, TakeExposures) and node.frame_type is FrameType.LIGHT


def _sun_wait_deg(document: SequenceDocument) -> float | None:
    """The altitude a run waits for the sun to set below before its lights (None: no wait)."""
    for _, node in document.start.walk("start"):
        if isinstance(node, WaitForSunAltitude) and node.direction == "setting":
            return node.altitude_deg
    for target in document.targets:
        for condition in target.conditions:
            if isinstance(condition, WhileSunBelow):
                return condition.altitude_deg
        for item in target.items:
            if isinstance(item, WaitForSunAltitude) and item.direction == "setting":
                return item.altitude_deg
    return None


def _at(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    day = "" if when.date() == now.astimezone(UTC).date() else f"{when:%Y-%m-%d} "
    return f"{day}{when.astimezone(UTC):%H:%M} UTC"
