"""The observatory over the API: the real daemon under uvicorn on a simulator of the test's own
(its weather, mount and safety monitor are set here over Alpaca), with tokens for both roles."""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
from astropy.io import fits

from daemon.api.schemas.frames import WeatherRead
from daemon.frame_records import frame_from_header
from daemon.simulator.rig import SimulatorRig
from daemon.store import StoredFile
from drivers.base import WeatherReading
from tests.daemon.conftest import RunningDaemon, running_daemon
from tests.daemon.test_api import all_connected

CONTROL_TOKEN = "observatory-control-token-0123456789"
READ_TOKEN = "observatory-read-token-0123456789"
CONTROL = {"Authorization": f"Bearer {CONTROL_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}

WEATHER = {
    # Alpaca property (its form field) and value set on the simulator; the frame row's
    # field; its FITS card and the card's value (NINA writes the wind in km/h).
    "Temperature": (3.5, "temperature_c", "AMBTEMP", 3.5),
    "Humidity": (71.0, "humidity_pct", "HUMIDITY", 71.0),
    "DewPoint": (-1.5, "dew_point_c", "DEWPOINT", -1.5),
    "Pressure": (990.0, "pressure_hpa", "PRESSURE", 990.0),
    "WindSpeed": (5.0, "wind_speed_m_s", "WINDSPD", 18.0),
    "WindGust": (7.5, "wind_gust_m_s", "WINDGUST", 27.0),
    "WindDirection": (135.0, "wind_direction_deg", "WINDDIR", 135.0),
    "SkyTemperature": (-25.0, "sky_temperature_c", "SKYTEMP", -25.0),
    "SkyQuality": (21.2, "sky_quality_mag_arcsec2", "MPSAS", 21.2),
}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path) -> Iterator[SimulatorRig]:
    with SimulatorRig(
        run_dir=tmp_path_factory.mktemp("observatory-rig"), cache_dir=catalog_cache
    ) as own:
        yield own


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path, rig: SimulatorRig
) -> Iterator[RunningDaemon]:
    with running_daemon(
        tmp_path_factory.mktemp("observatory-daemon"),
        catalog_cache,
        NIGHTOWL_SIMULATOR_URL=rig.url,
        NIGHTOWL_CONTROL_TOKEN=CONTROL_TOKEN,
        NIGHTOWL_READ_TOKEN=READ_TOKEN,
        NIGHTOWL_SAFETY_POLL_S="0.3",
    ) as running:
        equipment(running, all_connected)
        yield running


def until(url: str, check: Callable[[Any], bool], timeout_s: float = 30.0) -> Any:
    """GET `url` with the read token until `check(json)`; return that JSON."""
    end = time.monotonic() + timeout_s
    while True:
        body = httpx.get(url, headers=READ, timeout=10).json()
        if check(body):
            return body
        assert time.monotonic() < end, f"condition not met; last reply: {body}"
        time.sleep(0.3)


def equipment(daemon: RunningDaemon, check: Callable[[Any], bool]) -> dict[str, Any]:
    """The devices by role, once `check(GET /api/equipment)` holds."""
    body = until(f"{daemon.url}/api/equipment", check)
    return {d["role"]: d for d in body["devices"]}


def command(daemon: RunningDaemon, path: str, **body: object) -> httpx.Response:
    return httpx.post(
        f"{daemon.url}/api/equipment/{path}", json=body or None, headers=CONTROL, timeout=60
    )


def alpaca(rig: SimulatorRig, path: str, **form: object) -> None:
    reply = httpx.put(
        f"{rig.url}/api/v1/{path}",
        data={**{k: str(v) for k, v in form.items()}, "ClientID": "1", "ClientTransactionID": "1"},
    )
    reply.raise_for_status()
    assert reply.json()["ErrorNumber"] == 0, reply.json()


def test_equipment_lists_the_observatory_with_readable_states(daemon: RunningDaemon) -> None:
    devices = equipment(daemon, all_connected)
    roof = devices["dome"]
    assert roof["info"]["can_set_azimuth"] is False  # a roll-off roof
    assert roof["status"]["shutter"] == "CLOSED"
    assert roof["status"]["azimuth_deg"] is None
    cover = devices["cover_calibrator"]["status"]
    assert (cover["cover"], cover["calibrator"]) == ("OPEN", "OFF")
    assert devices["cover_calibrator"]["info"]["max_brightness"] == 255
    assert devices["rotator"]["status"]["position_deg"] == pytest.approx(0.0)
    assert devices["weather"]["status"]["rain_rate_mm_h"] == 0.0
    switch = devices["switch"]
    assert [c["name"] for c in switch["info"]["channels"]] == [
        "Camera power",
        "Mount power",
        "Dew heater",
    ]
    assert switch["status"]["values"] == [1.0, 1.0, 30.0]
    # The API's weather schema is the driver's reading, field for field.
    assert set(WeatherRead.model_fields) == {f.name for f in dataclasses.fields(WeatherReading)}


