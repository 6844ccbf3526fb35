"""The equipment profile and the custom horizon, read and written for the Equipment page.

The daemon builds its devices from the profile once, at start: a saved profile (or horizon)
takes effect at the next start, and every answer says so. When the daemon runs the simulators
(no `NIGHTOWL_EQUIPMENT_PROFILE`), a saved profile goes to ``<data_dir>/equipment.yaml`` and is
used once the daemon is started with ``NIGHTOWL_EQUIPMENT_PROFILE`` pointing at it; the
simulators' own profile is never replaced behind a person's back.

Files are written atomically (temporary file, fsync, rename) and the file they replace is kept
beside them as ``<name>.bak``.

The site: the mount's report wins (it is what the mount computes its pointing with); the
profile's ``site:`` is used when the mount reports none. Nightowl does not write the profile's
site into the mount: when the two disagree by more than `SITE_TOLERANCE_ARCMIN` or
`SITE_TOLERANCE_M`, every answer carries a warning so that a person corrects one of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from daemon.errors import Conflict, NotFound, Refused
from daemon.settings import Settings
from drivers.alpaca import build_equipment
from drivers.equipment import Equipment
from drivers.errors import DeviceError
from drivers.profile import ROLES, EquipmentProfile, ObservingSite, ProfileError, load_profile
from sequences.astro import Horizon, Site
from sequences.validation import mount_site, site_of

log = logging.getLogger(__name__)

SAVED_PROFILE_NAME = "equipment.yaml"
"""Where a profile edited on a daemon that runs the simulators is saved, in the data dir."""
HORIZON_NAME = "horizon.hrz"
"""The uploaded horizon's file name, beside the profile (or in the data dir)."""
TEST_TIMEOUT_S = 20.0
"""How long a device test may take to connect and read the device's facts."""
SITE_TOLERANCE_ARCMIN = 1.0
"""Latitudes or longitudes further apart than this make the mount's and profile's sites differ."""
SITE_TOLERANCE_M = 10.0
"""Elevations further apart than this make the mount's and the profile's sites differ."""


@dataclass(frozen=True)
class ProfileState:
    """The profile a person edits: its document, where it is saved, what the daemon runs."""

    document: dict[str, Any]
    path: Path
    embedded: bool
    file_exists: bool
    in_use: bool
    note: str
    site: Site | None
    """The site Nightowl uses now: the mount's, else the running profile's."""
    site_source: Literal["mount", "profile"] | None
    """"mount" or "profile" (None: no site known)."""
    mount_site: Site | None
    site_warning: str | None


@dataclass(frozen=True)
class SavedFile:
    path: Path
    backup: Path | None
    restart_needed: bool
    message: str
    site_warning: str | None = None


@dataclass(frozen=True)
class DeviceProbe:
    role: str
    location: str
    ok: bool
    name: str | None
    error: str | None
    seconds: float
    daemons_own: bool


def profile_path(settings: Settings) -> Path:
    """The file a saved profile goes to."""
    return settings.equipment_profile or settings.data_dir / SAVED_PROFILE_NAME


def horizon_path(settings: Settings) -> Path:
    """The horizon file: `horizon_file` when set, else ``horizon.hrz`` beside the profile."""
    if settings.horizon_file is not None:
        return settings.horizon_file
    return profile_path(settings).parent / HORIZON_NAME


