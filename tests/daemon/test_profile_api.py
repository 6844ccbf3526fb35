"""The profile API on the real daemon: the profile read, refused and saved as YAML (atomic,
the old file kept), one device connected, the custom horizon uploaded and read back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from daemon.simulator.rig import simulator_profile
from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path, simulator_url: str
) -> Iterator[RunningDaemon]:
    data_dir = tmp_path_factory.mktemp("profile-daemon")
    camera = simulator_profile(simulator_url).camera
    assert camera is not None
    profile = data_dir / "pier.yaml"
    profile.write_text(
        "# the pier's camera\nname: pier\ncamera: "
        f"{{url: '{camera.url}', device_number: {camera.device_number}}}\n"
    )
    with running_daemon(
        data_dir,
        catalog_cache,
        NIGHTOWL_EQUIPMENT_PROFILE=str(profile),
        NIGHTOWL_CONNECT_ON_START="false",
    ) as running:
        yield running


def test_a_profile_is_refused_by_field_then_saved_with_a_backup(
    daemon: RunningDaemon, simulator_url: str
) -> None:
    url = f"{daemon.url}/api/profile"
    read = httpx.get(url).json()
    path = Path(read["path"])
    assert path == daemon.data_dir / "pier.yaml"
    assert (read["embedded"], read["in_use"], read["file_exists"]) == (False, True, True)
    assert read["profile"]["name"] == "pier"
    assert read["profile"]["camera"]["url"] == simulator_url
    schema = httpx.get(f"{url}/schema").json()
    assert "focuser" in schema["properties"]

    edited: dict[str, Any] = {**read["profile"], "focuser": {"url": "ftp://nowhere"}}
    refused = httpx.put(url, json=edited)
    assert refused.status_code == 422
    (problem,) = refused.json()["detail"]
    assert problem["loc"] == ["body", "focuser", "url"]
    assert "http://host:port" in problem["msg"]
    assert path.read_text().startswith("# the pier's camera")  # untouched

    focuser = simulator_profile(simulator_url).focuser
    assert focuser is not None
    assert focuser.device_number == 0
    edited["focuser"] = {"url": focuser.url, "device_number": focuser.device_number}
    edited["focuser"]["move_timeout_s"] = 75
    saved = httpx.put(url, json=edited)
    assert saved.status_code == 200, saved.text
    answer = saved.json()
    assert answer["restart_needed"] is True
    assert "Restart the daemon" in answer["message"]
    assert Path(answer["backup"]).read_text().startswith("# the pier's camera")
    written = yaml.safe_load(path.read_text())
    # Defaults are left out of the file (device number 0, the native guider).
    assert written["focuser"] == {"url": focuser.url, "move_timeout_s": 75}
    assert "guider" not in written
    assert httpx.get(url).json()["profile"]["focuser"]["move_timeout_s"] == 75


def test_a_device_of_the_profile_is_connected_and_a_missing_one_named(
    daemon: RunningDaemon,
) -> None:
    assert httpx.get(f"{daemon.url}/api/equipment").json()["devices"][0]["connected"] is False
    reply = httpx.post(f"{daemon.url}/api/profile/test/camera", timeout=30)
    assert reply.status_code == 200, reply.text
    tested = reply.json()
    assert tested["ok"] is True, tested["error"]
    assert tested["name"]
    assert tested["daemons_own"] is True
    wait_for(
        f"{daemon.url}/api/equipment",
        lambda e: e["devices"][0]["connected"] is True,  # type: ignore[index]
    )
    missing = httpx.post(f"{daemon.url}/api/profile/test/rotator")
    assert missing.status_code == 404
    assert "rotator" in missing.json()["detail"]
    assert httpx.post(f"{daemon.url}/api/profile/test/toaster").status_code == 422


def test_a_horizon_is_checked_stored_and_read_back(daemon: RunningDaemon) -> None:
    url = f"{daemon.url}/api/profile/horizon"
    assert httpx.get(url).json()["points"] == []
    refused = httpx.post(url, json={"text": "0 10\n90 high\n"})
    assert refused.status_code == 422
    (problem,) = refused.json()["detail"]
    assert problem["loc"] == ["body", "text"]
    assert "line 2" in problem["msg"]
    stored = httpx.post(url, json={"text": "# trees\n0 10\n90 25\n180 5\n270 15\n"})
    assert stored.status_code == 200, stored.text
    answer = stored.json()
    assert answer["points"] == [[0, 10], [90, 25], [180, 5], [270, 15]]
    assert answer["in_use"] is False
    assert "next start" in answer["message"]
    assert Path(answer["path"]) == daemon.data_dir / "horizon.hrz"
    assert httpx.get(url).json()["points"] == answer["points"]
