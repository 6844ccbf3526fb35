"""docker-compose.yml, the Dockerfile and .env.example agree with the code, and the stack they
describe runs.

With no Docker engine at hand, the stack is proven on loopback: each service of the compose
file is started as a real process with its own command and environment (the Dockerfile's ENV,
then the service's `environment`, interpolated from .env.example as `docker compose` would
from a copied .env), in dependency order, each waited on with its own health check. What a
container network gives is rewritten, and nothing else: service host names become 127.0.0.1,
every port a service listens on (`expose`, `ports`) a free loopback port, 0.0.0.0 becomes
127.0.0.1, the data volume's mount point (/app/var) a temporary folder shared by the daemon,
the simulators and both workers (as the volume is), the image's /app/.venv/bin this
virtualenv's bin; the volume starts with the star catalog the suite has built already, as a
second `up` finds it. One substitution: the postgres service runs its image's entrypoint, which
is not a command of ours; in its place `tests.pg.PostgresServer` runs Debian's PostgreSQL,
and the entrypoint's work on an empty volume is done by hand from the same POSTGRES_*
variables (the user as a superuser with its password, its database).

Through the daemon's API the stack then takes a short night on the simulators (lights and
darks), processes it on the Dask workers, and the test checks the job ran on the scheduler,
its rows are in PostgreSQL and its integrated FITS is on the shared volume.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import psycopg
import pytest
import yaml
from astropy.io import fits
from psycopg import sql

from daemon.__main__ import build_parser
from daemon.settings import Settings
from daemon.simulator.rig import free_port
from daemon.states import JobState
from processing.cluster import scheduler_command, worker_command
from tests.daemon.test_api import all_connected
from tests.pg import PostgresServer, binaries

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {"simulators", "postgres", "scheduler", "worker-1", "worker-2", "daemon"}
DATA_MOUNT = "/app/var"
"""Where the image keeps its data (NIGHTOWL_DATA_DIR) and every frame-handling service mounts
the data volume."""
START_TIMEOUT_S = 90.0
"""Per service, from its start to a passing health check (a loaded 2-core machine)."""
STOP_TIMEOUT_S = 20.0
BINNED = {"exposure_s": 0.5, "binning": 2}
"""The night's frames: short and binned 2 x 2 (1024 x 768 px), to keep the test quick."""

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a .env file (comments and blank lines skipped)."""
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: not KEY=value: {line!r}"
        values[key.strip()] = value.strip()
    return values


def interpolate(value: Any, env: Mapping[str, str], used: set[str] | None = None) -> Any:
    """Compose's interpolation of ${VAR}, ${VAR:-default}, ${VAR:?error} and $$ in every
    string of `value`; a missing required variable fails with compose's message."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, used) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, used) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if name is None:
            return "$"
        if used is not None:
            used.add(name)
        given = env.get(name)
        if operator in (":-", "-"):
            return given if given else argument
        if operator in (":?", "?") and not given:
            pytest.fail(f"compose refuses to start: {name}: {argument}")
        return given or ""

    return _VARIABLE.sub(substitute, value)


def load_compose(env: Mapping[str, str], used: set[str] | None = None) -> dict[str, Any]:
    with (ROOT / "docker-compose.yml").open(encoding="utf-8") as f:
        document: dict[str, Any] = yaml.safe_load(f)
    interpolated: dict[str, Any] = interpolate(document, env, used)
    return interpolated


@dataclass
class Dockerfile:
    base: str
    env: dict[str, str]
    exposed: set[int]
    runs: list[str]
    copied: list[str]