def stored_horizon(settings: Settings) -> Horizon | None:
    """The horizon uploaded from the Equipment page, when `horizon_file` is not set; a file
    that no longer reads is logged and left out (the night then uses the flat horizon)."""
    if settings.horizon_file is not None:
        return None
    path = horizon_path(settings)
    if not path.is_file():
        return None
    try:
        return Horizon.from_text(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("the horizon %s is left out: %s", path, e)
        return None


def _editable(settings: Settings, running: EquipmentProfile | None) -> EquipmentProfile:
    """The daemon's profile file as it is now (it may be newer than the daemon's start), or
    the profile the daemon runs."""
    if settings.equipment_profile is not None:
        try:
            return load_profile(settings.equipment_profile)
        except ProfileError as e:
            raise Conflict(f"{e}; fix the file or save the form again") from e
    if running is None:
        raise Conflict("the daemon has not built its equipment yet")
    return running


def read_profile(
    settings: Settings, equipment: Equipment, running: EquipmentProfile | None
) -> ProfileState:
    path = profile_path(settings)
    embedded = settings.equipment_profile is None
    exists = path.is_file()
    if embedded and exists:
        try:
            profile = load_profile(path)
        except ProfileError as e:
            raise Conflict(f"{e}; delete it or fix it") from e
        note = (
            f"The daemon runs the simulators. This profile is saved in {path}; start the daemon "
            f"with NIGHTOWL_EQUIPMENT_PROFILE={path} to use it."
        )
        in_use = False
    else:
        profile = _editable(settings, running)
        in_use = True
        note = (
            f"The daemon runs the simulators. Saving writes {path}; start the daemon with "
            f"NIGHTOWL_EQUIPMENT_PROFILE={path} to use it."
            if embedded
            else f"The daemon's profile {path}. A saved change takes effect when the daemon "
            "restarts."
        )
    reported = mount_site(equipment)
    used = site_of(equipment)
    return ProfileState(
        document=profile.model_dump(mode="json"),
        path=path,
        embedded=embedded,
        file_exists=exists,
        in_use=in_use,
        note=note,
        site=used,
        site_source=None if used is None else "mount" if reported is not None else "profile",
        mount_site=reported,
        site_warning=site_disagreement(reported, profile.site),
    )


def site_disagreement(reported: Site | None, kept: ObservingSite | None) -> str | None:
    """A warning when the mount's site and the profile's differ by more than the tolerances
    (None when they agree or either is unknown)."""
    if reported is None or kept is None:
        return None
    latitude_arcmin = abs(reported.latitude_deg - kept.latitude_deg) * 60.0
    longitude_arcmin = abs((reported.longitude_deg - kept.longitude_deg + 180.0) % 360.0 - 180.0)
    longitude_arcmin *= 60.0
    elevation_m = abs(reported.elevation_m - kept.elevation_m)
    differences = [
        f"latitude by {latitude_arcmin:.1f}′" if latitude_arcmin > SITE_TOLERANCE_ARCMIN else "",
        f"longitude by {longitude_arcmin:.1f}′" if longitude_arcmin > SITE_TOLERANCE_ARCMIN else "",
        f"elevation by {elevation_m:.0f} m" if elevation_m > SITE_TOLERANCE_M else "",
    ]
    named = [d for d in differences if d]
    if not named:
        return None
    return (
        f"The mount reports a site ({_site_text(reported)}) that differs from the profile's "
        f"({_site_text(kept)}) in {', '.join(named)}. Nightowl uses the mount's: set the right "
        "site in the mount, or copy the mount's into the profile."
    )


def _site_text(site: Site | ObservingSite) -> str:
    return f"{site.latitude_deg:.5f}°, {site.longitude_deg:.5f}°, {site.elevation_m:.0f} m"


def write_atomically(path: Path, text: str) -> Path | None:
    """Write `text` to `path` through a temporary file and a rename; the file it replaces is
    copied to ``<path>.bak`` first (returned; None when there was none). Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if path.is_file():
        backup = path.with_name(path.name + ".bak")
        shutil.copy2(path, backup)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return backup


def profile_yaml(profile: EquipmentProfile) -> str:
    """The profile as YAML, leaving out what equals its default (the file stays short)."""
    document = profile.model_dump(mode="json", exclude_defaults=True)
    document = {"name": profile.name, **document}
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def refuse_while_active(run_id: int | None, night_id: int | None) -> None:
    if run_id is not None:
        raise Conflict(f"run {run_id} is active: save the profile once it has ended")
    if night_id is not None:
        raise Conflict(f"night {night_id} is active: save the profile once it has ended")


def save_profile(
    settings: Settings,
    profile: EquipmentProfile,
    running: EquipmentProfile | None,
    equipment: Equipment | None = None,
) -> SavedFile:
    """Write the profile; `running` is the profile the daemon runs (None: not known), and
    the site its `equipment`'s mount reports is compared with the profile's.
    Raises Conflict when the file cannot be written."""
    path = profile_path(settings)
    try:
        backup = write_atomically(path, profile_yaml(profile))
    except OSError as e:
        raise Conflict(f"cannot write {path}: {e.strerror or e}") from e
    warning = None if equipment is None else site_disagreement(mount_site(equipment), profile.site)
    if settings.equipment_profile is None:
        return SavedFile(
            path,
            backup,
            True,
            f"Saved in {path}. The daemon runs the simulators: start it with "
            f"NIGHTOWL_EQUIPMENT_PROFILE={path} to use this profile.",
            warning,
        )
    changed = running is None or running != profile
    message = (
        f"Saved in {path}. Restart the daemon to use it (devices are built at start)."
        if changed
        else f"Saved in {path}; it is the profile the daemon runs."
    )
    return SavedFile(path, backup, changed, message, warning)


async def probe_device(
    profile: EquipmentProfile, role: str, running: Equipment, timeout_s: float = TEST_TIMEOUT_S
) -> DeviceProbe:
    """Connect the device `profile` names for `role` and read its facts, within `timeout_s`.

    When the daemon drives that role at the same address, its own device is connected, so
    the daemon's equipment shows it connected too. A device is left connected either way:
    an Alpaca device's connection is shared by its clients, and disconnecting would take it
    from whoever else uses it. Raises Refused for an unknown role, NotFound when the profile
    names no device for it."""
    if role not in ROLES:
        raise Refused(None, f"no role {role!r}; roles: {', '.join(ROLES)}")
    device = getattr(build_equipment(profile), role)
    if device is None:
        raise NotFound(f"the profile names no {role}: fill in its address and save first")
    own = getattr(running, role)
    is_own = own is not None and own.location == device.location
    if is_own:
        device = own
    began = time.monotonic()
    name: str | None = None
    error: str | None = None
    try:
        async with asyncio.timeout(timeout_s):
            await device.connect()
            name = getattr(device.info, "name", None)
    except TimeoutError:
        error = f"no answer from {device.location} within {timeout_s:g} s"
    except DeviceError as e:
        error = str(e)
    except OSError as e:
        error = f"cannot reach {device.location}: {e}"
    seconds = time.monotonic() - began
    return DeviceProbe(role, device.location, error is None, name, error, seconds, is_own)


def read_horizon(settings: Settings, in_use: Horizon | None) -> tuple[Path, Horizon | None, bool]:
    """The horizon file, its points (None: no file) and whether the daemon uses them now."""
    path = horizon_path(settings)
    horizon = None
    if path.is_file():
        try:
            horizon = Horizon.from_text(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            log.warning("the horizon %s does not read: %s", path, e)
    return path, horizon, horizon is not None and horizon == in_use


def save_horizon(settings: Settings, text: str) -> tuple[Path, Horizon, Path | None]:
    """Check `text` with the horizon reader (Refused names its line) and store it."""
    try:
        horizon = Horizon.from_text(text)
    except ValueError as e:
        raise Refused("text", str(e)) from e
    path = horizon_path(settings)
    try:
        backup = write_atomically(path, text)
    except OSError as e:
        raise Conflict(f"cannot write {path}: {e.strerror or e}") from e
    return path, horizon, backup
