"""Night plans over the REST API of the real daemon: bad plans are refused naming the field,
tonight is predicted, a night runs until its goals are met, nights never overlap, and a daemon
killed in the middle of a night joins it again when it comes back."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx

from daemon.db.engine import make_engine
from daemon.plans import recipe_of_runs
from tests.daemon.conftest import running_daemon, wait_for
from tests.daemon.test_frames_api import all_connected
from tests.daemon.test_sequences_api import M31, SIMULATED, night


def plan_body(name: str, template_id: int, count: int) -> dict[str, Any]:
    return {
        "plan": {
            "name": name,
            "template_id": template_id,
            "targets": [
                {
                    "name": "M31",
                    "coordinates": M31,
                    "goals": [{"filter_name": "L", "exposure_s": 1.0, "count": count}],
                }
            ],
        }
    }


def done_frames(url: str, plan_id: int) -> int:
    (target,) = httpx.get(f"{url}/api/plans/{plan_id}/progress").json()
    return int(target["goals"][0]["done"])


def test_plans_over_the_api_and_a_night_joined_after_a_crash(
    tmp_path: Path, catalog_cache: Path, simulator_url: str
) -> None:
    # The session's simulators, not an embedded rig: a killed daemon cannot stop its rig.
    env = {"NIGHTOWL_SIMULATOR_URL": simulator_url, "NIGHTOWL_PROCESS_AFTER_RUN": "false"}
    env |= SIMULATED
    data = tmp_path / "plans"
    with running_daemon(data, catalog_cache, **env) as first:
        wait_for(f"{first.url}/api/equipment", all_connected)
        api = f"{first.url}/api"
        template = httpx.post(f"{api}/templates", json={"document": night(1)}).json()

        bad = httpx.post(f"{api}/plans", json=plan_body("bad", 999, 2))
        assert bad.status_code == 422
        assert [i["path"] for i in bad.json()["detail"]] == ["template_id"]
        assert bad.json()["detail"][0]["loc"] == ["body", "plan", "template_id"]
        twice = plan_body("twice", template["id"], 2)
        twice["plan"]["targets"] *= 2
        assert httpx.post(f"{api}/plans", json=twice).status_code == 422
        zero = plan_body("zero", template["id"], 2)
        zero["plan"]["targets"][0]["priority"] = 0
        refused = httpx.post(f"{api}/plans", json=zero)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["path"] == "targets[0].priority"
        assert httpx.get(f"{api}/plans/999/tonight").status_code == 404

        unknown = plan_body("no recipe", template["id"], 2)
        unknown["plan"]["recipe_id"] = 999
        refused = httpx.post(f"{api}/plans", json=unknown)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["path"] == "recipe_id"
        document = httpx.get(f"{api}/recipes/default").json()
        document["name"] = "plan recipe"
        recipe = httpx.post(f"{api}/recipes", json={"document": document}).json()
        with_recipe = plan_body("short", template["id"], 2)
        with_recipe["plan"]["recipe_id"] = recipe["id"]
        created = httpx.post(f"{api}/plans", json=with_recipe)
        assert created.status_code == 201, created.text
        short = created.json()
        assert short["next_start"] is None  # the simulated clock arms no plan by itself
        tonight = httpx.get(f"{api}/plans/{short['id']}/tonight").json()
        assert tonight["slots"][0]["target"] == "M31"
        assert tonight["slots"][0]["ends_by"] == "goals met"
        assert tonight["dusk"] < tonight["slots"][0]["end"] < tonight["dawn"]
        assert tonight["issues"] == []
        odd = plan_body("odd", template["id"], 2)
        odd["plan"]["targets"][0]["goals"].append(
            {"filter_name": "Halpha", "exposure_s": 1.0, "count": 3}  # the wheel has "Ha"
        )
        odd["plan"]["targets"].append(
            {
                "name": "Far south",
                "coordinates": {"ra_hours": 1.0, "dec_deg": -70.0},
                "goals": [{"filter_name": "L", "exposure_s": 1.0, "count": 1}],
            }
        )
        made = httpx.post(f"{api}/plans", json=odd)
        assert made.status_code == 201, made.text  # saved, with its issues shown tonight
        forecast = httpx.get(f"{api}/plans/{made.json()['id']}/tonight").json()
        issues = {i["path"]: i for i in forecast["issues"]}
        assert set(issues) == {"targets[0].goals[1].filter_name", "targets[1].coordinates"}
        assert (
            "'Halpha' is not in the wheel" in issues["targets[0].goals[1].filter_name"]["message"]
        )
        assert "Ha" in issues["targets[0].goals[1].filter_name"]["fix"]
        assert "not above its limit (30 deg)" in issues["targets[1].coordinates"]["message"]
        assert forecast["slots"][0]["ends_by"] == "filter missing"  # never "goals met"
        assert forecast["left_over"]["M31"] == 3
        assert httpx.delete(f"{api}/plans/{made.json()['id']}").status_code == 204

        started = httpx.post(f"{api}/plans/{short['id']}/start")
        assert started.status_code == 202, started.text
        other = httpx.post(f"{api}/plans", json=plan_body("long", template["id"], 40)).json()
        overlap = httpx.post(f"{api}/plans/{other['id']}/start")
        assert overlap.status_code == 409
        assert "never overlap" in overlap.json()["detail"]

        nights = wait_for(
            f"{api}/plans/{short['id']}/nights",
            lambda ns: ns[0]["state"] in ("finished", "stopped"),  # type: ignore[index]
            timeout_s=120,
        )
        assert nights[0]["state"] == "finished", first.log()  # type: ignore[index]
        assert nights[0]["reason"] == "all goals met"  # type: ignore[index]
        assert len(nights[0]["run_ids"]) == 2  # type: ignore[index]  # M31, then the end area
        assert done_frames(first.url, short["id"]) == 2
        # The nights' processing job is finished with the plan's recipe.
        engine = make_engine(f"sqlite:///{data / 'nightowl.db'}")
        chosen = recipe_of_runs(engine, nights[0]["run_ids"])  # type: ignore[index]
        engine.dispose()
        assert chosen is not None
        assert chosen.name == "plan recipe"

        assert httpx.post(f"{api}/plans/{other['id']}/start").status_code == 202
        wait_for(f"{api}/plans/{other['id']}/progress", lambda p: p[0]["goals"][0]["done"] >= 2)  # type: ignore[index]
        first.process.send_signal(signal.SIGKILL)  # a crash: no shutdown at all
        first.process.wait()

    with running_daemon(data, catalog_cache, **env) as second:
        api = f"{second.url}/api"
        taken = done_frames(second.url, other["id"])
        wait_for(
            f"{api}/events?source=plan&limit=200&newest=true",
            lambda events: any("joining it after a restart" in e["message"] for e in events),  # type: ignore[attr-defined]
        )
        wait_for(f"{api}/plans/{other['id']}/progress", lambda p: p[0]["goals"][0]["done"] > taken)  # type: ignore[index]
        safety = httpx.get(f"{api}/safety").json()
        assert (safety["state"], safety["weather_violations"], safety["closed"]) == ("safe", [], [])
        stopped = httpx.post(f"{api}/plans/{other['id']}/stop")
        assert stopped.status_code == 202, stopped.text
        nights = wait_for(
            f"{api}/plans/{other['id']}/nights",
            lambda ns: ns[0]["state"] == "stopped",  # type: ignore[index]
            timeout_s=60,
        )
        runs = {r["id"]: r for r in httpx.get(f"{api}/runs").json()}
        (joined,) = nights  # type: ignore[misc]
        assert joined["reason"] == "stopped over the API"
        statuses = [runs[i]["status"] for i in joined["run_ids"]]
        # Before the crash (interrupted), after it (aborted by the stop), then the end area.
        assert statuses == ["interrupted", "aborted", "completed"], second.log()
        assert httpx.post(f"{api}/plans/{other['id']}/stop").status_code == 409
