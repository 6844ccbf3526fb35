"""Templates aimed at targets: the one copy rule dropped targets and night plans share."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sequences.document import TargetContainer, parse_document
from sequences.errors import DocumentError
from sequences.instantiate import TargetSpec, aimed_target, drop_targets
from sequences.instructions.mount import Coordinates

TEMPLATE = parse_document(
    {
        "name": "LRGB",
        "start": {"items": [{"kind": "unpark"}]},
        "targets": [
            {"kind": "sequential", "items": [{"kind": "annotation", "text": "not a target"}]},
            {
                "kind": "target",
                "name": "placeholder",
                "target_name": "placeholder",
                "coordinates": {"ra_hours": 1.0, "dec_deg": 10.0},
                "items": [
                    {"kind": "slew"},
                    {"kind": "take_exposures", "count": 10, "exposure_s": 60},
                ],
                "triggers": [{"kind": "dither_after_exposures"}],
            },
        ],
    }
)
M31 = TargetSpec("M31", 0.712, 41.27)
M42 = TargetSpec("M42", 5.588, -5.39, rotation_deg=90.0)


def test_each_dropped_target_gets_a_copy_of_the_first_target_container() -> None:
    document = drop_targets(TEMPLATE, [M31, M42])
    assert document.start == TEMPLATE.start
    pattern = TEMPLATE.targets[1]
    for container, spec in zip(document.targets, (M31, M42), strict=True):
        assert isinstance(container, TargetContainer)
        assert (container.name, container.target_name) == (spec.name, spec.name)
        assert container.coordinates == Coordinates(ra_hours=spec.ra_hours, dec_deg=spec.dec_deg)
        assert container.rotation_deg == spec.rotation_deg
        assert (container.items, container.triggers) == (pattern.items, pattern.triggers)


def test_no_targets_leave_the_template_as_it_is() -> None:
    assert drop_targets(TEMPLATE, []) is TEMPLATE


def test_a_template_without_a_target_container_is_refused_unless_there_is_a_fallback() -> None:
    bare = parse_document({"name": "no targets", "targets": [TEMPLATE.targets[0].model_dump()]})
    with pytest.raises(DocumentError) as raised:
        drop_targets(bare, [M31])
    assert [issue.path for issue in raised.value.issues] == ["targets"]
    fallback = TargetContainer(target_name="x", coordinates=Coordinates(ra_hours=0, dec_deg=0))
    assert aimed_target(bare, M31, fallback=fallback).target_name == "M31"


def test_coordinates_out_of_range_are_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        drop_targets(TEMPLATE, [TargetSpec("nowhere", 24.0, 0.0)])
