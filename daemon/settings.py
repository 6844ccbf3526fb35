"""Daemon settings, from ``NIGHTOWL_*`` environment variables (or a ``.env`` file).

Equipment comes from, in this order: an equipment profile file (`equipment_profile`), an
already running simulator rig (`simulator_url`), or, when neither is set, a simulator rig that
the daemon starts and stops itself (the embedded default, so a fresh clone runs at once).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NIGHTOWL_", env_file=".env", extra="ignore")

    host: str = Field(default="127.0.0.1", description="address the HTTP API listens on")
    port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Field(default=Path("var"), description="frames, database, run files")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in data_dir"
    )
    cache_dir: Path | None = Field(
        default=None, description="built data such as the star catalog; default: data_dir/cache"
    )
    equipment_profile: Path | None = Field(
        default=None, description="YAML equipment profile naming the real devices"
    )
    simulator_url: str | None = Field(
        default=None, description="use an already running simulator rig at this URL"
    )
    connect_on_start: bool = Field(default=True, description="connect all devices at startup")
    log_level: str = Field(default="INFO")

    @field_validator("equipment_profile")
    @classmethod
    def _profile_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value} (set it to a YAML equipment profile)")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'nightowl.db').resolve()}"

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or self.data_dir / "cache"
