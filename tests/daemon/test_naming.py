"""NINA-style file name patterns: tokens, night dates, and names that stay inside the root."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import PurePosixPath

import pytest

from daemon.naming import (
    DEFAULT_PATTERN,
    FrameNaming,
    ascii_text,
    night_date,
    render,
    validate_pattern,
)

CEST = timezone(timedelta(hours=2))


def naming(**changes: object) -> FrameNaming:
    values: dict[str, object] = {
        "target_name": "M 31",
        "image_type": "LIGHT",
        "filter_name": "Ha",
        "exposure_s": 120.0,
        "exposure_start_utc": datetime(2026, 11, 22, 1, 30, 5, tzinfo=UTC),
        "sensor_temperature_c": -10.04,
        "set_point_c": -10.0,
        "gain": 100,
        "offset": 30,
        "bin_x": 2,
        "bin_y": 2,
        "frame_number": 7,
        "camera_name": "Cam",
        "readout_mode": 0,
    }
    values.update(changes)
    return FrameNaming(**values)  # type: ignore[arg-type]


def test_night_date_is_the_local_date_twelve_hours_earlier() -> None:
    # 01:30 UTC = 03:30 CEST on the 22nd: still the night of the 21st.
    assert night_date(datetime(2026, 11, 22, 1, 30, tzinfo=UTC), CEST).isoformat() == "2026-11-21"
    # 12:30 CEST on the 22nd starts the night of the 22nd.
    assert night_date(datetime(2026, 11, 22, 10, 30, tzinfo=UTC), CEST).isoformat() == "2026-11-22"


def test_default_pattern_renders_like_nina() -> None:
    path = render(DEFAULT_PATTERN, naming(), CEST)
    assert path == PurePosixPath("M 31/2026-11-21/LIGHT/2026-11-22_03-30-05_Ha_120.00s_0007.fits")


def test_all_tokens_render() -> None:
    pattern = (
        "$$CAMERA$$_$$GAIN$$_$$OFFSET$$_$$BINNING$$_$$SENSORTEMP$$_$$SETTEMP$$_$$READOUTMODE$$"
    )
    assert str(render(pattern, naming(), UTC)) == "Cam_100_30_2x2_-10.04_-10.00_0.fits"


@pytest.mark.parametrize("hostile", ["../../etc", "/etc/passwd", "..", "a/../../b", "..\\..\\x"])
def test_hostile_target_names_stay_one_folder_inside_the_root(hostile: str) -> None:
    path = render("$$TARGETNAME$$/$$FRAMENR$$", naming(target_name=hostile), UTC)
    assert len(path.parts) == 2
    assert ".." not in path.parts
    assert not path.is_absolute()
    assert not path.parts[0].startswith(".")


def test_unknown_token_and_empty_folder_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown token\(s\) \$\$TARGET\$\$"):
        validate_pattern("$$TARGET$$/x")
    with pytest.raises(ValueError, match="empty folder name"):
        validate_pattern("a//b")


@pytest.mark.parametrize(
    ("name", "plain"),
    [
        ("Ω Cen", "Omega Cen"),
        ("α Lyr", "alpha Lyr"),
        ("λ Ori", "lambda Ori"),
        ("M31 – core", "M31 - core"),
        ("NGC 7000 «North America»", 'NGC 7000 "North America"'),
        ("Barnard’s Loop", "Barnard's Loop"),
        ("Hα", "Halpha"),
        ("Caméra Ørsted", "Camera Orsted"),
        ("M31\x07", "M31?"),
        ("🌌 field", "? field"),
    ],
)
def test_names_are_written_in_ascii_as_an_observer_would(name: str, plain: str) -> None:
    assert ascii_text(name) == plain


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("Ω Cen", "Omega Cen"),
        ("M31 – core", "M31 - core"),
        ("NGC 7000 «North America»", "NGC 7000 _North America_"),
        ("../Ω", "_Omega"),
    ],
)
def test_non_ascii_target_names_give_readable_folders(name: str, folder: str) -> None:
    path = render("$$TARGETNAME$$/$$FRAMENR$$", naming(target_name=name), UTC)
    assert path == PurePosixPath(folder, "0007.fits")