def read_dockerfile() -> Dockerfile:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    logical = re.sub(r"\\\n\s*", " ", text)
    lines = [ln.strip() for ln in logical.splitlines() if ln.strip() and not ln.startswith("#")]
    parts = [line.split(None, 1) for line in lines]
    (base,) = [rest for word, rest in parts if word == "FROM"]
    env = {}
    for word, rest in parts:
        if word == "ENV":
            for pair in rest.split():
                key, _, value = pair.partition("=")
                env[key] = value
    exposed = {int(p) for word, rest in parts if word == "EXPOSE" for p in rest.split()}
    return Dockerfile(
        base=base,
        env=env,
        exposed=exposed,
        runs=[rest for word, rest in parts if word == "RUN"],
        copied=[rest.split()[0] for word, rest in parts if word == "COPY"],
    )


EXAMPLE_ENV = read_env_file(ROOT / ".env.example")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(EXAMPLE_ENV)


def container_ports(service: dict[str, Any]) -> list[int]:
    """The ports a service listens on: `expose`, and the container side of `ports`."""
    exposed = [int(p) for p in service.get("expose", [])]
    published = [int(str(p).rsplit(":", 1)[1]) for p in service.get("ports", [])]
    return exposed + published


# --- the static check: the files agree with the code and with each other ---


def test_the_services_run_the_commands_the_code_defines(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    assert services["simulators"]["command"] == [
        "nightowl",
        "sim",
        "--host",
        "0.0.0.0",
        "--port",
        "11111",
    ]
    assert services["daemon"]["command"] == ["nightowl", "serve"]
    assert services["scheduler"]["command"] == scheduler_command(8786, host="0.0.0.0")
    address = services["daemon"]["environment"]["NIGHTOWL_DASK_SCHEDULER"]
    assert address == "tcp://scheduler:8786"
    for name in ("worker-1", "worker-2"):
        assert services[name]["command"] == worker_command(address, name=name)
    assert services["postgres"]["image"].startswith("postgres:")
    assert "command" not in services["postgres"]  # the image's own entrypoint
    for name in SERVICES - {"postgres"}:
        assert services[name]["build"] == ".", name
    for name in ("simulators", "daemon"):
        build_parser().parse_args(services[name]["command"][1:])  # nightowl's own arguments


def test_the_daemon_is_pointed_at_the_other_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = services["daemon"]["environment"]
    simulator = urlsplit(env["NIGHTOWL_SIMULATOR_URL"])
    assert (simulator.hostname, simulator.port) == ("simulators", 11111)
    assert container_ports(services["simulators"]) == [11111]
    database = urlsplit(env["NIGHTOWL_DATABASE_URL"])
    pg = services["postgres"]["environment"]
    assert database.scheme == "postgresql+psycopg"
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert (database.username, database.password) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"])
    assert database.path == f"/{pg['POSTGRES_DB']}"
    assert container_ports(services["scheduler"]) == [8786]
    assert container_ports(services["daemon"]) == [int(env["NIGHTOWL_PORT"])]
    # Every NIGHTOWL_ name is a setting of the daemon, and together they validate.
    fields = {f"NIGHTOWL_{name.upper()}" for name in Settings.model_fields}
    assert set(env) - fields == set()
    settings = Settings.model_validate(
        {k.removeprefix("NIGHTOWL_").lower(): v for k, v in env.items()}
    )
    assert settings.exposure_problem() is None  # beyond loopback with a token


def test_every_service_is_health_checked_and_started_after_what_it_needs(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name

    def needs(name: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in services[name].get("depends_on", {}).items()}

    assert needs("daemon") == dict.fromkeys(SERVICES - {"daemon"}, "service_healthy")
    assert needs("worker-1") == needs("worker-2") == {"scheduler": "service_healthy"}


def test_the_frame_handlers_share_the_data_volume_at_the_image_s_data_dir(
    compose: dict[str, Any],
) -> None:
    image = read_dockerfile()
    assert image.env["NIGHTOWL_DATA_DIR"] == DATA_MOUNT
    volume = f"nightowl-data:{DATA_MOUNT}"
    for name in ("daemon", "simulators", "worker-1", "worker-2"):
        assert volume in compose["services"][name]["volumes"], name
    assert set(compose["volumes"]) == {"nightowl-data", "nightowl-postgres"}


def test_the_dockerfile_installs_the_project_and_serves_what_compose_uses(
    compose: dict[str, Any],
) -> None:
    image = read_dockerfile()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    # The base image's Python satisfies requires-python (">=3.X").
    version = re.fullmatch(r"python:(\d+)\.(\d+)(-slim)?", image.base)
    assert version is not None, image.base
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", project["project"]["requires-python"])
    assert minimum is not None
    assert tuple(map(int, version.groups()[:2])) >= tuple(map(int, minimum.groups()))
    # Every package of the project is copied in, then installed as `make install` does.
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= set(image.copied)
    assert {"pyproject.toml", *packages} <= set(image.copied)
    assert "make install" in image.runs
    assert "-e '.[dev]'" in (ROOT / "Makefile").read_text(encoding="utf-8")
    # The commands compose runs: `nightowl` is the project's script, `dask` comes with
    # distributed; both land in the virtualenv that PATH starts with.
    assert project["project"]["scripts"]["nightowl"] == "daemon.__main__:main"
    assert any(d.startswith("distributed") for d in project["project"]["dependencies"])
    assert image.env["PATH"].split(":")[0] == "/app/.venv/bin"
    for name in ("nightowl", "dask"):
        assert (Path(sys.executable).parent / name).exists(), name
    listened = {
        port
        for name, service in compose["services"].items()
        if name != "postgres"
        for port in container_ports(service)
    }
    assert listened <= image.exposed
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".env", ".venv", "var", ".git"} <= set(ignored)


def test_env_example_defines_every_variable_compose_uses_and_no_other() -> None:
    used: set[str] = set()
    load_compose(EXAMPLE_ENV, used)
    assert used == set(EXAMPLE_ENV)
    # Each variable is documented: its paragraph of the file has a comment.
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    for paragraph in text.split("\n\n"):
        lines = paragraph.strip().splitlines()
        if any(not line.startswith("#") for line in lines):
            assert lines[0].startswith("#"), paragraph


# --- the loopback stack ---


@dataclass
class Service:
    name: str
    spec: dict[str, Any]
    ports: dict[int, int]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]


