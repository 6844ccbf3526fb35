"""`nightowl target`: names found offline with both coordinate forms, typed coordinates echoed,
JSON output, and a query that matches nothing refused with status 1 (in-process, no daemon)."""

from __future__ import annotations

import json

import pytest

from daemon.__main__ import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["target", *argv])
    out, err = capsys.readouterr()
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, out, err


def test_a_name_prints_its_object_with_both_coordinate_forms_and_size(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "M31")
    assert (code, err) == (0, "")
    first = out.splitlines()[:3]
    assert first[0].startswith("M31 (NGC 224")
    assert first[0].endswith("[galaxy]")
    assert "RA 00h42m44" in first[1]
    assert "= 0.712" in first[1]
    assert "Dec +41d16m" in first[1]
    assert "= +41.26" in first[1]
    assert first[2].startswith("  size ")
    assert "′ × " in first[2]


def test_typed_coordinates_are_echoed_in_both_forms_and_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "00", "42", "44.3", "+41", "16", "09")
    assert code == 0
    assert "[coordinates]" in out
    assert "RA 00h42m44.30s = 0.71231 h" in out
    assert "Dec +41d16m09.0s = +41.26917°" in out

    code, out, _ = run(capsys, "0.7123,", "41.269", "--json")
    assert code == 0
    (match,) = json.loads(out)
    assert match["kind"] == "coordinates"
    assert match["ra_hms"] == "00h42m44.28s"
    assert match["dec_dms"] == "+41d16m08.4s"
    assert match["ra_hours"] == pytest.approx(0.7123, abs=1e-12)

    code, out, _ = run(capsys, "orion", "nebula", "--json", "--limit", "3")
    assert code == 0
    names = [m["name"] for m in json.loads(out)]
    assert names[0] == "M42"
    assert len(names) <= 3


def test_a_query_that_matches_nothing_exits_1_and_says_what_it_looked_for(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "xyzzy")
    assert (code, out) == (1, "")
    assert "nothing matches 'xyzzy'" in err
    assert "NGC 7000" in err
