"""Sequence documents: parsing with node paths, the shipped examples, validation before a run."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import pytest
from pydantic import ValidationError

from drivers.equipment import Equipment
from sequences.clock import SimulatedClock
from sequences.context import ValidationEnv
from sequences.document import error_issues, parse_document
from sequences.validation import validation_env

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


@pytest.mark.parametrize("name", ["seed_night.json", "two_targets.json", "calibration.json"])
async def test_the_shipped_examples_parse_and_fit_the_simulated_observatory(
    name: str, equipment: Equipment
) -> None:
    document = parse_document(files("sequences").joinpath("examples", name).read_text())
    env = await validation_env(equipment, SimulatedClock(EVENING))
    assert document.check(env) == []
    assert document.estimate_s(env) > 0


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
