"""The night planner: target choice, switching when a target sets, goals, windows, the moon,
tonight's prediction and the run built for a target. Site: the simulator's (47 N, 8 E)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from importlib.resources import files

import pytest
from pydantic import ValidationError

from sequences.astro import (
    Site,
    altitude_deg,
    moon_separation_deg,
    next_set,
    next_transit,
)
from sequences.document import SequenceDocument, parse_document
from sequences.instructions.imaging import TakeExposures
from sequences.instructions.mount import Coordinates
from sequences.instructions.waits import AltitudeLimit
from sequences.plan import (
    EXPOSURE_OVERHEAD_S,
    Goal,
    NightPlan,
    PlanTarget,
    Sky,
    TimeWindow,
    choose,
    end_document,
    next_start,
    predict_night,
    remaining,
    target_document,
    tonight,
)

SITE = Site(47.0, 8.0)
EVENING = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)
M31 = Coordinates(ra_hours=0.712306, dec_deg=41.2692)
M42 = Coordinates(ra_hours=5.588139, dec_deg=-5.391111)


def target(name: str, where: Coordinates, priority: int = 5, count: int = 10) -> PlanTarget:
    return PlanTarget(
        name=name,
        coordinates=where,
        priority=priority,
        goals=[Goal(filter_name="L", exposure_s=300.0, count=count)],
    )


def plan(*targets: PlanTarget, above_deg: float = 30.0) -> NightPlan:
    return NightPlan(
        name="test",
        template_id=1,
        targets=list(targets),
        above=AltitudeLimit(altitude_deg=above_deg),
    )


def sky_tonight(p: NightPlan) -> tuple[Sky, datetime]:
    night = tonight(p, SITE, EVENING)
    assert night is not None
    return Sky(SITE, None, night.end), night.start


def test_the_night_runs_from_dusk_to_dawn_at_the_plan_sun_altitudes() -> None:
    night = tonight(plan(target("M31", M31)), SITE, EVENING)
    assert night is not None
    # Nautical dusk and dawn at 47 N in late November, UTC (+-10 min of the almanac).
    assert datetime(2026, 11, 22, 16, 30, tzinfo=UTC) < night.start < EVENING + timedelta(hours=1)
    assert (
        datetime(2026, 11, 23, 5, 15, tzinfo=UTC)
        < night.end
        < datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    )


def test_the_lowest_priority_number_wins_then_the_higher_target() -> None:
    p = plan(target("M31", M31, priority=2), target("M42", M42, priority=1))
    sky, _ = sky_tonight(p)
    late = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)  # both up, M42 near its meridian
    chosen = choose(p, {}, sky, late)
    assert chosen is not None
    assert chosen.target.name == "M42"
    same = plan(target("M31", M31, priority=1), target("M42", M42, priority=1))
    higher = max(("M31", M31), ("M42", M42), key=lambda t: altitude_deg(t[1].radec(), SITE, late))
    chosen = choose(same, {}, sky, late)
    assert chosen is not None
    assert chosen.target.name == higher[0]


def test_a_target_is_imaged_until_it_sets_then_the_next_one_is_chosen() -> None:
    p = plan(target("M31", M31, priority=1), target("M42", M42, priority=2))
    sky, dusk = sky_tonight(p)
    chosen = choose(p, {}, sky, dusk)
    assert chosen is not None
    assert chosen.target.name == "M31"
    sets = next_set(M31.radec(), SITE, dusk, 30.0)
    assert sets is not None
    assert chosen.ends_by == "set"
    assert abs((chosen.until - sets).total_seconds()) < 1.0
    after = choose(p, {}, sky, sets + timedelta(minutes=1))
    assert after is not None
    assert after.target.name == "M42"


def test_met_goals_and_short_slots_leave_a_target_out() -> None:
    p = plan(target("M31", M31, priority=1, count=4), target("M42", M42, priority=2))
    sky, dusk = sky_tonight(p)
    assert remaining(p.targets[0], {"M31": [3]}) == [1]
    assert remaining(p.targets[0], {"M31": [6]}) == [0]
    done = choose(p, {"M31": [4]}, sky, dusk)
    assert done is None or done.target.name == "M42"
    sets = next_set(M31.radec(), SITE, dusk, 30.0)
    assert sets is not None
    nearly_set = sets - timedelta(minutes=5)  # under the 10 min minimum slot
    chosen = choose(p, {}, sky, nearly_set)
    assert chosen is None or chosen.target.name == "M42"


def test_when_nothing_is_up_the_next_start_is_when_a_target_rises() -> None:
    p = plan(target("M42", M42))
    sky, dusk = sky_tonight(p)
    assert choose(p, {}, sky, dusk) is None  # M42 is low in the east at dusk
    start = next_start(p, {}, sky, dusk)
    assert start is not None
    assert altitude_deg(M42.radec(), SITE, start) >= 30.0
    assert altitude_deg(M42.radec(), SITE, start - timedelta(minutes=6)) < 30.0


def test_a_time_window_may_span_midnight() -> None:
    window = TimeWindow(start=time(22, 0), end=time(2, 0))
    assert window.contains(datetime(2026, 11, 22, 23, 0, tzinfo=UTC))
    assert window.contains(datetime(2026, 11, 23, 1, 59, tzinfo=UTC))
    assert not window.contains(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    assert not window.contains(datetime(2026, 11, 22, 21, 0, tzinfo=UTC))
    assert window.end_after(datetime(2026, 11, 22, 23, 0, tzinfo=UTC)) == datetime(
        2026, 11, 23, 2, 0, tzinfo=UTC
    )
    windowed = target("M42", M42).model_copy(update={"window": window})
    p = plan(windowed)
    sky, _ = sky_tonight(p)
    chosen = choose(p, {}, sky, datetime(2026, 11, 23, 1, 0, tzinfo=UTC))
    assert chosen is not None
    assert chosen.ends_by == "window"
    assert chosen.until == datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    assert choose(p, {}, sky, datetime(2026, 11, 23, 3, 0, tzinfo=UTC)) is None


def test_the_moon_distance_limit_leaves_out_a_target_beside_the_moon() -> None:
    late = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
    # A target where the moon is tonight (found on a 15 min x 3 deg grid), and the limit.
    grid = [
        Coordinates(ra_hours=ra / 4, dec_deg=dec) for ra in range(96) for dec in range(-30, 61, 3)
    ]
    near_moon = min(grid, key=lambda c: moon_separation_deg(c.radec(), SITE, late))
    separation = moon_separation_deg(near_moon.radec(), SITE, late)
    assert separation < 4.0
    close = PlanTarget(
        name="near the moon",
        coordinates=near_moon,
        goals=[Goal(exposure_s=60.0, count=5)],
        above=AltitudeLimit(altitude_deg=-10.0),
        moon_separation_deg=30.0,
    )
    p = plan(close)
    sky, _ = sky_tonight(p)
    assert choose(p, {}, sky, late) is None
    lax = plan(close.model_copy(update={"moon_separation_deg": 0.0}), above_deg=-10.0)
    if altitude_deg(near_moon.radec(), SITE, late) >= -10.0:
        assert choose(lax, {}, sky, late) is not None


def test_tonight_is_predicted_target_by_target_with_the_meridian_flip() -> None:
    p = plan(
        target("M31", M31, priority=1, count=200),
        PlanTarget(
            name="M42",
            coordinates=M42,
            priority=2,
            goals=[Goal(filter_name="Ha", exposure_s=600.0, count=6)],
        ),
    )
    preview = predict_night(p, {"M42": [2]}, SITE, None, EVENING)
    assert preview is not None
    assert [s.target for s in preview.slots] == ["M31", "M42"]
    m31, m42 = preview.slots
    assert m31.start == preview.dusk
    assert m31.ends_by == "set"  # 200 x 5 min do not fit before it sets below 30 deg
    sets = next_set(M31.radec(), SITE, preview.dusk, 30.0)
    assert sets is not None
    assert abs((m31.end - sets).total_seconds()) < 1.0
    # M31 transits during its slot: the flip 5 min after the meridian. M42 has passed its
    # meridian before its slot: no flip.
    transit = next_transit(M31.radec(), SITE, preview.dusk)
    assert m31.meridian_flip == transit + timedelta(minutes=5)
    assert m42.meridian_flip is None
    # M31 takes as many frames as fit; what does not fit is left over for another night.
    taken = m31.frames["L 300 s bin 1"]
    slot_s = (m31.end - m31.start).total_seconds()
    assert taken == int((slot_s - 180.0) // (300.0 + EXPOSURE_OVERHEAD_S))
    assert preview.left_over == {"M31": 200 - taken}
    # M42 has 2 of its 6 frames: the other 4 fill the start of its slot.
    assert m42.start == m31.end
    assert m42.ends_by == "goals met"
    assert m42.frames == {"Ha 600 s bin 1": 4}
    expected_end = m42.start + timedelta(seconds=180.0 + 4 * (600.0 + EXPOSURE_OVERHEAD_S))
    assert m42.end == expected_end
    assert m42.end <= preview.dawn


def test_the_run_for_a_target_takes_the_remaining_frames_inside_its_template() -> None:
    template = parse_document(
        files("sequences").joinpath("examples", "two_targets.json").read_text()
    )
    t = PlanTarget(
        name="NGC 7000",
        coordinates=Coordinates(ra_hours=20.98, dec_deg=44.5),
        goals=[
            Goal(filter_name="Ha", exposure_s=300.0, count=20),
            Goal(filter_name="OIII", exposure_s=300.0, count=20),
        ],
    )
    p = plan(t)
    document = target_document(template, p, t, [5, 0], with_start=True)
    assert SequenceDocument.model_validate(document.model_dump(mode="json")) == document
    (container,) = document.targets
    assert container.kind == "target"
    assert container.target_name == "NGC 7000"
    kinds = [item.kind for item in container.items]
    assert kinds == ["slew", "center", "start_guiding", "take_exposures"]
    (exposures,) = [i for i in container.items if isinstance(i, TakeExposures)]
    assert (exposures.count, exposures.filter_name, exposures.exposure_s) == (5, "Ha", 300.0)
    assert [c.kind for c in container.conditions] == [
        "loop_count",
        "while_above_altitude",
        "while_sun_below",
    ]
    assert [tr.kind for tr in container.triggers] == [
        "dither_after_exposures",
        "meridian_flip",
        "autofocus_after_filter_change",
    ]
    assert document.start == template.start
    assert document.end.items == []
    later = target_document(template, p, t, [5, 0], with_start=False)
    assert later.start.items == []
    assert end_document(template, p).end == template.end


def test_a_plan_names_each_target_once() -> None:
    with pytest.raises(ValidationError, match="used twice"):
        plan(target("M31", M31), target("M31", M42))
