"""run_command starts only programs of the scripts folder, at validation and again when it runs;
each start, exit status and timeout is a run event."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db.models import Event
from sequences.context import ValidationEnv
from sequences.document import parse_document
from sequences.instructions.utility import RunCommand
from sequences.model import Status
from sequences.state import RunStatus
from tests.sequences.conftest import Harness


def env(scripts_dir: Path | None) -> ValidationEnv:
    return ValidationEnv(
        roles=frozenset(),
        filter_names=None,
        exposure_max_s=None,
        site=None,
        horizon=None,
        night_start=None,
        night_end=None,
        scripts_dir=scripts_dir,
    )


def problems(argv0: str, scripts_dir: Path | None) -> list[str]:
    issues = RunCommand(argv=[argv0]).check(env(scripts_dir), "start.items[0]")
    assert all(i.forbidden and i.path == "start.items[0].argv" for i in issues)
    return [f"{i.message}: {i.fix}" for i in issues]


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    folder = tmp_path / "scripts"
    folder.mkdir()
    ok = folder / "ok.sh"
    ok.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    ok.chmod(0o755)
    (folder / "notes.txt").write_text("not a program\n", encoding="utf-8")
    (folder / "id").symlink_to("/usr/bin/id")
    outside = tmp_path / "outside.sh"
    outside.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    outside.chmod(0o755)
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to(outside)
    return folder


def test_without_a_scripts_folder_run_command_is_off() -> None:
    assert problems("/usr/bin/id", None) == [
        "run_command is off: set NIGHTOWL_SCRIPTS_DIR to a folder of allowed scripts"
    ]


def test_only_executable_files_inside_the_folder_are_allowed(scripts: Path) -> None:
    assert problems("ok.sh", scripts) == []
    assert problems(str(scripts / "ok.sh"), scripts) == []
    refused = [
        "/usr/bin/id",  # outside
        "id",  # a link inside the folder to a program outside
        "sub/up",  # the same through a subfolder
        "../outside.sh",
        str(scripts.parent / "outside.sh"),
        "notes.txt",  # not executable
        "sub",  # a folder
        "absent.sh",
        "",
    ]
    for argv0 in refused:
        (problem,) = problems(argv0, scripts)
        # One answer whatever the reason, so a refusal tells nothing of other paths.
        assert problem == (
            f"{argv0!r} is not an executable file in the scripts folder {scripts}: "
            "put the program, or a script that starts it, in NIGHTOWL_SCRIPTS_DIR"
        )


def run_command_events(harness: Harness, run_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    with Session(harness.engine) as db:
        rows = db.scalars(
            select(Event)
            .where(Event.run_id == run_id, Event.node_path == "start.items[0]")
            .order_by(Event.id)
        )
        events = list(rows)
    # Each names its node for people (beside the path); the rest of `data` is the payload.
    assert all(e.data.get("node") == "run_command" for e in events)
    return [(e.level, e.message, {k: v for k, v in e.data.items() if k != "node"}) for e in events]


def one_command(argv: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": "command",
        "start": {"items": [{"kind": "run_command", "argv": argv, **extra}]},
    }


async def test_a_script_runs_and_its_start_and_exit_status_are_events(harness: Harness) -> None:
    name = harness.script("greet", 'echo "clear skies, $1"; exit 0')
    run_id, status = await harness.run(one_command([name, "Vega"]))
    assert status is RunStatus.COMPLETED
    program = str((harness.scripts_dir / name).resolve())
    events = run_command_events(harness, run_id)
    assert ("info", f"starting {program} Vega", {"argv": [program, "Vega"]}) in events
    assert ("info", "greet: clear skies, Vega", {}) in events
    assert ("info", "greet exited with 0", {"argv": [program, "Vega"], "exit_status": 0}) in events


async def test_a_script_does_not_see_the_api_tokens(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIGHTOWL_CONTROL_TOKEN", "a-secret-of-the-daemon-0123")
    monkeypatch.setenv("NIGHTOWL_SITE_NAME", "backyard")
    name = harness.script("env", 'echo "token=${NIGHTOWL_CONTROL_TOKEN:-none} $NIGHTOWL_SITE_NAME"')
    run_id, status = await harness.run(one_command([name]))
    assert status is RunStatus.COMPLETED
    assert ("info", "env: token=none backyard", {}) in run_command_events(harness, run_id)


async def test_a_run_started_without_validation_still_refuses_a_program_outside(
    harness: Harness, tmp_path: Path
) -> None:
    """As after ignore_issues, or a resumed run whose scripts folder changed: the program is
    checked again when the instruction runs, and never started."""
    marker = tmp_path / "ran"
    outside = tmp_path / "outside.sh"
    outside.write_text(f"#!/bin/sh\ntouch {marker}\n", encoding="utf-8")
    outside.chmod(0o755)
    (harness.scripts_dir / "link").symlink_to(outside)
    for argv0 in (str(outside), "link"):
        run_id, status = await harness.run(one_command([argv0], on_error="continue"))
        assert status is RunStatus.COMPLETED
        node = harness.state(run_id).nodes["start.items[0]"]
        assert node.status is Status.FAILED
        assert node.error is not None
        assert "is not an executable file in the scripts folder" in node.error
    assert not marker.exists()


async def test_a_command_past_its_timeout_is_killed_and_told(harness: Harness) -> None:
    name = harness.script("hang", "sleep 60")
    started = time.monotonic()
    run_id, status = await harness.run(one_command([name], timeout_s=1, on_error="continue"))
    assert time.monotonic() - started < 30  # killed at 1 s; margin for a busy machine
    assert status is RunStatus.COMPLETED
    node = harness.state(run_id).nodes["start.items[0]"]
    assert node.status is Status.FAILED
    events = run_command_events(harness, run_id)
    program = str((harness.scripts_dir / name).resolve())
    assert (
        "error",
        "hang still running after 1 s: killed",
        {"argv": [program], "timeout_s": 1.0},
    ) in events
    assert not any("exited with" in message for _, message, _ in events)


def test_a_document_with_run_command_still_parses_without_a_folder() -> None:
    """Templates keep their run_command nodes; the daemon's setting decides when they run."""
    document = parse_document(one_command(["backup.sh"]))
    assert document.check(env(None))[0].forbidden
