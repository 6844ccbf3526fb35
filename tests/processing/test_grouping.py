"""Grouping: IMAGETYP spellings, light groups, and the calibration matched to them."""

from __future__ import annotations

from pathlib import Path

import pytest

from processing.grouping import (
    FrameInfo,
    FrameKind,
    GroupingConfig,
    frame_info,
    frame_kind,
    group_frames,
)

SHAPE = (100, 120)


def frame(name: str, kind: FrameKind, **values: object) -> FrameInfo:
    fields: dict[str, object] = {"gain": 100.0, "temperature_c": -10.0} | values
    return FrameInfo(path=Path(name), kind=kind, shape=SHAPE, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("imagetyp", "kind", "master"),
    [
        ("LIGHT", FrameKind.LIGHT, False),
        ("Light Frame", FrameKind.LIGHT, False),
        ("Dark Frame", FrameKind.DARK, False),
        ("Flat Field", FrameKind.FLAT, False),
        ("Flat Frame", FrameKind.FLAT, False),
        ("Bias Frame", FrameKind.BIAS, False),
        ("OFFSET", FrameKind.BIAS, False),
        ("DARKFLAT", FrameKind.DARKFLAT, False),
        ("Flat Dark", FrameKind.DARKFLAT, False),
        ("Master Dark", FrameKind.DARK, True),
        ("MASTER FLAT", FrameKind.FLAT, True),
    ],
)
def test_imagetyp_spellings(imagetyp: str, kind: FrameKind, master: bool) -> None:
    assert frame_kind(imagetyp) == (kind, master)


def test_an_unknown_imagetyp_is_refused_naming_the_file() -> None:
    assert frame_kind("Snapshot") is None
    with pytest.raises(ValueError, match=r"odd\.fits: IMAGETYP 'Snapshot'"):
        frame_info(Path("odd.fits"), SHAPE, {"IMAGETYP": "Snapshot"})
    with pytest.raises(ValueError, match="IMAGETYP None"):
        frame_info(Path("odd.fits"), SHAPE, {})


def test_header_values_are_read_with_their_fallbacks() -> None:
    info = frame_info(
        Path("a.fits"),
        SHAPE,
        {
            "IMAGETYP": "Light Frame",
            "EXPOSURE": 120,
            "FILTER": "Ha ",
            "XBINNING": 2,
            "GAIN": "139",
            "SET-TEMP": -10,
            "OBJECT": "M 42",
            "BAYERPAT": "rggb",
        },
    )
    assert (info.kind, info.exposure_s, info.filter_name, info.binning) == (
        FrameKind.LIGHT,
        120.0,
        "Ha",
        2,
    )
    assert (info.gain, info.temperature_c, info.target) == (139.0, -10.0, "M 42")
    assert info.bayer_pattern is not None
    assert info.bayer_pattern.value == "RGGB"


def test_lights_group_by_target_filter_and_exposure_with_their_calibration() -> None:
    frames = [
        frame("l1", FrameKind.LIGHT, target="M42", filter_name="L", exposure_s=120.0),
        frame("l2", FrameKind.LIGHT, target="M42", filter_name="L", exposure_s=120.2),
        frame("r1", FrameKind.LIGHT, target="M42", filter_name="R", exposure_s=120.0),
        frame("m1", FrameKind.LIGHT, target="M31", filter_name="L", exposure_s=120.0),
        frame("d120", FrameKind.DARK, exposure_s=120.0),
        frame("d120warm", FrameKind.DARK, exposure_s=120.0, temperature_c=0.0),
        frame("d300", FrameKind.DARK, exposure_s=300.0),
        frame("fl", FrameKind.FLAT, filter_name="L", exposure_s=2.0),
        frame("fr", FrameKind.FLAT, filter_name="R", exposure_s=3.0),
        frame("b", FrameKind.BIAS),
        frame("b_other_gain", FrameKind.BIAS, gain=0.0),
        frame("df2", FrameKind.DARKFLAT, exposure_s=2.0),
    ]
    groups = {g.name: g for g in group_frames(frames)}
    assert sorted(groups) == ["M31_L", "M42_L", "M42_R"]
    m42_l = groups["M42_L"]
    assert [f.path.name for f in m42_l.lights] == ["l1", "l2"]
    assert [f.path.name for f in m42_l.darks] == ["d120"]  # not the warm ones, not 300 s
    assert [f.path.name for f in m42_l.flats] == ["fl"]
    assert [f.path.name for f in m42_l.bias] == ["b"]
    assert [f.path.name for f in m42_l.dark_flats] == ["df2"]
    assert not m42_l.dark_scaling
    assert [f.path.name for f in groups["M42_R"].flats] == ["fr"]
    assert groups["M42_R"].dark_flats == ()  # the 2 s dark-flats do not match 3 s flats


def test_without_darks_of_the_exposure_longer_darks_are_scaled() -> None:
    frames = [
        frame("l", FrameKind.LIGHT, exposure_s=60.0),
        frame("d300", FrameKind.DARK, exposure_s=300.0),
        frame("d180", FrameKind.DARK, exposure_s=180.0),
        frame("b", FrameKind.BIAS),
    ]
    (group,) = group_frames(frames)
    assert [f.path.name for f in group.darks] == ["d300"]
    assert group.dark_scaling
    assert any("scaled" in note for note in group.notes)
    # Without a bias the dark current cannot be separated from the offset: no darks.
    (unscaled,) = group_frames(frames[:3])
    assert unscaled.darks == ()
    assert not unscaled.dark_scaling


def test_raw_frames_make_a_fresh_master_and_masters_fill_in_otherwise() -> None:
    library = [
        frame(
            "lib/master_dark_a",
            FrameKind.DARK,
            exposure_s=120.0,
            temperature_c=-9.0,
            is_master=True,
        ),
        frame("lib/master_dark_b", FrameKind.DARK, exposure_s=120.0, is_master=True),
        frame("lib/master_flat", FrameKind.FLAT, filter_name="L", is_master=True),
    ]
    tonight = [
        frame("l", FrameKind.LIGHT, filter_name="L", exposure_s=120.0),
        frame("d", FrameKind.DARK, exposure_s=120.0),
    ]
    (group,) = group_frames(tonight + library)
    assert [f.path.name for f in group.darks] == ["d"]
    assert [f.path.name for f in group.flats] == ["master_flat"]
    (reused,) = group_frames([tonight[0], *library])
    assert [f.path.name for f in reused.darks] == ["master_dark_b"]  # the closest in temperature


def test_flats_without_bias_or_dark_flats_are_left_out_with_a_note() -> None:
    frames = [
        frame("l", FrameKind.LIGHT, filter_name="L"),
        frame("f", FrameKind.FLAT, filter_name="L"),
    ]
    (group,) = group_frames(frames)
    assert group.flats == ()
    assert any("flats without bias" in note for note in group.notes)


def test_the_temperature_tolerance_is_a_setting() -> None:
    frames = [
        frame("l", FrameKind.LIGHT, exposure_s=60.0),
        frame("d", FrameKind.DARK, exposure_s=60.0, temperature_c=-6.0),
    ]
    assert group_frames(frames)[0].darks == ()
    loose = group_frames(frames, GroupingConfig(temperature_tolerance_c=5.0))
    assert [f.path.name for f in loose[0].darks] == ["d"]
