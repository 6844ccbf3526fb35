"""`POST /api/templates/import` on the real daemon under uvicorn (no devices): a real NINA
file and a synthetic one become templates with their report, a file imported twice takes a
free name, and what cannot be imported is a 422 naming the problem."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon.conftest import RunningDaemon, bare_daemon
from tests.sequences.nina_documents import REAL, container, coordinates, dso, node, smart_exposure

SIMPLE_RGB = (
    REAL / "dcramer_astro" / "templates" / "2. Targets" / "Simple Target (RGB).template.json"
)


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[RunningDaemon]:
    yield from bare_daemon(tmp_path_factory, catalog_cache, "nina-daemon")


def post(daemon: RunningDaemon, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{daemon.url}/api/templates/import", json=body, timeout=30)


def template_names(daemon: RunningDaemon) -> list[str]:
    return sorted(t["name"] for t in httpx.get(f"{daemon.url}/api/templates").json())


@pytest.mark.skipif(not SIMPLE_RGB.is_file(), reason=f"the real NINA file is not here ({REAL})")
def test_a_real_nina_file_imports_with_its_report_and_twice_under_a_free_name(
    daemon: RunningDaemon,
) -> None:
    nina = json.loads(SIMPLE_RGB.read_text(encoding="utf-8"))
    first = post(daemon, {"nina": nina})
    assert first.status_code == 201, first.text
    made = first.json()
    assert made["template"]["name"] == "Simple Target (RGB)"
    report = made["report"]
    assert (report["mapped"], report["approximated"], report["not_mapped"]) == (30, 4, 2)
    missing = {
        (e["nina_path"], e["nina_type"]) for e in report["entries"] if e["status"] == "not_mapped"
    }
    assert missing == {
        ("Items[1]", "DaleGhent.NINA.AstroPhysicsTools.CreateDecArcModel.CreateDecArcModel"),
        ("Items[3]", "WhenPlugin.When.TemplateByReference"),
    }
    saved = httpx.get(f"{daemon.url}/api/templates/{made['template']['id']}").json()
    assert saved["document"] == made["template"]["document"]
    assert saved["document"]["targets"]

    again = post(daemon, {"nina": nina})
    assert again.status_code == 201, again.text
    assert again.json()["template"]["name"] == "Simple Target (RGB) (2)"
    assert again.json()["template"]["document"]["targets"] == saved["document"]["targets"]


def test_a_synthetic_target_keeps_its_values_and_a_given_name(daemon: RunningDaemon) -> None:
    document = dso(
        "M31", coordinates((0, 42, 44.3), (41, 16, 9.0), False), smart_exposure(20, 300.0, "Ha", 3)
    )
    reply = post(daemon, {"nina": document, "name": "M31 from NINA"})
    assert reply.status_code == 201, reply.text
    made = reply.json()
    assert made["template"]["name"] == "M31 from NINA"
    assert made["report"]["not_mapped"] == 0
    (target,) = made["template"]["document"]["targets"]
    assert target["target_name"] == "M31"
    assert target["coordinates"]["ra_hours"] == pytest.approx(0 + 42 / 60 + 44.3 / 3600, abs=1e-9)
    assert target["coordinates"]["dec_deg"] == pytest.approx(41 + 16 / 60 + 9 / 3600, abs=1e-9)
    (lights,) = target["items"][0]["items"]
    assert (lights["count"], lights["exposure_s"], lights["filter_name"]) == (20, 300.0, "Ha")

    again = post(daemon, {"nina": document, "name": "M31 from NINA"})
    assert again.status_code == 201, again.text
    assert again.json()["template"]["name"] == "M31 from NINA (2)"
    longest = "M" * 200  # a name's limit: the number replaces its end
    names = [post(daemon, {"nina": document, "name": longest}).json() for _ in range(2)]
    assert [n["template"]["name"] for n in names] == [longest, "M" * 196 + " (2)"]


def test_what_cannot_be_imported_is_a_422_naming_the_problem(daemon: RunningDaemon) -> None:
    before = template_names(daemon)

    ours = post(daemon, {"nina": {"name": "not NINA's"}})
    assert ours.status_code == 422
    (problem,) = ours.json()["detail"]
    assert problem["loc"][:2] == ["body", "nina"]
    assert '"$type"' in problem["msg"]
    assert "NINA's Advanced Sequencer" in problem["fix"]

    filter_info = node("NINA.Core.Model.Equipment.FilterInfo", _name="OIII")
    dangling = container(
        "NINA.Sequencer.Container.SequentialContainer",
        node("NINA.Sequencer.SequenceItem.FilterWheel.SwitchFilter", Filter=filter_info),
        node("NINA.Sequencer.SequenceItem.FilterWheel.SwitchFilter", Filter={"$ref": "999"}),
    )
    broken = post(daemon, {"nina": dangling})
    assert broken.status_code == 422
    (problem,) = broken.json()["detail"]
    assert "Items[1].Filter: $ref '999'" in problem["msg"]

    plugin = {"$id": "900", "$type": "WhenPlugin.When.TemplateByReference, WhenPlugin"}
    guiding = node(
        "NINA.Sequencer.SequenceItem.Guider.StartGuiding", ForceCalibration=False, Wobble=7
    )
    with_plugin = container(
        "NINA.Sequencer.Container.SequentialContainer",
        node("NINA.Sequencer.SequenceItem.Telescope.UnparkScope"),
        container("NINA.Sequencer.Container.SequentialContainer", guiding, plugin),
    )
    refused = post(daemon, {"nina": with_plugin, "strict": True})
    assert refused.status_code == 422
    problems = {p["path"]: p for p in refused.json()["detail"]}
    assert set(problems) == {"Items[1].Items[1]", "Items[1].Items[0].Wobble"}
    assert problems["Items[1].Items[1]"]["msg"].startswith("WhenPlugin.When.TemplateByReference")
    assert "without strict" in problems["Items[1].Items[1]"]["fix"]
    # Without strict the same file imports, the plugin reported.
    lenient = post(daemon, {"nina": with_plugin, "name": "lenient"})
    assert lenient.status_code == 201, lenient.text
    assert lenient.json()["report"]["not_mapped"] == 2

    assert template_names(daemon) == sorted([*before, "lenient"])
