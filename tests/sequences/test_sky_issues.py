"""Issues from tonight's sky before a start: the sun up at the planned start, a target below
its limit then (with when it rises), at the simulator's site (47 N, 8 E)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sequences.astro import Site, night_window
from sequences.context import ValidationEnv
from sequences.document import parse_document
from sequences.validation import sky_issues

SITE = Site(latitude_deg=47.0, longitude_deg=8.0, elevation_m=0.0)
NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
EVENING = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)


def env(now: datetime) -> ValidationEnv:
    window = night_window(SITE, now)
    assert window is not None
    return ValidationEnv(
        roles=frozenset({"camera", "mount"}),
        filter_names=None,
        exposure_max_s=None,
        site=SITE,
        horizon=None,
        night_start=window[0],
        night_end=window[1],
    )


def document(ra_hours: float, *, start: list[dict[str, Any]], first: list[dict[str, Any]]) -> Any:
    return parse_document(
        {
            "name": "sky",
            "start": {"items": start},
            "targets": [
                {
                    "kind": "target",
                    "target_name": "T",
                    "coordinates": {"ra_hours": ra_hours, "dec_deg": 0.0},
                    "items": [*first, {"kind": "take_exposures", "count": 1, "exposure_s": 1}],
                }
            ],
        }
    )


def test_the_sun_up_at_the_start_is_an_issue_unless_the_run_waits_for_the_dark() -> None:
    up = {i.path: i for i in sky_issues(document(1.0, start=[], first=[]), env(NOON), NOON)}
    assert up["start"].message.startswith("the sun is up (")
    assert "dark (sun at -12 deg) from 16:" in up["start"].message
    assert "wait_for_sun_altitude" in up["start"].fix
    waits = [{"kind": "wait_for_sun_altitude", "altitude_deg": -12.0}]
    # The run waits for the dark, when RA 1 h is up.
    assert sky_issues(document(1.0, start=waits, first=[]), env(NOON), NOON) == []


def test_a_target_below_its_limit_says_when_it_rises_unless_the_run_waits_for_it() -> None:
    # RA 12 h is 11 h from the meridian at 20:00 UTC: it rises after 01:00 UTC.
    (issue,) = sky_issues(document(12.0, start=[], first=[]), env(EVENING), EVENING)
    assert issue.path == "targets[0].coordinates"
    assert "below its limit (0 deg) at the planned start (20:00 UTC)" in issue.message
    hours = float(issue.message.split("rises above it in ")[1].split(" h")[0])
    assert 4.5 < hours < 6.0
    waited = document(12.0, start=[], first=[{"kind": "wait_for_altitude"}])
    assert sky_issues(waited, env(EVENING), EVENING) == []
    # RA 18 h has just set: it rises after dawn, so waiting does not help.
    (late,) = sky_issues(
        document(18.0, start=[], first=[{"kind": "wait_for_altitude"}]), env(EVENING), EVENING
    )
    assert late.message.endswith("after dawn")
