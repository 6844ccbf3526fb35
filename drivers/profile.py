"""Equipment profiles: which device plays which role, and where to reach it.

A profile is a YAML (or JSON) file such as::

    name: backyard-refractor
    camera:          {url: "http://192.168.1.20:11111", device_number: 0}
    guide_camera:    {url: "http://192.168.1.20:11111", device_number: 1}
    mount:           {url: "http://192.168.1.21:11111", device_number: 0}
    focuser:         {url: "http://192.168.1.20:11111", device_number: 0, move_timeout_s: 90}
    filter_wheel:    {url: "http://192.168.1.20:11111", device_number: 0}
    safety_monitor:  {url: "http://192.168.1.22:11111", device_number: 0}

Every role is optional. Timeouts are margins on top of what each call's arguments imply.
An optional ``acceptance:`` mapping overrides the frame quality rules
(`processing.acceptance.AcceptanceRules`), e.g. ``acceptance: {max_hfr_factor: 1.3}``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from processing.acceptance import AcceptanceRules

ROLES = ("camera", "guide_camera", "mount", "focuser", "filter_wheel", "safety_monitor")


class ProfileError(ValueError):
    """A profile file is missing, unreadable or invalid; the message names the field."""


class DeviceAddress(BaseModel):
    """An Alpaca device: server URL (``http://host:port``) and device number."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="Alpaca server base URL, e.g. http://127.0.0.1:11111")
    device_number: int = Field(default=0, ge=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
            raise ValueError("must look like http://host:port (scheme, host and port)")
        if parts.path not in ("", "/"):
            raise ValueError("must be the server's base URL, without a path")
        return f"{parts.scheme}://{parts.netloc}"


class CameraAddress(DeviceAddress):
    readout_timeout_s: float = Field(
        default=30.0, gt=0, description="time allowed after the exposure until the image is ready"
    )


class MountAddress(DeviceAddress):
    min_slew_rate_deg_s: float = Field(
        default=1.0, gt=0, description="slowest slew speed expected; sets slew deadlines"
    )
    park_timeout_s: float = Field(default=180.0, gt=0)


class FocuserAddress(DeviceAddress):
    move_timeout_s: float = Field(default=60.0, gt=0, description="margin on top of the travel")
    steps_per_s: float = Field(default=500.0, gt=0, description="slowest expected focuser speed")


class FilterWheelAddress(DeviceAddress):
    move_timeout_s: float = Field(default=60.0, gt=0)


class EquipmentProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    camera: CameraAddress | None = None
    guide_camera: CameraAddress | None = None
    mount: MountAddress | None = None
    focuser: FocuserAddress | None = None
    filter_wheel: FilterWheelAddress | None = None
    safety_monitor: DeviceAddress | None = None
    acceptance: AcceptanceRules = Field(
        default_factory=AcceptanceRules,
        description="frame quality rules; rejected frames are kept with their reason",
    )


def load_profile(path: Path) -> EquipmentProfile:
    """Read and validate a profile file; `ProfileError` names the file and the bad field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ProfileError(f"cannot read equipment profile {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ProfileError(f"equipment profile {path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ProfileError(f"equipment profile {path} must be a mapping of roles to devices")
    try:
        return EquipmentProfile.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ProfileError(f"equipment profile {path} is invalid: {problems}") from e