class LoopbackStack:
    """The compose file's services as processes on loopback (see the module's docstring)."""

    def __init__(self, compose: dict[str, Any], root: Path, catalog_cache: Path) -> None:
        self.root = root
        self.volume = root / "volume"
        self.workdir = root / "app"
        self.logs = root / "logs"
        for folder in (self.volume, self.workdir, self.logs):
            folder.mkdir(parents=True)
        # The star catalog the suite has built already: the volume as a second run finds it.
        cache = self.volume / "cache"
        cache.mkdir()
        for entry in catalog_cache.iterdir():
            (cache / entry.name).symlink_to(entry)
        self.image = read_dockerfile()
        self.postgres: PostgresServer | None = None
        self.services: dict[str, Service] = {}
        taken: set[int] = set()
        for name, spec in compose["services"].items():
            ports = {}
            for port in container_ports(spec):
                outer = free_port()
                while outer in taken:
                    outer = free_port()
                taken.add(outer)
                ports[port] = outer
            self.services[name] = Service(name, spec, ports)

    def rewrite(self, service: Service, text: str) -> str:
        """A string of `service` as it reads on loopback."""
        for other in self.services.values():
            for inner, outer in other.ports.items():
                text = re.sub(rf"\b{re.escape(other.name)}:{inner}\b", f"127.0.0.1:{outer}", text)
        for inner, outer in service.ports.items():
            text = re.sub(
                rf"(127\.0\.0\.1|localhost|0\.0\.0\.0)?:{inner}\b", f"127.0.0.1:{outer}", text
            )
            text = re.sub(rf"(?<![\w.:/-]){inner}(?![\w.:/-])", str(outer), text)
        text = text.replace("0.0.0.0", "127.0.0.1")
        text = text.replace("/app/.venv/bin", str(Path(sys.executable).parent))
        return text.replace(DATA_MOUNT, str(self.volume))

    def environment(self, service: Service) -> dict[str, str]:
        """The image's ENV, then the service's environment; what a container has besides."""
        env = {
            "HOME": os.environ.get("HOME", "/root"),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
        }
        image_env = self.image.env if "build" in service.spec else {}
        for key, value in {**image_env, **service.spec.get("environment", {})}.items():
            value = str(value).replace("$PATH", env["PATH"])
            env[key] = self.rewrite(service, value)
        return env

    def healthy(self, service: Service) -> bool:
        check = service.spec["healthcheck"]
        kind, *argv = check["test"]
        if kind == "CMD-SHELL":
            argv = ["sh", "-c", *argv]
        argv = [self.rewrite(service, arg) for arg in argv]
        timeout_s = float(str(check.get("timeout", "30s")).removesuffix("s"))
        try:
            result = subprocess.run(
                argv,
                env=service.env,
                cwd=self.workdir,
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    def start(self, service: Service) -> None:
        service.env = self.environment(service)
        if service.name == "postgres":
            self.start_postgres(service)
            return
        command = [self.rewrite(service, str(arg)) for arg in service.spec["command"]]
        command[0] = shutil.which(command[0], path=service.env["PATH"]) or command[0]
        service.log_path = self.logs / f"{service.name}.log"
        with service.log_path.open("wb") as log_file:
            service.process = subprocess.Popen(
                command,
                env=service.env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_postgres(self, service: Service) -> None:
        """tests.pg's server in place of the image's entrypoint; then what the entrypoint
        does on an empty volume, from the service's POSTGRES_* variables."""
        bin_dir = binaries()
        assert bin_dir is not None, "PostgreSQL is not installed: make database"
        self.postgres = PostgresServer(bin_dir)
        self.postgres.start()
        service.ports = {5432: self.postgres.port}
        service.log_path = self.postgres.root / "server.log"
        env = service.env
        user, password, database = (
            env[k] for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")
        )
        admin = f"host=127.0.0.1 port={self.postgres.port} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(
                sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(password)
                )
            )
            connection.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(user)
                )
            )

    def up(self) -> None:
        """Start every service once what it depends on is healthy (as `docker compose up`
        does with condition: service_healthy); return when all are healthy."""
        started: dict[str, float] = {}
        healthy: set[str] = set()
        while len(healthy) < len(self.services):
            for name, service in self.services.items():
                needs = set(service.spec.get("depends_on", {}))
                if name not in started and needs <= healthy:
                    self.start(service)
                    started[name] = time.monotonic()
            waiting = [self.services[name] for name in started if name not in healthy]
            for service in waiting:
                process = service.process
                if process is not None and process.poll() is not None:
                    pytest.fail(f"{service.name} exited ({process.returncode}):\n{service.log()}")
            # Side by side, as compose runs them: a worker's check takes seconds.
            with ThreadPoolExecutor(len(waiting)) as pool:
                passed = list(pool.map(self.healthy, waiting))
            for service, ok in zip(waiting, passed, strict=True):
                if ok:
                    healthy.add(service.name)
                elif time.monotonic() - started[service.name] > START_TIMEOUT_S:
                    pytest.fail(
                        f"{service.name} not healthy after {START_TIMEOUT_S} s:\n{service.log()}"
                    )
            time.sleep(0.3)

    def down(self) -> None:
        """SIGTERM every process group, dependents first; SIGKILL what outlives the timeout."""
        running = [s.process for s in reversed(self.services.values()) if s.process is not None]
        for process in running:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s outlived SIGTERM by %s s: killed", process.args, STOP_TIMEOUT_S)
                _signal_group(process, signal.SIGKILL)
                process.wait()
        if self.postgres is not None:
            try:
                self.postgres.stop()
            except RuntimeError as e:  # it never started: the test reports why
                log.warning("%s", e)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


