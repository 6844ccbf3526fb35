"""Recipes: the default validates and round-trips; every problem names the step's field."""

from __future__ import annotations

import json

import pytest

from processing.recipe import (
    RecipeError,
    canonical_json,
    default_recipe,
    parse_recipe,
    recipe_from_json,
    validate_recipe,
)


def default_data() -> dict[str, object]:
    data: dict[str, object] = json.loads(canonical_json(default_recipe()))
    return data


def test_the_default_recipe_is_the_seeds_flow_and_round_trips_through_json() -> None:
    recipe = default_recipe()
    kinds = [step.kind for step in recipe.finishing()]
    assert kinds == [
        "combine",
        "crop",
        "background",
        "color",
        "denoise_linear",
        "stretch_stf",
        "stretch_arcsinh",
        "denoise_tv",
        "curves",
        "desaturate",
        "export",
    ]
    assert sorted(recipe.stacking()) == ["calibrate", "frames", "integrate", "register"]
    again = recipe_from_json(json.dumps(recipe.model_dump(mode="json"), indent=2))
    assert again == recipe
    assert again.digest() == recipe.digest()
    changed = default_data()
    changed["name"] = "mine"
    assert parse_recipe(changed).digest() != recipe.digest()


def test_each_bad_field_is_an_issue_with_its_step_path_and_a_fix() -> None:
    data = default_data()
    steps = data["steps"]
    assert isinstance(steps, list)
    steps[6]["smoothing"] = -1
    steps[7]["kind"] = "sharpen"
    steps[8]["amout"] = 0.5
    steps[10]["stretch"] = float("nan")
    recipe, issues = validate_recipe(data)
    assert recipe is None
    by_path = {issue.path: issue for issue in issues}
    assert set(by_path) == {
        "steps[6].smoothing",
        "steps[7]",
        "steps[8].amout",
        "steps[10].stretch",
    }
    assert "ge 0" in by_path["steps[6].smoothing"].fix
    assert "background" in by_path["steps[7]"].fix
    assert "remove" in by_path["steps[8].amout"].fix
    assert "finite" in by_path["steps[10].stretch"].fix


def test_order_rules_the_fields_cannot_see_are_issues_too() -> None:
    data = default_data()
    steps = data["steps"]
    assert isinstance(steps, list)
    stf = steps.pop(9)
    steps.insert(5, stf)  # a stretch before background, colour and linear noise reduction
    steps.append({"kind": "calibrate"})
    _, issues = validate_recipe(data)
    messages: dict[str, list[str]] = {}
    for issue in issues:
        messages.setdefault(issue.path, []).append(issue.message)
    assert "stretched it" in messages["steps[7]"][0]
    assert "stretched it" in messages["steps[9]"][0]
    assert "calibrate after a finishing step" in messages["steps[15]"]
    assert "a second calibrate step" in messages["steps[15]"]
    assert "export before other steps" in messages["steps[14]"]


def test_bad_json_and_impossible_values_raise_with_the_issues() -> None:
    with pytest.raises(RecipeError) as caught:
        recipe_from_json(b"{not json")
    assert caught.value.issues[0].path == "$"
    with pytest.raises(RecipeError, match=r"steps\[0\].*saturation"):
        parse_recipe({"steps": [{"kind": "curves", "saturation": [[0, 0], [0, 1]]}]})
    with pytest.raises(RecipeError, match=r"steps\[0\]"):
        parse_recipe({"steps": [{"kind": "denoise_linear", "layers": 2, "k": [3, 2, 1]}]})
    with pytest.raises(RecipeError, match="schema_version"):
        parse_recipe({"schema_version": 2, "steps": []})
