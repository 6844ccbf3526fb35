"""Sequence documents: parsing with node paths, the shipped examples, validation before a run."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import pytest
from pydantic import ValidationError

from drivers.base import RaDec
from drivers.equipment import Equipment
from sequences.astro import altitude_deg, next_dusk
from sequences.clock import SimulatedClock
from sequences.context import ValidationEnv
from sequences.document import error_issues, parse_document
from sequences.timeline import predict
from sequences.validation import sky_issues, validation_env

EVENING = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


def target(ra_hours: float, dec_deg: float, *items: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "target",
        "target_name": f"T{ra_hours}/{dec_deg}",
        "coordinates": {"ra_hours": ra_hours, "dec_deg": dec_deg},
        "items": list(items),
    }


def test_errors_name_the_node_path_and_the_fix() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_document(
            {
                "name": "bad",
                "targets": [
                    target(1.0, 10.0, {"kind": "take_exposures", "count": 0, "exposure_s": 5}),
                    {"kind": "sequential", "items": [{"kind": "warp_drive"}]},
                ],
                "end": {"items": [{"kind": "park", "speed": 3}]},
            }
        )
    issues = {i.path: i for i in error_issues(caught.value)}
    assert set(issues) == {
        "targets[0].items[0].count",
        "targets[1].items[0]",
        "end.items[0].speed",
    }
    assert "greater than or equal to 1" in issues["targets[0].items[0].count"].message
    assert "take_exposures" in issues["targets[1].items[0]"].fix
    assert "remove" in issues["end.items[0].speed"].fix


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_number_that_is_not_finite_is_refused_wherever_it_sits(value: float) -> None:
    """No limit catches NaN (every comparison is false), so the models refuse it outright."""
    with pytest.raises(ValidationError) as caught:
        parse_document(
            {
                "name": "not finite",
                "start": {"items": [{"kind": "take_darks", "count": 2, "exposures_s": [value]}]},
                "targets": [
                    target(1.0, 10.0, {"kind": "wait_for_sun_altitude", "altitude_deg": value})
                ],
            }
        )
    paths = {i.path for i in error_issues(caught.value)}
    assert paths == {"start.items[0].exposures_s[0]", "targets[0].items[0].altitude_deg"}


def test_a_target_name_is_any_text_but_control_characters() -> None:
    """It ends in FITS headers: refused when the document is saved, not after an exposure."""
    kept = parse_document({"name": "n", "targets": [{**target(1.0, 10.0), "target_name": "Ω Cen"}]})
    assert kept.targets[0].target_name == "Ω Cen"  # type: ignore[union-attr]
    with pytest.raises(ValidationError) as caught:
        parse_document(
            {"name": "n", "targets": [{**target(1.0, 10.0), "target_name": "M31\ncore"}]}
        )
    assert [i.path for i in error_issues(caught.value)] == ["targets[0].target_name"]


@pytest.mark.parametrize("name", ["seed_night.json", "two_targets.json", "calibration.json"])
async def test_the_shipped_examples_parse_and_fit_the_simulated_observatory(
    name: str, equipment: Equipment
) -> None:
    document = parse_document(files("sequences").joinpath("examples", name).read_text())
    env = await validation_env(equipment, SimulatedClock(EVENING))
    assert document.check(env) == []
    assert sky_issues(document, env, EVENING) == []
    assert document.estimate_s(env) > 0
    # No lights in the morning twilight: every light is inside a container that ends when
    # the sun rises above -12 deg, as a NINA user's "loop while sun altitude below" does.
    containers = {path: node for path, node in document.walk() if hasattr(node, "conditions")}
    for path, node in document.walk():
        if getattr(node, "kind", None) == "take_exposures" and node.frame_type == "LIGHT":
            enclosing = [c for p, c in containers.items() if path.startswith(p + ".")]
            kinds = {
                (c.kind, c.altitude_deg)
                for e in enclosing
                for c in e.conditions
                if c.kind == "while_sun_below"
            }
            assert kinds == {("while_sun_below", -12.0)}, path


async def test_validation_finds_what_would_fail_tonight(equipment: Equipment) -> None:
    env: ValidationEnv = await validation_env(equipment, SimulatedClock(EVENING))
    assert env.site is not None
    assert env.night_start is not None
    assert env.filter_names
    document = parse_document(
        {
            "name": "problems",
            "targets": [
                target(
                    12.0,
                    -80.0,
                    {"kind": "take_exposures", "count": 1, "exposure_s": 7200, "filter_name": "Q"},
                ),
                {
                    **target(0.7, 41.3),
                    "triggers": [{"kind": "dither_after_exposures"}],
                },
            ],
        }
    )
    paths = {i.path for i in document.check(env)}
    assert paths == {
        "targets[0].coordinates",  # never rises at 47 N
        "targets[0].items[0].exposure_s",  # the camera allows 3600 s
        "targets[0].items[0].filter_name",
    }
    without_guider = replace(env, roles=env.roles - {"guide_camera"})
    assert {i.path for i in document.check(without_guider)} == paths | {"targets[1].triggers[0]"}


async def test_the_timeline_predicts_waits_from_the_sky_and_durations_from_estimates(
    equipment: Equipment,
) -> None:
    afternoon = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)  # nautical dusk is at 16:58
    env = await validation_env(equipment, SimulatedClock(afternoon))
    assert env.site is not None
    m42 = RaDec(5.588139, -5.391111)  # rises at about 19:20 UTC at 47 N in late November
    document = parse_document(
        {
            "name": "timeline",
            "start": {"items": [{"kind": "wait_for_sun_altitude", "altitude_deg": -12.0}]},
            "targets": [
                target(
                    m42.ra_hours,
                    m42.dec_deg,
                    {"kind": "wait_for_altitude", "above": {"altitude_deg": 20.0}},
                    {"kind": "take_exposures", "count": 10, "exposure_s": 60.0},
                )
            ],
        }
    )
    entries = {e.path: e for e in predict(document, env, afternoon)}
    dusk = entries["start.items[0]"].end
    assert dusk == next_dusk(env.site, afternoon, -12.0)
    up = entries["targets[0].items[0]"].end
    assert abs(altitude_deg(m42, env.site, up) - 20.0) < 0.05
    assert up > dusk
    lights = entries["targets[0].items[1]"]
    assert lights.start == up
    assert (lights.end - lights.start).total_seconds() == 10 * 61.0
    assert entries["targets[0]"].end == lights.end
