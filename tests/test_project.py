"""The project's shape: its packages, its deployment file, its command line."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

import daemon
from daemon.__main__ import build_parser

ROOT = Path(__file__).resolve().parent.parent


def test_daemon_package_is_this_repository_not_python_daemon() -> None:
    """PyPI's python-daemon installs an import package named `daemon` too."""
    assert Path(daemon.__file__).resolve().parent == ROOT / "daemon"


def test_every_compose_service_runs_a_command_of_this_project() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    subcommands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert compose["services"], "no services"
    for name, service in compose["services"].items():
        build = service.get("build", {})
        context = build.get("context", ".") if isinstance(build, dict) else build
        dockerfile = (
            build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        )
        assert (ROOT / context / dockerfile).is_file(), f"{name}: no {dockerfile}"
        command = service["command"]
        assert command[0] in scripts, f"{name}: {command[0]} is not a console script"
        assert command[1] in subcommands, f"{name}: `{command[1]}` is not a nightowl command"
        build_parser().parse_args(command[1:])  # the arguments parse


def test_dockerfile_runs_what_make_run_runs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    makefile = (ROOT / "Makefile").read_text()
    assert "RUN make install" in dockerfile
    assert 'CMD ["nightowl", "serve"]' in dockerfile
    assert "\t$(BIN)/nightowl serve" in makefile
    # Everything the image runs from the project is copied in.
    copied = {line.split()[1] for line in dockerfile if line.startswith("COPY ")}
    assert {"daemon", "drivers", "sequences", "processing"} <= copied
