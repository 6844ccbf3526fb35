"""Equipment profile files: valid ones load, bad ones name the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.profile import ProfileError, load_profile


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_profile_loads_roles_and_defaults(tmp_path: Path) -> None:
    profile = load_profile(
        write(
            tmp_path,
            "name: roof\n"
            "camera: {url: 'http://10.0.0.5:11111/', device_number: 1}\n"
            "mount: {url: 'http://10.0.0.6:32323'}\n",
        )
    )
    assert profile.name == "roof"
    assert profile.camera is not None
    assert profile.mount is not None
    assert (profile.camera.url, profile.camera.device_number) == ("http://10.0.0.5:11111", 1)
    assert profile.camera.readout_timeout_s == 30.0
    assert profile.mount.device_number == 0
    assert profile.focuser is None


def test_url_without_port_names_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "name: roof\ncamera: {url: 'http://10.0.0.5'}\n")
    with pytest.raises(ProfileError, match=r"camera\.url: .*http://host:port"):
        load_profile(path)


def test_unknown_role_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"telescope_heater: Extra inputs are not permitted"):
        load_profile(write(tmp_path, "name: roof\ntelescope_heater: {url: 'http://h:1'}\n"))


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read equipment profile"):
        load_profile(tmp_path / "absent.yaml")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(write(tmp_path, "name: [unclosed\n"))


def test_acceptance_rules_are_tuned_per_profile(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, "name: roof\nacceptance: {max_hfr_factor: 1.3}\n"))
    assert profile.acceptance.max_hfr_factor == 1.3
    assert profile.acceptance.min_star_fraction == 0.5  # the default stays
    with pytest.raises(ProfileError, match=r"acceptance\.max_hfr_factr"):
        load_profile(write(tmp_path, "name: roof\nacceptance: {max_hfr_factr: 1.3}\n"))