def test_a_light_records_the_weather_in_its_header_and_its_row(
    daemon: RunningDaemon, rig: SimulatorRig
) -> None:
    for prop, (value, *_) in WEATHER.items():
        alpaca(rig, f"observingconditions/0/{prop.lower()}", **{prop: value})
    # The poller has read every value set (one of its readings may fall between the PUTs).
    equipment(
        daemon,
        lambda b: all(_weather(b).get(field) == value for value, field, *_ in WEATHER.values()),
    )

    reply = httpx.post(
        f"{daemon.url}/api/capture",
        json={"frame_type": "LIGHT", "exposure_s": 0.5, "binning": 4},
        headers=CONTROL,
        timeout=60,
    )
    assert reply.status_code == 201, reply.text
    (frame,) = reply.json()
    row = frame["weather"]
    for value, field, _, _ in WEATHER.values():
        assert row[field] == pytest.approx(value), field
    assert row["rain_rate_mm_h"] == 0.0
    assert httpx.get(f"{daemon.url}/api/frames/{frame['id']}", headers=READ).json() == frame

    content = httpx.get(f"{daemon.url}/api/frames/{frame['id']}/fits", headers=READ).content
    header = fits.getheader(io.BytesIO(content))
    for _, _, keyword, card in WEATHER.values():
        assert header[keyword] == pytest.approx(card), keyword
    assert header.comments["WINDSPD"] == "[kph] Wind speed"
    assert header.comments["AMBTEMP"] == "[degC] Ambient air temperature"
    # A file found without its row (a crash between the two) gives the same weather back.
    stored = StoredFile(PurePosixPath(frame["path"]), frame["sha256"], frame["size_bytes"])
    recovered = frame_from_header(stored, dict(header), (384, 512))["weather"]
    assert recovered == pytest.approx({k: v for k, v in row.items() if v is not None})


def _weather(body: dict[str, Any]) -> dict[str, Any]:
    (station,) = [d for d in body["devices"] if d["role"] == "weather"]
    return station["status"] or {}


def test_the_roof_opens_and_closes_over_a_parked_mount_and_refuses_an_unparked_one(
    daemon: RunningDaemon, rig: SimulatorRig
) -> None:
    opened = command(daemon, "roof/open")
    assert opened.status_code == 200, opened.text
    assert opened.json()["status"]["shutter"] == "OPEN"
    closed = command(daemon, "roof/close")
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"]["shutter"] == "CLOSED"
    events = httpx.get(
        f"{daemon.url}/api/events", params={"source": "observatory"}, headers=READ
    ).json()
    assert [e["message"] for e in events] == [
        "roof opened over the API",
        "roof closed over the API",
    ]

    refused = httpx.post(f"{daemon.url}/api/equipment/roof/open", headers=READ)
    assert refused.status_code == 403, refused.text

    alpaca(rig, "telescope/0/unpark")
    try:
        refused = command(daemon, "roof/open")
        assert refused.status_code == 409, refused.text
        assert "does not report parked" in refused.json()["detail"]
        devices = equipment(daemon, lambda body: True)
        assert devices["dome"]["status"]["shutter"] == "CLOSED"
    finally:
        alpaca(rig, "telescope/0/park")


def test_bad_values_are_422s_naming_the_field_and_good_ones_are_applied(
    daemon: RunningDaemon,
) -> None:
    for path, body, field in (
        ("calibrator/on", {"brightness": 256}, "brightness"),
        ("calibrator/on", {"brightness": -1}, "brightness"),
        ("switch", {"channel": 3, "value": 1}, "channel"),
        ("switch", {"channel": 0, "value": 0.5}, "value"),
        ("switch", {"channel": 2, "value": 150}, "value"),
    ):
        reply = command(daemon, path, **body)
        assert reply.status_code == 422, (path, body, reply.text)
        assert reply.json()["detail"][0]["loc"] == ["body", field], reply.text

    lit = command(daemon, "calibrator/on", brightness=128)
    assert lit.status_code == 200, lit.text
    assert (lit.json()["status"]["calibrator"], lit.json()["status"]["brightness"]) == (
        "READY",
        128,
    )
    assert command(daemon, "calibrator/off").json()["status"]["calibrator"] == "OFF"
    heater = command(daemon, "switch", channel=2, value=60)
    assert heater.status_code == 200, heater.text
    assert heater.json()["status"]["values"][2] == 60.0
    assert command(daemon, "cover/close").json()["status"]["cover"] == "CLOSED"


def test_the_roof_stays_closed_while_safety_holds_the_night(
    daemon: RunningDaemon, rig: SimulatorRig
) -> None:
    """Unsafe, then safe again but not yet for the safe delay (10 min): both refuse."""
    safety = f"{daemon.url}/api/safety"
    alpaca(rig, "safetymonitor/0/issafe", IsSafe=False)
    try:
        until(safety, lambda s: s["state"] == "unsafe")
        refused = command(daemon, "roof/open")
        assert refused.status_code == 409, refused.text
        assert "safety is unsafe" in refused.json()["detail"]
    finally:
        alpaca(rig, "safetymonitor/0/issafe", IsSafe=True)
    until(safety, lambda s: s["state"] == "settling")
    refused = command(daemon, "roof/open")
    assert refused.status_code == 409, refused.text
    assert "safety is settling" in refused.json()["detail"]
    assert equipment(daemon, lambda body: True)["dome"]["status"]["shutter"] == "CLOSED"
