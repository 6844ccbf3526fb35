"""Daemon settings, from ``NIGHTOWL_*`` environment variables (or a ``.env`` file).

Equipment comes from, in this order: an equipment profile file (`equipment_profile`), an
already running simulator rig (`simulator_url`), or, when neither is set, a simulator rig that
the daemon starts and stops itself (the embedded default, so a fresh clone runs at once).

The database and sky modules (SQLAlchemy, astropy.coordinates) are imported only by the
validators that need them: `nightowl process` reads one setting, and half a second of
imports it does not use would be most of a small job's start.
"""

from __future__ import annotations

import ipaddress
import json
import os
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from daemon.access import LOOPBACK_HOSTS, is_loopback, normal_host, normal_origin, token_problem
from daemon.naming import DEFAULT_PATTERN, validate_pattern
from processing.cluster import scheduler_address_problem

if TYPE_CHECKING:
    from sequences.astro import Horizon


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class Settings(BaseSettings):
    # hide_input_in_errors: a refused token must not end up in a traceback or a log.
    model_config = SettingsConfigDict(
        env_prefix="NIGHTOWL_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    host: str = Field(default="127.0.0.1", description="address the HTTP API listens on")
    port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Field(default=Path("var"), description="frames, database, run files")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL: sqlite:///FILE, or postgresql+psycopg://user@host:port/db "
        "for one database shared by several daemons (one per telescope, each with its own "
        "profile name); default: SQLite file in data_dir",
    )
    cache_dir: Path | None = Field(
        default=None, description="built data such as the star catalog; default: data_dir/cache"
    )
    solver_cache_dir: Path | None = Field(
        default=None,
        description="plate-solving databases, shared by the daemon and the CLI; default: "
        "cache_dir when set, else $XDG_CACHE_HOME/nightowl/solver (~/.cache/nightowl/solver)",
    )
    solver_cache_max_mb: int = Field(
        default=2000,
        ge=100,
        description="bound on the solver databases' total size: least recently used removed first",
    )
    equipment_profile: Path | None = Field(
        default=None, description="YAML equipment profile naming the real devices"
    )
    simulator_url: str | None = Field(
        default=None, description="use an already running simulator rig at this URL"
    )
    connect_on_start: bool = Field(default=True, description="connect all devices at startup")
    file_pattern: str = Field(
        default=DEFAULT_PATTERN, description="frame file names, NINA-style $$TOKENS$$"
    )
    timezone: str | None = Field(
        default=None, description="IANA time zone for night dates and file names; default: system"
    )
    log_level: str = Field(default="INFO")
    clock: Literal["system", "simulated"] = Field(
        default="system",
        description="simulated: waits for times, altitudes and the sun jump ahead (rehearsals)",
    )
    clock_start: datetime | None = Field(
        default=None, description="UTC start of the simulated clock (ISO 8601); default: now"
    )
    resume_runs: bool = Field(
        default=False, description="resume a run interrupted by a crash or restart at startup"
    )
    safe_delay_s: float = Field(
        default=600.0,
        ge=0,
        le=86_400,
        description="continuous safe time before a night goes on after an unsafe spell",
    )
    safety_poll_s: float = Field(
        default=5.0, gt=0, le=300, description="how often the safety supervisor polls"
    )
    horizon_file: Path | None = Field(
        default=None,
        description="custom horizon, NINA .hrz layout ('azimuth altitude' per line)",
    )
    process_after_run: bool = Field(
        default=True,
        description="queue a processing job for the night's lights when a sequence run ends",
    )
    live_stack: bool = Field(
        default=True,
        description=(
            "stack each accepted light into the night's live stack (dashboard) as it arrives; "
            "the morning's job then reuses the calibrated lights"
        ),
    )
    live_cache_days: float = Field(
        default=7.0,
        ge=0,
        le=3650,
        description=(
            "days after a night closes that its live cache (the calibrated lights its job "
            "reuses, DATA_DIR/live/night_<id>/cache) is removed when no job of it has "
            "succeeded; a successful job of the closed night removes it at once"
        ),
    )
    control_token: SecretStr | None = Field(
        default=None, description="API token of the control role (may do everything)"
    )
    read_token: SecretStr | None = Field(
        default=None, description="API token of the read role (GET and HEAD only)"
    )

    # NoDecode: the environment may give these as JSON or as comma-separated values.
    allowed_hosts: Annotated[list[str] | None, NoDecode] = Field(
        default=None,
        description=(
            "host names the API answers to besides the loopback names (the Host header; "
            "'*' for any, '*.example.org' for its subdomains); default: only the loopback "
            "names, or any host once a token guards the API"
        ),
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "other web origins (scheme://host:port) whose pages may change state through the "
            "API; the daemon's own origin is always allowed"
        ),
    )
    scripts_dir: Path | None = Field(
        default=None,
        description=(
            "folder of programs the run_command instruction may start; unset: run_command "
            "is refused"
        ),
    )
    processing_roots: Annotated[list[Path] | None, NoDecode] = Field(
        default=None,
        description="folders a processing job may read from; default: data_dir",
    )
    dask_scheduler: str | None = Field(
        default=None,
        description=(
            "tcp://host:port of a Dask scheduler: processing jobs run on its cluster (the "
            "workers must see the data folder at the same path); default: a local process pool"
        ),
    )
    webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "http(s) URLs that receive every alert event as a JSON POST (roof failed, device "
            "lost, night ended by safety, night's picture ready)"
        ),
    )

    @field_validator(
        "allowed_hosts", "allowed_origins", "processing_roots", "webhook_urls", mode="before"
    )
    @classmethod
    def _listed(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"NIGHTOWL_{str(info.field_name).upper()} is not a JSON list ({e.msg}); "
                    "give a JSON list or comma-separated values"
                ) from e
        return [item.strip() for item in value.split(",") if item.strip()]

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        hosts = [normal_host(host) for host in value]
        for given, host in zip(value, hosts, strict=True):
            name = host.removeprefix("*.")
            if host == "*" or _is_ip_address(host):
                continue
            if not name or any(c in name for c in "*/@?#:[] "):
                raise ValueError(
                    f"NIGHTOWL_ALLOWED_HOSTS: {given!r} is not a host name; give names "
                    "without scheme or port, e.g. observatory.local,192.168.1.20,*.example.org"
                )
        return hosts

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        origins = []
        for given in value:
            origin = normal_origin(given)
            if origin is None:
                raise ValueError(
                    f"NIGHTOWL_ALLOWED_ORIGINS: {given!r} is not a web origin; give "
                    "scheme://host[:port] without a path, e.g. https://observatory.example:8443"
                )
            origins.append(origin)
        return origins

    @field_validator("webhook_urls")
    @classmethod
    def _webhooks(cls, value: list[str]) -> list[str]:
        """Each an http(s) URL with a host; the message leaves the URL out, since its path
        often holds the webhook's secret."""
        for number, url in enumerate(value, start=1):
            parts = urlsplit(url)
            problem = None
            if parts.scheme not in ("http", "https"):
                problem = f"has the scheme {parts.scheme!r}" if parts.scheme else "has no scheme"
            elif not parts.hostname:
                problem = "has no host"
            else:
                try:
                    parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
                except ValueError:
                    problem = "has a port that is not a number"
            if problem is not None:
                raise ValueError(
                    f"NIGHTOWL_WEBHOOK_URLS: URL {number} {problem}; give full http(s) URLs, "
                    "e.g. https://hooks.example.org/nightowl,http://192.168.1.5:8080/alerts"
                )
        return value

    @field_validator("dask_scheduler")
    @classmethod
    def _scheduler_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        problem = scheduler_address_problem(value.strip())
        if problem is not None:
            raise ValueError(
                f"NIGHTOWL_DASK_SCHEDULER={value!r} {problem}; give the Dask scheduler's "
                "address as tcp://host:port (e.g. tcp://192.168.1.20:8786), or unset it to "
                "process on this machine"
            )
        return value.strip()

    @field_validator("equipment_profile")
    @classmethod
    def _profile_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value} (set it to a YAML equipment profile)")
        return value

    @field_validator("scripts_dir")
    @classmethod
    def _scripts_folder(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(
                f"NIGHTOWL_SCRIPTS_DIR={value} is not a folder; give an existing folder that "
                "holds only the programs run_command may start, or unset it"
            )
        return value

    @field_validator("horizon_file")
    @classmethod
    def _horizon_readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            from sequences.astro import Horizon

            try:
                Horizon.from_text(value.read_text(encoding="utf-8"))
            except OSError as e:
                raise ValueError(f"cannot read {value}: {e.strerror}") from e
        return value

    def horizon(self) -> Horizon | None:
        """The custom horizon of `horizon_file` (checked when the settings were read)."""
        from sequences.astro import Horizon

        if self.horizon_file is None:
            return None
        return Horizon.from_text(self.horizon_file.read_text(encoding="utf-8"))

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from daemon.db.engine import normal_database_url

        return normal_database_url(value)

    @field_validator("clock_start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a UTC offset, e.g. 2026-11-22T17:00:00Z")
        return value

    @field_validator("file_pattern")
    @classmethod
    def _known_tokens(cls, value: str) -> str:
        return validate_pattern(value)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as e:
                raise ValueError(f"unknown time zone {value!r}; use e.g. Europe/Zurich") from e
        return value

    @field_validator("control_token", "read_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            return None
        problem = token_problem(value.get_secret_value())
        if problem is not None:
            raise ValueError(f"NIGHTOWL_{str(info.field_name).upper()} {problem}")
        control = info.data.get("control_token")
        if info.field_name == "read_token" and control == value:
            raise ValueError("NIGHTOWL_READ_TOKEN must differ from NIGHTOWL_CONTROL_TOKEN")
        return value

    @property
    def auth_required(self) -> bool:
        """Callers must show a token once one is set or the API is reachable from outside."""
        return (
            self.control_token is not None
            or self.read_token is not None
            or not (is_loopback(self.host))
        )

    @property
    def resolved_allowed_hosts(self) -> list[str]:
        """Host names the API answers to (``*``: any). The loopback names always; beyond them
        `allowed_hosts`, or any host once a token guards the API: a page that rebinds its
        own name to this machine carries neither the token nor the session cookie (bound
        to the host name, SameSite=Strict)."""
        if self.allowed_hosts is None and self.auth_required:
            return ["*"]
        own = [normal_host(self.host)] if is_loopback(self.host) else []
        names = [*LOOPBACK_HOSTS, *own, *(self.allowed_hosts or [])]
        return ["*"] if "*" in names else list(dict.fromkeys(names))

    def exposure_problem(self) -> str | None:
        """Why the API must not start: listening beyond loopback with no control token."""
        if is_loopback(self.host) or self.control_token is not None:
            return None
        return (
            f"NIGHTOWL_HOST={self.host} is reachable from the network, so the API needs a "
            "token: set NIGHTOWL_CONTROL_TOKEN to a random secret of at least 16 characters, "
            "e.g. export NIGHTOWL_CONTROL_TOKEN=\"$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')\" (optionally NIGHTOWL_READ_TOKEN for "
            "read-only access), or keep NIGHTOWL_HOST=127.0.0.1"
        )

    @property
    def resolved_timezone(self) -> tzinfo:
        if self.timezone is not None:
            return ZoneInfo(self.timezone)
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local

    @property
    def frames_root(self) -> Path:
        """Frame files live here; database paths are relative to it."""
        return self.data_dir / "frames"

    @property
    def processing_root(self) -> Path:
        """Processing jobs write their results under here, one folder per job."""
        return self.data_dir / "processing"

    @property
    def previews_root(self) -> Path:
        """Frame previews (JPEG), made once per frame on request."""
        return self.data_dir / "previews"

    @property
    def live_root(self) -> Path:
        """Live stacks and the calibrated lights they keep for the morning, per night."""
        return self.data_dir / "live"

    @property
    def autofocus_root(self) -> Path:
        """Autofocus reports as JSON, one file per run."""
        return self.data_dir / "autofocus"

    @property
    def masters_root(self) -> Path:
        """The master library: masters kept across nights and reused when they match."""
        return self.data_dir / "masters"

    @property
    def resolved_processing_roots(self) -> list[Path]:
        """Folders a processing job may read, resolved (symlinks followed)."""
        return [p.resolve() for p in (self.processing_roots or [self.data_dir])]

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'nightowl.db').resolve()}"

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or self.data_dir / "cache"

    @property
    def resolved_solver_cache_dir(self) -> Path:
        """One per-user place, not the working directory's: each database costs a minute to
        build and hundreds of MB. An explicit cache_dir keeps everything built in one place."""
        if self.solver_cache_dir is not None:
            return self.solver_cache_dir
        if self.cache_dir is not None:
            return self.cache_dir
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
        return base / "nightowl" / "solver"
