"""The equipment profile and the site, read and edited as a form."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from daemon import profile_editor as service
from daemon.api.deps import RuntimeDep
from daemon.api.responses import responses
from daemon.api.schemas.profile import (
    DeviceTestRead,
    HorizonCreate,
    HorizonRead,
    ProfileRead,
    ProfileSaved,
    SiteRead,
)
from drivers.profile import EquipmentProfile
from sequences.astro import Horizon, Site

router = APIRouter(prefix="/api/profile", tags=["profile"])


@router.get("", responses=responses(409))
async def get_profile(runtime: RuntimeDep) -> ProfileRead:
    """The profile to edit, the file a save writes, whether the daemon runs it now; the site
    in use (the mount's, else the running profile's), the mount's report and a warning when
    it and the profile's site differ. 409 when the profile file no longer reads."""
    state = await asyncio.to_thread(
        service.read_profile, runtime.settings, runtime.equipment, runtime.profile
    )
    return ProfileRead(
        profile=state.document,
        path=str(state.path),
        embedded=state.embedded,
        file_exists=state.file_exists,
        in_use=state.in_use,
        note=state.note,
        site=_site_read(state.site),
        site_source=state.site_source,
        mount_site=_site_read(state.mount_site),
        site_warning=state.site_warning,
    )


def _site_read(site: Site | None) -> SiteRead | None:
    if site is None:
        return None
    return SiteRead(
        latitude_deg=site.latitude_deg,
        longitude_deg=site.longitude_deg,
        elevation_m=site.elevation_m,
    )


@router.get("/schema")
async def schema() -> dict[str, Any]:
    """The JSON schema of a profile: every role and its fields, with types, limits, defaults."""
    return EquipmentProfile.model_json_schema()


@router.put("", responses=responses(409))
async def put_profile(body: EquipmentProfile, runtime: RuntimeDep) -> ProfileSaved:
    """Save the profile as YAML (atomically, the old file kept as ``.bak``). 422 names each
    refused field under ``loc`` ``["body", role, field]``; 409 while a run or night is active.
    Devices are built at start: `restart_needed` says the daemon uses it after a restart.
    Latitude and longitude of ``site`` may be sexagesimal text; `site_warning` says when the
    mount reports a different site."""
    service.refuse_while_active(runtime.runs.active_run_id, runtime.nights.active_night_id)
    saved = await asyncio.to_thread(
        service.save_profile, runtime.settings, body, runtime.profile, runtime.equipment
    )
    return ProfileSaved(
        path=str(saved.path),
        backup=None if saved.backup is None else str(saved.backup),
        restart_needed=saved.restart_needed,
        message=saved.message,
        site_warning=saved.site_warning,
    )


@router.post("/test/{role}", responses=responses(404, 409))
async def probe(role: str, runtime: RuntimeDep) -> DeviceTestRead:
    """Connect the saved profile's device for `role` and read its name, within 20 s: `ok`
    or the `error` with its reason. The device stays connected (the daemon's own device when
    the daemon drives that address). 404 when the profile names no such device, 422 for an
    unknown role."""
    profile = (
        await asyncio.to_thread(
            service.read_profile, runtime.settings, runtime.equipment, runtime.profile
        )
    ).document
    tested = await service.probe_device(
        EquipmentProfile.model_validate(profile), role, runtime.equipment
    )
    return DeviceTestRead(
        role=tested.role,
        location=tested.location,
        ok=tested.ok,
        name=tested.name,
        error=tested.error,
        seconds=tested.seconds,
        daemons_own=tested.daemons_own,
    )


def _horizon_read(path: Path, horizon: Horizon | None, in_use: bool, message: str) -> HorizonRead:
    points = (
        []
        if horizon is None
        else list(zip(horizon.azimuths_deg, horizon.altitudes_deg, strict=True))
    )
    return HorizonRead(path=str(path), points=points, in_use=in_use, message=message)


@router.get("/horizon")
async def get_horizon(runtime: RuntimeDep) -> HorizonRead:
    """The custom horizon's points for the plot, and whether tonight's nights use them."""
    path, horizon, in_use = await asyncio.to_thread(
        service.read_horizon, runtime.settings, runtime.horizon
    )
    return _horizon_read(path, horizon, in_use, "")


@router.post("/horizon", responses=responses(409))
async def post_horizon(body: HorizonCreate, runtime: RuntimeDep) -> HorizonRead:
    """Store a horizon file beside the profile (or at NIGHTOWL_HORIZON_FILE), checked with the
    horizon reader first: 422 with the reader's message under ``loc`` ``["body", "text"]``.
    The daemon's nights use it from its next start."""
    path, horizon, _ = await asyncio.to_thread(service.save_horizon, runtime.settings, body.text)
    in_use = horizon == runtime.horizon
    message = (
        f"Saved in {path}."
        if in_use
        else f"Saved in {path}; the daemon's nights use it from its next start."
    )
    return _horizon_read(path, horizon, in_use, message)
