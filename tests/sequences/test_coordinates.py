"""Coordinates typed by people: every accepted form of RA and Dec, the refusals, both echoes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sequences.coordinates import (
    CoordinateError,
    format_dec,
    format_ra,
    looks_like_position,
    parse_dec_deg,
    parse_position,
    parse_ra_hours,
)
from sequences.document import parse_document
from sequences.plan import PlanTarget

# M31's centre: 00h42m44.3s +41d16m09s.
RA_H = 0 + 42 / 60 + 44.3 / 3600
DEC_DEG = 41 + 16 / 60 + 9 / 3600
TOLERANCE = 1e-9  # the forms are exact decimal conversions: only float rounding differs


@pytest.mark.parametrize(
    "text", ["00 42 44.3", "00:42:44.3", "0h42m44.3s", "00h 42m 44.3s", f"{RA_H:.12f}"]
)
def test_right_ascension_reads_in_every_form(text: str) -> None:
    assert parse_ra_hours(text) == pytest.approx(RA_H, abs=TOLERANCE)


def test_right_ascension_in_degrees_is_converted_to_hours() -> None:
    assert parse_ra_hours("10.5d") == pytest.approx(0.7, abs=TOLERANCE)


@pytest.mark.parametrize(
    "text", ["+41 16 09", "+41:16:09", "+41d16m09s", "41°16′09″", "+41°16'09\"", f"{DEC_DEG:.12f}"]
)
def test_declination_reads_in_every_form(text: str) -> None:
    assert parse_dec_deg(text) == pytest.approx(DEC_DEG, abs=TOLERANCE)


def test_a_southern_declination_under_one_degree_keeps_its_sign() -> None:
    assert parse_dec_deg("-00 30 00") == pytest.approx(-0.5, abs=TOLERANCE)
    assert parse_dec_deg("−00:30:00") == pytest.approx(-0.5, abs=TOLERANCE)


@pytest.mark.parametrize(
    "text",
    [
        "00 42 44.3 +41 16 09",
        "0h42m44.3s +41d16m09s",
        "00:42:44.3, 41:16:09",
        "00:42:44.3 41:16:09",
    ],
)
def test_a_pair_splits_at_the_comma_the_sign_or_the_middle(text: str) -> None:
    position = parse_position(text)
    assert position.ra_hours == pytest.approx(RA_H, abs=TOLERANCE)
    assert position.dec_deg == pytest.approx(DEC_DEG, abs=TOLERANCE)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("M31", "as a right ascension"),
        ("24h00m00s", "outside 0h to 24h"),
        ("-1", "outside 0h to 24h"),
        ("", "as a right ascension"),
    ],
)
def test_a_bad_right_ascension_names_the_forms_expected(value: str, words: str) -> None:
    with pytest.raises(CoordinateError, match=words) as refused:
        parse_ra_hours(value)
    assert "00 42 44.3" in str(refused.value)
    assert "0h42m44.3s" in str(refused.value)


@pytest.mark.parametrize("value", ["+91 00 00", "north", "95.5"])
def test_a_bad_declination_names_the_forms_expected(value: str) -> None:
    with pytest.raises(CoordinateError, match="declination") as refused:
        parse_dec_deg(value)
    assert "+41d16m09s" in str(refused.value)


def test_names_are_not_coordinates() -> None:
    assert not looks_like_position("M31")
    assert not looks_like_position("NGC 224")
    assert not looks_like_position("Andromeda Galaxy")
    assert looks_like_position("00 42 44.3 +41 16 09")


def test_the_echo_rounds_into_range_and_reads_back() -> None:
    assert format_ra(RA_H) == "00h42m44.30s"
    assert format_dec(DEC_DEG) == "+41d16m09.0s"
    assert format_dec(-0.5) == "-00d30m00.0s"
    assert format_ra(23.9999999999) == "00h00m00.00s"
    assert format_dec(-89.99999999) == "-90d00m00.0s"
    for hours in (0.0, 5.5912, 12.0001, 23.99):
        assert parse_ra_hours(format_ra(hours)) == pytest.approx(hours, abs=0.01 / 3600)
    for degrees in (-89.5, -0.001, 0.0, 41.2692, 89.99):
        assert parse_dec_deg(format_dec(degrees)) == pytest.approx(degrees, abs=0.1 / 3600)


def test_documents_and_plans_take_sexagesimal_text_and_keep_numbers() -> None:
    target = {
        "kind": "target",
        "target_name": "M31",
        "coordinates": {"ra_hours": "00 42 44.3", "dec_deg": "+41d16m09s"},
    }
    document = parse_document({"name": "text coordinates", "targets": [target]})
    stored = document.model_dump(mode="json")["targets"][0]["coordinates"]
    assert stored["ra_hours"] == pytest.approx(RA_H, abs=TOLERANCE)
    assert stored["dec_deg"] == pytest.approx(DEC_DEG, abs=TOLERANCE)
    numbers = parse_document(
        {"name": "n", "targets": [target | {"coordinates": {"ra_hours": 1.5, "dec_deg": -2}}]}
    )
    assert numbers.model_dump()["targets"][0]["coordinates"] == {"ra_hours": 1.5, "dec_deg": -2.0}
    plan_target = PlanTarget.model_validate(
        {
            "name": "M31",
            "coordinates": {"ra_hours": "0:42:44.3", "dec_deg": "41 16 09"},
            "goals": [{"exposure_s": 60, "count": 3}],
        }
    )
    assert plan_target.coordinates.dec_deg == pytest.approx(DEC_DEG, abs=TOLERANCE)


def test_a_document_with_unreadable_coordinates_names_the_field_and_the_forms() -> None:
    target = {
        "kind": "target",
        "target_name": "M31",
        "coordinates": {"ra_hours": "00 42 44.3", "dec_deg": "forty-one"},
    }
    with pytest.raises(ValidationError) as refused:
        parse_document({"name": "bad", "targets": [target]})
    (error,) = refused.value.errors()
    assert error["loc"][-1] == "dec_deg"
    assert "+41 16 09" in error["msg"]
