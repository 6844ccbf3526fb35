"""run_command through the real daemon: off unless NIGHTOWL_SCRIPTS_DIR is set, and then only
the programs of that folder, whatever `ignore_issues` says (a page that reached the API, e.g.
by DNS rebinding, must not start `id`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from daemon.settings import Settings
from tests.daemon.conftest import running_daemon, wait_for

QUIET = {"NIGHTOWL_CONNECT_ON_START": "false"}


def command(*argv: str) -> dict[str, Any]:
    return {"name": "command", "start": {"items": [{"kind": "run_command", "argv": list(argv)}]}}


def refused_to_start(url: str, document: dict[str, Any]) -> list[dict[str, Any]]:
    """POST the document with ignore_issues; assert a 422 and that no run was made."""
    reply = httpx.post(f"{url}/api/runs", json={"document": document, "ignore_issues": True})
    assert reply.status_code == 422, reply.text
    assert httpx.get(f"{url}/api/runs").json() == []
    detail: list[dict[str, Any]] = reply.json()["detail"]
    return detail


def test_without_a_scripts_folder_no_command_runs(
    tmp_path: Path, catalog_cache: Path, simulator_url: str
) -> None:
    with running_daemon(
        tmp_path / "data", catalog_cache, NIGHTOWL_SIMULATOR_URL=simulator_url, **QUIET
    ) as daemon:
        (problem,) = refused_to_start(daemon.url, command("/usr/bin/id"))
        assert problem["loc"] == ["body", "document", "start", "items[0]", "argv"]
        assert problem["msg"] == "run_command is off"
        assert problem["fix"] == "set NIGHTOWL_SCRIPTS_DIR to a folder of allowed scripts"
        template = httpx.post(
            f"{daemon.url}/api/templates", json={"document": command("backup.sh")}
        ).json()
        issues = httpx.get(f"{daemon.url}/api/templates/{template['id']}/issues").json()
        assert [i["message"] for i in issues] == ["run_command is off"]
        refused = httpx.post(
            f"{daemon.url}/api/runs", json={"template_id": template["id"], "ignore_issues": True}
        )
        assert refused.status_code == 422


def test_only_programs_of_the_scripts_folder_run(
    tmp_path: Path, catalog_cache: Path, simulator_url: str
) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    hello = scripts / "hello.sh"
    hello.write_text("#!/bin/sh\necho hello $1\n", encoding="utf-8")
    hello.chmod(0o755)
    (scripts / "id").symlink_to("/usr/bin/id")
    env = {"NIGHTOWL_SIMULATOR_URL": simulator_url, "NIGHTOWL_SCRIPTS_DIR": str(scripts)}
    with running_daemon(tmp_path / "data", catalog_cache, **env, **QUIET) as daemon:
        for argv0 in ("/usr/bin/id", "id", "../scripts/id"):
            (problem,) = refused_to_start(daemon.url, command(argv0))
            assert problem["msg"] == (
                f"{argv0!r} is not an executable file in the scripts folder {scripts}"
            )
        document = command("hello.sh", "M31")
        started = httpx.post(f"{daemon.url}/api/runs", json={"document": document})
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        wait_for(f"{daemon.url}/api/runs/{run_id}", lambda r: r["status"] == "completed", 60)
        events = httpx.get(f"{daemon.url}/api/runs/{run_id}/events").json()
    program = str(hello.resolve())
    by_message = {e["message"]: e for e in events}
    node = {"node": "run_command"}  # the node's name for people, beside its path
    assert by_message[f"starting {program} M31"]["data"] == {"argv": [program, "M31"], **node}
    assert by_message["hello.sh: hello M31"]["path"] == "start.items[0]"
    assert by_message["hello.sh exited with 0"]["data"] == {
        "argv": [program, "M31"],
        "exit_status": 0,
        **node,
    }


def test_nightowl_run_refuses_run_command_even_with_ignore_issues(
    tmp_path: Path, catalog_cache: Path, simulator_url: str
) -> None:
    document = tmp_path / "id.json"
    document.write_text(json.dumps(command("/usr/bin/id")), encoding="utf-8")
    environment = {
        **os.environ,
        "NIGHTOWL_DATA_DIR": str(tmp_path / "data"),
        "NIGHTOWL_CACHE_DIR": str(catalog_cache),
        "NIGHTOWL_SIMULATOR_URL": simulator_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "run", str(document), "--ignore-issues"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=environment,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "run_command is off" in done.stdout
    assert "uid=" not in done.stdout


def test_a_scripts_folder_that_is_not_a_folder_names_its_setting(tmp_path: Path) -> None:
    script = tmp_path / "backup.sh"
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    for value in (tmp_path / "absent", script):
        with pytest.raises(ValidationError, match=r"NIGHTOWL_SCRIPTS_DIR=.* is not a folder"):
            Settings(scripts_dir=value)


def test_nightowl_run_prints_each_event_once_by_its_node_s_name(
    tmp_path: Path, catalog_cache: Path, simulator_url: str
) -> None:
    document = tmp_path / "note.json"
    note = {"kind": "annotation", "name": "greeting", "text": "hello from the start area"}
    document.write_text(json.dumps({"name": "note", "start": {"items": [note]}}), encoding="utf-8")
    environment = {
        **os.environ,
        "NIGHTOWL_DATA_DIR": str(tmp_path / "data"),
        "NIGHTOWL_CACHE_DIR": str(catalog_cache),
        "NIGHTOWL_SIMULATOR_URL": simulator_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "run", str(document)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=environment,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    both = done.stdout + done.stderr
    assert both.count("hello from the start area") == 1, both
    (line,) = [x for x in done.stdout.splitlines() if "hello from the start area" in x]
    assert line.endswith("[annotation 'greeting']")  # the node's name, not start.items[0]
    assert " UTC " in line


def test_nightowl_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.startswith("nightowl ")
    assert done.stdout.split()[1][0].isdigit()
