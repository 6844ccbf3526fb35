"""Check a document against the equipment and tonight's sky before a run starts."""

from __future__ import annotations

from pathlib import Path

from drivers.equipment import Equipment
from sequences.astro import Horizon, Site, night_window
from sequences.clock import Clock
from sequences.context import ValidationEnv


def site_of(equipment: Equipment) -> Site | None:
    """The observatory site as the mount knows it (None before it connects or without one)."""
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
        window = night_window(site, clock.now())
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
