"""`nightowl import-nina` in-process: the report of a real NINA file, as text and as JSON,
`--strict` refusing, `--save` into a database of its own (twice: a free name), and NINA
horizon files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from daemon.__main__ import main
from tests.sequences.nina_documents import REAL, container, node

SIMPLE_RGB = REAL / "dcramer_astro/templates/2. Targets/Simple Target (RGB).template.json"
HORIZONS = REAL / "horizon_files/isbeorn_nina_tests"
needs_real = pytest.mark.skipif(
    not SIMPLE_RGB.is_file(), reason=f"the real NINA files are not here ({REAL})"
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as caught:
        main(["import-nina", *argv])
    out, err = capsys.readouterr()
    return int(caught.value.code or 0), out, err


@pytest.fixture
def with_plugin(tmp_path: Path) -> Path:
    """A NINA template with a plugin instruction inside a block (Items[1].Items[0])."""
    plugin = {"$id": "900", "$type": "WhenPlugin.When.TemplateByReference, WhenPlugin"}
    document = container(
        "NINA.Sequencer.Container.SequentialContainer",
        node("NINA.Sequencer.SequenceItem.Telescope.UnparkScope"),
        container("NINA.Sequencer.Container.SequentialContainer", plugin),
        Name="Open up",
    )
    path = tmp_path / "Open up.template.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@needs_real
def test_a_real_file_prints_its_report_and_its_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(SIMPLE_RGB))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "Simple Target (RGB).template.json -> 'Simple Target (RGB)'"
    assert lines[1] == "30 mapped, 4 approximated, 2 not mapped"
    assert "  NOT MAPPED: Items[3] WhenPlugin.When.TemplateByReference: " in out

    code, out, _ = run(capsys, str(SIMPLE_RGB), "--json")
    assert code == 0
    printed = json.loads(out)
    report = printed["report"]
    assert (report["mapped"], report["approximated"], report["not_mapped"]) == (30, 4, 2)
    assert printed["document"]["name"] == "Simple Target (RGB)"
    assert printed["document"]["targets"]
    assert printed["template_id"] is None


def test_strict_refuses_a_file_with_unmapped_nodes_naming_them(
    with_plugin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, str(with_plugin), "--strict")
    assert (code, out) == (1, "")
    assert err.startswith(f"nightowl import-nina: {with_plugin}: cannot import:\n")
    assert "  Items[1].Items[0]: WhenPlugin.When.TemplateByReference: " in err
    assert "import without strict" in err


def test_save_stores_the_template_and_a_second_import_under_a_free_name(
    with_plugin: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("NIGHTOWL_DATA_DIR", str(data_dir))
    monkeypatch.delenv("NIGHTOWL_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    code, out, err = run(capsys, str(with_plugin), "--save")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "saved as template 1, 'Open up'"
    code, out, _ = run(capsys, str(with_plugin), "--save", "--json")
    assert code == 0
    printed = json.loads(out)
    assert (printed["template_id"], printed["template_name"]) == (2, "Open up (2)")
    with sqlite3.connect(data_dir / "nightowl.db") as db:
        rows = db.execute("SELECT name, document FROM sequence_template ORDER BY id").fetchall()
    assert [name for name, _ in rows] == ["Open up", "Open up (2)"]
    saved = json.loads(rows[0][1])
    assert [i["kind"] for i in saved["targets"][0]["items"]] == ["unpark", "sequential"]


@pytest.mark.skipif(not HORIZONS.is_dir(), reason=f"the real horizon files are not here ({REAL})")
def test_a_horizon_prints_its_points_and_an_empty_one_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, str(HORIZONS / "tabs.hrz"))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("tabs.hrz: a NINA .hrz horizon of 16 points (azimuth, altitude in deg):")
    assert lines[1:3] == ["     0.00  14.00", "     5.00  69.00"]  # "0\t\t14", "5\t\t\t\t69"
    assert "NIGHTOWL_HORIZON_FILE=" in out

    code, out, err = run(capsys, str(HORIZONS / "empty.hrz"))
    assert (code, out) == (1, "")
    assert err.startswith(f"nightowl import-nina: {HORIZONS / 'empty.hrz'}: not a horizon file")
    assert "at least one" in err