@pytest.fixture(scope="module")
def stack(
    compose: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[LoopbackStack]:
    running = LoopbackStack(compose, tmp_path_factory.mktemp("compose"), catalog_cache)
    try:
        running.up()
        yield running
    finally:
        running.down()


def test_the_stack_processes_a_night_on_the_cluster_into_postgresql(stack: LoopbackStack) -> None:
    daemon = stack.services["daemon"]
    url = f"http://127.0.0.1:{daemon.ports[8000]}"
    token = daemon.env["NIGHTOWL_CONTROL_TOKEN"]
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    assert httpx.get(f"{url}/api/equipment", timeout=10).status_code == 401  # a token guards it

    deadline = time.monotonic() + 60
    while not all_connected(api.get("/api/equipment").json()):
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.3)

    lights = api.post("/api/capture", json={**BINNED, "frame_type": "LIGHT", "count": 3})
    assert lights.status_code == 201, lights.text
    darks = api.post("/api/capture", json={**BINNED, "frame_type": "DARK", "count": 3})
    assert darks.status_code == 201, darks.text
    (session_id,) = {f["session_id"] for f in [*lights.json(), *darks.json()]}

    reply = api.post("/api/processing/jobs", json={"session_id": session_id, "linear_only": True})
    assert reply.status_code == 201, reply.text
    job_id = reply.json()["id"]
    deadline = time.monotonic() + 120
    while (job := api.get(f"/api/processing/jobs/{job_id}").json())["state"] not in (
        "done",
        "failed",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["state"] == "done", (job["error"], daemon.log())

    # It ran on the stack's scheduler, with both workers registered.
    scheduler = stack.services["scheduler"]
    address = f"tcp://127.0.0.1:{scheduler.ports[8786]}"
    assert job["outputs"]["executor"] == f"dask {address} (2 workers)"

    # The night's rows are in PostgreSQL, as the daemon's URL names it.
    database = urlsplit(daemon.env["NIGHTOWL_DATABASE_URL"])
    with psycopg.connect(
        host=database.hostname,
        port=database.port,
        user=database.username,
        password=database.password,
        dbname=database.path.lstrip("/"),
    ) as connection:
        frames = connection.execute(
            "SELECT frame_type, path, sha256 FROM frame WHERE session_id = %s", (session_id,)
        ).fetchall()
        job_row = connection.execute(
            "SELECT state, session_id FROM processing_job WHERE id = %s", (job_id,)
        ).fetchone()
    assert sorted(kind for kind, _, _ in frames) == ["DARK"] * 3 + ["LIGHT"] * 3
    assert job_row == (JobState.DONE.name, session_id)

    # The integrated FITS is on the shared volume, made of exactly those frames: the three
    # darks into the master dark, the three lights into the stack, each named with the
    # checksum its row has.
    (group,) = job["outputs"]["groups"]
    integrated = Path(group["outputs"]["fits"])
    assert integrated.is_relative_to(stack.volume)
    with fits.open(integrated) as hdul:
        header = hdul[0].header
        shape = np.asarray(hdul[0].data).shape
    # The outlier rules may refuse one light of three (the simulator now and then renders one
    # softer than the others); a refused light names its measured cause.
    rejected = {Path(r["path"]).name for r in group["rejected"]}
    assert len(rejected) <= 1, group["rejected"]
    assert all(r["reason"] for r in group["rejected"])
    assert header["NCOMBINE"] == 3 - len(rejected), (group["duplicates"], group["warnings"])
    history = [str(card) for card in header["HISTORY"]]
    inputs = {
        (line.split()[1], following.split()[1])
        for line, following in itertools.pairwise(history)
        if line.startswith("input ") and following.startswith("sha256 ")
    }
    assert inputs == {
        (Path(path).name, sha256) for _, path, sha256 in frames if Path(path).name not in rejected
    }
    top, bottom, left, right = group["crop_yx"]
    assert shape == (bottom - top, right - left)
    assert 0 <= top < bottom <= 1536 // 2  # the simulator's sensor, binned 2 x 2
    assert 0 <= left < right <= 2048 // 2
