"""The equipment profile as the Equipment page reads and saves it; device tests; the horizon."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from daemon.api.schemas.common import RequestBody

MAX_HORIZON_CHARS = 200_000
"""A horizon file's size limit: real ones are a few kB (a 1-degree grid is ~3 kB)."""


class SiteRead(BaseModel):
    """A site: latitude north positive, longitude east positive (as ASCOM), elevation."""

    latitude_deg: float
    longitude_deg: float
    elevation_m: float


class ProfileRead(BaseModel):
    profile: dict[str, Any] = Field(description="the profile document (an EquipmentProfile)")
    path: str = Field(description="the file a save writes")
    embedded: bool = Field(description="the daemon runs its simulators, not a profile file")
    file_exists: bool
    in_use: bool = Field(description="the daemon runs this profile now")
    note: str = Field(description="where the profile comes from and when a save takes effect")
    site: SiteRead | None = Field(
        description="the site Nightowl uses now: the mount's, else the profile's; null: none"
    )
    site_source: Literal["mount", "profile"] | None = Field(
        description="where `site` comes from: the connected mount, or the running profile"
    )
    mount_site: SiteRead | None = Field(
        description="the site as the mount reports it; null before it connects"
    )
    site_warning: str | None = Field(
        description="the mount's site and the profile's differ by more than 1′ or 10 m"
    )


class ProfileSaved(BaseModel):
    path: str
    backup: str | None = Field(description="the copy of the file the save replaced")
    restart_needed: bool = Field(description="the daemon uses the saved profile after a restart")
    message: str
    site_warning: str | None = Field(
        default=None, description="the mount's site and the saved one differ by over 1′ or 10 m"
    )


class DeviceTestRead(BaseModel):
    role: str
    location: str
    ok: bool
    name: str | None = Field(description="the device's name once connected")
    error: str | None = Field(description="why it did not connect")
    seconds: float
    daemons_own: bool = Field(description="the daemon drives this device: it shows connected")


class HorizonCreate(RequestBody):
    text: str = Field(
        min_length=1,
        max_length=MAX_HORIZON_CHARS,
        description="a NINA .hrz ('azimuth altitude' per line) or MountWizzard4 .hpts file",
    )


class HorizonRead(BaseModel):
    path: str = Field(description="the horizon file")
    points: list[tuple[float, float]] = Field(
        description="(azimuth_deg, altitude_deg), azimuth increasing; empty: no horizon file"
    )
    in_use: bool = Field(description="the daemon's nights use these points now")
    message: str = ""
