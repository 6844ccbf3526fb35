"""NINA Advanced Sequencer import: the real files of other people, synthetic documents with a
known mapping, and an imported target template run on the simulators."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sequences.astro import Horizon
from sequences.document import TargetContainer
from sequences.nina.importer import NinaImportRefused, import_nina
from sequences.nina.newtonsoft import NinaFormatError
from sequences.state import RunStatus
from tests.sequences.conftest import Harness
from tests.sequences.nina_documents import (
    NINA_FILES,
    REAL,
    container,
    coordinates,
    dso,
    node,
    smart_exposure,
)


@pytest.mark.skipif(not NINA_FILES, reason=f"the real NINA files are not here ({REAL})")
@pytest.mark.parametrize("path", NINA_FILES, ids=lambda p: p.name)
def test_every_real_nina_file_imports_with_a_report(path: Path) -> None:
    imported = import_nina(path.read_bytes())
    report = imported.report
    assert report.entries, "no report"
    assert imported.document.targets, "nothing imported"
    types = {e.nina_type for e in report.entries}
    raw = path.read_text(encoding="utf-8")
    # Every plugin of the file is reported, by path, as not mapped.
    for plugin in (
        "WhenPlugin.When.TemplateByReference",
        "RemoteCopy.NINAPlugin",
        "DaleGhent.NINA",
    ):
        if plugin in raw:
            assert any(
                e.status == "not_mapped" and e.nina_type.startswith(plugin) and e.nina_path
                for e in report.entries
            ), plugin
    assert all(
        t.startswith(("NINA.", "WhenPlugin", "RemoteCopy", "DaleGhent", "PixInsight"))
        for t in types
    )


@pytest.mark.skipif(not REAL.is_dir(), reason=f"the real NINA horizon files are not here ({REAL})")
def test_the_real_horizon_files_read_as_nina_reads_them() -> None:
    folder = REAL / "horizon_files"
    # NINA's own test counts, less the 0/360 points it adds (ours wraps around north).
    expected = {
        "commas.hrz": 16,
        "full360.hrz": 360,
        "incomplete.hrz": 3,
        "mw4.hpts": 18,
        "partial.hrz": 16,
        "tabs.hrz": 16,
        "mixed.hrz": 16,
        "sf.hrz": 360,
    }
    for name, count in expected.items():
        (path,) = folder.glob(f"*/{name}")
        horizon = Horizon.from_text(path.read_text(encoding="utf-8"))
        assert len(horizon.azimuths_deg) == count, name
    full = Horizon.from_text((folder / "isbeorn_nina_tests" / "full360.hrz").read_text())
    assert full.altitude_at(93.0) == pytest.approx(12.1)  # "93 9.2" then "93 12.1": the later
    with pytest.raises(ValueError, match="at least one"):
        Horizon.from_text((folder / "isbeorn_nina_tests" / "empty.hrz").read_text())


def test_a_target_keeps_exactly_its_coordinates_and_position_angle() -> None:
    center = node("NINA.Sequencer.SequenceItem.Platesolving.CenterAndRotate", Inherited=True)
    document = dso(
        "M42", coordinates((5, 35, 17.3), (5, 23, 28.0), True), center, position_angle=30.0
    )
    imported = import_nina(json.dumps(document))
    (target,) = imported.document.targets
    assert isinstance(target, TargetContainer)
    assert target.target_name == "M42"
    assert target.coordinates.ra_hours == pytest.approx(5 + 35 / 60 + 17.3 / 3600, abs=1e-12)
    assert target.coordinates.dec_deg == pytest.approx(-(5 + 23 / 60 + 28 / 3600), abs=1e-12)
    assert target.rotation_deg == pytest.approx(30.0)
    assert [i.kind for i in target.items] == ["center"]
    # Files before NINA 3: the sign on the degrees, the rotation clockwise (PA = 360 - it).
    old = dso("M42", coordinates((5, 35, 17.3), (-5, 23, 28.0), False), center)
    old["Target"].pop("PositionAngle")
    old["Target"]["Rotation"] = 30.0
    (target,) = import_nina(json.dumps(old)).document.targets
    assert isinstance(target, TargetContainer)
    assert target.coordinates.dec_deg == pytest.approx(-(5 + 23 / 60 + 28 / 3600), abs=1e-12)
    assert target.rotation_deg == pytest.approx(330.0)


def test_a_smart_exposure_becomes_its_count_of_lights_with_its_dither() -> None:
    document = dso(
        "M31", coordinates((0, 42, 44.3), (41, 16, 9.0), False), smart_exposure(20, 300.0, "Ha", 3)
    )
    (target,) = import_nina(json.dumps(document)).document.targets
    dumped = target.model_dump(mode="json")
    (smart,) = dumped["items"]
    (lights,) = smart["items"]
    assert (lights["kind"], lights["count"], lights["exposure_s"], lights["filter_name"]) == (
        "take_exposures",
        20,
        300.0,
        "Ha",
    )
    (dither,) = smart["triggers"]
    assert (dither["kind"], dither["after_exposures"]) == ("dither_after_exposures", 3)
    assert smart["conditions"] == []


def test_references_are_followed_and_a_dangling_one_is_named() -> None:
    filter_info = node("NINA.Core.Model.Equipment.FilterInfo", _name="OIII")
    first = node("NINA.Sequencer.SequenceItem.FilterWheel.SwitchFilter", Filter=filter_info)
    second = node(
        "NINA.Sequencer.SequenceItem.FilterWheel.SwitchFilter", Filter={"$ref": filter_info["$id"]}
    )
    document = container(
        "NINA.Sequencer.Container.SequentialContainer", first, second, Name="Filters"
    )
    (block,) = import_nina(json.dumps(document)).document.targets
    assert [i.filter_name for i in block.items] == ["OIII", "OIII"]  # type: ignore[union-attr]
    second["Filter"] = {"$ref": "999"}
    with pytest.raises(NinaFormatError, match=r"Items\[1\]\.Filter: \$ref '999'"):
        import_nina(json.dumps(document))


def test_a_plugin_and_an_unread_field_are_reported_with_their_paths_and_strict_refuses() -> None:
    plugin = {
        "$id": "900",
        "$type": "WhenPlugin.When.TemplateByReference, WhenPlugin",
        "TemplateName": "X",
    }
    guiding = node(
        "NINA.Sequencer.SequenceItem.Guider.StartGuiding", ForceCalibration=False, Wobble=7
    )
    inner = container("NINA.Sequencer.Container.SequentialContainer", guiding, plugin)
    document = container(
        "NINA.Sequencer.Container.SequentialContainer",
        node("NINA.Sequencer.SequenceItem.Telescope.UnparkScope"),
        inner,
    )
    report = import_nina(json.dumps(document)).report
    missing = {(e.nina_path, e.nina_type) for e in report.not_mapped}
    assert missing == {
        ("Items[1].Items[1]", "WhenPlugin.When.TemplateByReference"),
        ("Items[1].Items[0].Wobble", "NINA.Sequencer.SequenceItem.Guider.StartGuiding"),
    }
    with pytest.raises(NinaImportRefused, match=r"Items\[1\]\.Items\[1\] \(WhenPlugin"):
        import_nina(json.dumps(document), strict=True)


def test_a_whole_sequence_fills_our_start_targets_and_end() -> None:
    root = container(
        "NINA.Sequencer.Container.SequenceRootContainer",
        container(
            "NINA.Sequencer.Container.StartAreaContainer",
            node("NINA.Sequencer.SequenceItem.Camera.CoolCamera", Temperature=-10.0, Duration=2.0),
        ),
        container(
            "NINA.Sequencer.Container.TargetAreaContainer",
            dso("NGC 7000", coordinates((20, 59, 17.1), (44, 31, 44.0), False)),
        ),
        container(
            "NINA.Sequencer.Container.EndAreaContainer",
            node("NINA.Sequencer.SequenceItem.Telescope.ParkScope"),
        ),
        Name="My night",
    )
    document = import_nina(json.dumps(root)).document
    assert document.name == "My night"
    assert (
        document.start.model_dump(mode="json")["items"][0] | {"duration_s": 120.0}
        == document.start.model_dump(mode="json")["items"][0]
    )
    assert [t.target_name for t in document.targets] == ["NGC 7000"]  # type: ignore[union-attr]
    assert [i.kind for i in document.end.items] == ["park"]


def test_a_file_that_is_not_ninas_is_refused_with_the_reason() -> None:
    with pytest.raises(NinaFormatError, match="not JSON"):
        import_nina(b"{nope")
    with pytest.raises(NinaFormatError, match=r"no \"\$type\""):
        import_nina(json.dumps({"name": "ours"}))


@pytest.fixture
def night_start() -> datetime:
    return datetime(2026, 11, 22, 20, 7, 30, tzinfo=UTC)  # M31 high at the simulator's site


async def test_an_imported_seed_like_target_runs_on_the_simulators(
    calibrated_harness: Harness,
) -> None:
    items = [
        node("NINA.Sequencer.SequenceItem.Platesolving.Center", Inherited=True),
        node("NINA.Sequencer.SequenceItem.Autofocus.RunAutofocus"),
        node("NINA.Sequencer.SequenceItem.Guider.StartGuiding", ForceCalibration=False),
        smart_exposure(4, 0.5, "L", 2),
        node("NINA.Sequencer.SequenceItem.Guider.StopGuiding"),
    ]
    sequence = container(
        "NINA.Sequencer.Container.SequenceRootContainer",
        container(
            "NINA.Sequencer.Container.StartAreaContainer",
            node("NINA.Sequencer.SequenceItem.Telescope.UnparkScope"),
        ),
        container(
            "NINA.Sequencer.Container.TargetAreaContainer",
            dso("M31", coordinates((0, 42, 44.3), (41, 16, 9.0), False), *items),
        ),
        container(
            "NINA.Sequencer.Container.EndAreaContainer",
            node("NINA.Sequencer.SequenceItem.Telescope.ParkScope"),
        ),
        Name="Seed-like night",
    )
    imported = import_nina(json.dumps(sequence))
    assert not imported.report.not_mapped
    data = imported.document.model_dump(mode="json")
    target = data["targets"][0]
    kinds = [i["kind"] for i in target["items"]]
    assert kinds == ["center", "autofocus", "start_guiding", "sequential", "stop_guiding"]
    # The seed night's test runs autofocus on the simulators (~25 s); not repeated here.
    del target["items"][1]
    # Settle times and the plate-solve exposure are NINA profile settings, not in the file:
    # short ones keep the test short.
    target["items"][0]["exposure_s"] = 1.0
    target["items"][1]["settle_time_s"] = 1.0
    target["items"][2]["triggers"][0]["settle_time_s"] = 1.0

    harness = calibrated_harness
    run_id, status = await harness.run(data, timeout_s=300)

    assert status is RunStatus.COMPLETED, harness.events(run_id)[-5:]
    lights = [f for f in harness.frames(run_id) if f.frame_type == "LIGHT" and f.filter_name == "L"]
    assert len(lights) == 4
    assert all(f.exposure_s == 0.5 for f in lights)
    events = harness.events(run_id)
    assert not [e for e in events if "failed" in e], events
    order = [
        next(i for i, e in enumerate(events) if e.startswith(prefix))
        for prefix in (
            "unpark done",
            "center done",
            "start_guiding done",
            "trigger dither_after_exposures",
            "stop_guiding done",
            "park done",
        )
    ]
    assert order == sorted(order), events
    assert sum(e == "trigger dither_after_exposures" for e in events) == 1  # after the 2nd
