"""Dome or roll-off roof, cover calibrator, rotator, weather station and switch drivers against
the real simulator; faults the simulator cannot make come from the fault proxy.

Tests leave every device as the simulated observatory starts (roof and dome closed, cover
open, panel off, rotator at 0, the weather and the switches as configured): later tests on the
same simulator expect it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict
from typing import Any

import pytest
import requests

from drivers.alpaca import (
    AlpacaCoverCalibrator,
    AlpacaDome,
    AlpacaRotator,
    AlpacaSwitch,
    AlpacaWeatherStation,
)
from drivers.base import CalibratorState, CoverState, ShutterState, WeatherReading
from drivers.equipment import Equipment
from drivers.errors import DeviceTimeout, NotSupported, OperationFailed
from drivers.profile import CoverCalibratorAddress, DeviceAddress, DomeAddress, WeatherAddress
from tests.faultproxy import Fault, FaultProxy, FaultRule, running_proxy

ROOF = 1  # the simulator's roll-off roof; dome 0 is a rotating dome
SHORT_S = 1.0
"""The timeout of the tests that wait for a device that never gets there."""
LATE_S = 2.0
"""How late past its timeout such a test may end on a busy machine (polls, thread hand-over)."""


def read_simulator(url: str, device: str, prop: str) -> Any:
    reply = requests.get(f"{url}/api/v1/{device}/{prop}", timeout=5)
    reply.raise_for_status()
    assert reply.json()["ErrorNumber"] == 0, reply.json()
    return reply.json()["Value"]


def write_simulator(url: str, device: str, prop: str, **fields: object) -> None:
    reply = requests.put(f"{url}/api/v1/{device}/{prop}", data=fields, timeout=5)
    reply.raise_for_status()
    assert reply.json()["ErrorNumber"] == 0, reply.json()


@pytest.fixture
def proxy(simulator_url: str) -> Iterator[FaultProxy]:
    with running_proxy(simulator_url, seed=1) as p:
        yield p


@pytest.fixture
async def dome(simulator_url: str) -> AsyncIterator[AlpacaDome]:
    """The rotating dome (not in the simulated profile, whose dome is the roof)."""
    driver = AlpacaDome("dome", DomeAddress(url=simulator_url, device_number=0))
    await driver.connect()
    yield driver
    await driver.disconnect()


async def test_build_equipment_builds_the_observatory_roles(equipment: Equipment) -> None:
    assert isinstance(equipment.dome, AlpacaDome)
    assert isinstance(equipment.cover_calibrator, AlpacaCoverCalibrator)
    assert isinstance(equipment.rotator, AlpacaRotator)
    assert isinstance(equipment.weather, AlpacaWeatherStation)
    assert isinstance(equipment.switch, AlpacaSwitch)
    reports = {r.role: r for r in await equipment.snapshot()}
    for role in ("dome", "cover_calibrator", "rotator", "weather", "switch"):
        assert (reports[role].connected, reports[role].error) == (True, None), reports[role]
    assert equipment.dome.info.name == "Nightowl Roll-off Roof"
    assert equipment.cover_calibrator.info.max_brightness == 255


async def test_roof_opens_and_closes_and_has_no_azimuth(equipment: Equipment) -> None:
    roof = equipment.dome
    assert roof is not None
    assert not roof.info.can_set_azimuth
    try:
        await roof.open_shutter()
        status = await roof.status()
        assert status.shutter is ShutterState.OPEN
        assert status.azimuth_deg is None  # the simulator serves 0.0 all the same
    finally:
        await roof.close_shutter()
    assert (await roof.status()).shutter is ShutterState.CLOSED


async def test_roof_refuses_slews_park_and_home(equipment: Equipment, simulator_url: str) -> None:
    roof = equipment.dome
    assert roof is not None
    with pytest.raises(NotSupported, match="roll-off roof has no azimuth"):
        await roof.slew_to_azimuth(90.0)
    with pytest.raises(NotSupported, match="cannot park"):
        await roof.park()
    with pytest.raises(NotSupported, match="cannot find its home"):
        await roof.find_home()
    # The simulator would have slewed the roof (it does not check CanSetAzimuth).
    assert read_simulator(simulator_url, f"dome/{ROOF}", "slewing") is False


async def test_dome_slews_to_an_azimuth_parks_and_finds_home(dome: AlpacaDome) -> None:
    """The shutter is the roof's (tested above): the same code and simulator endpoints."""
    assert dome.info.can_set_azimuth
    await dome.slew_to_azimuth(483.5)  # taken modulo 360
    status = await dome.status()
    assert (status.azimuth_deg, status.slewing, status.at_park) == (123.5, False, False)
    await dome.park()
    status = await dome.status()
    assert (status.azimuth_deg, status.at_park) == (0.0, True)
    await dome.find_home()
    assert (await dome.status()).at_home


async def test_a_dome_slew_past_its_timeout_is_aborted(simulator_url: str) -> None:
    """The simulated dome takes 4 s to slew: a 1 s deadline fails and stops the dome."""
    dome = AlpacaDome("dome", DomeAddress(url=simulator_url, slew_timeout_s=SHORT_S))
    await dome.connect()
    started = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"slew to azimuth 200\.0 failed: not finished within"):
        await dome.slew_to_azimuth(200.0)
    assert time.monotonic() - started < SHORT_S + LATE_S
    status = await dome.status()
    assert not status.slewing  # aborted, not left to slew for 3 s more
    assert status.azimuth_deg != 200.0
    await dome.park()  # as the simulated observatory starts: parked at home
    await dome.find_home()
    await dome.disconnect()


async def test_a_failed_dome_slew_does_not_stop_a_moving_shutter(
    proxy: FaultProxy, simulator_url: str
) -> None:
    """AbortSlew would stop the shutter too, midway: the dome is left to finish its turn."""
    dome = AlpacaDome("dome", DomeAddress(url=proxy.url, slew_timeout_s=SHORT_S))
    await dome.connect()
    proxy.rules = [FaultRule(Fault.REPLY, path="dome/0/shutterstatus", value=3)]  # CLOSING
    with pytest.raises(DeviceTimeout, match=r"slew to azimuth 200\.0"):
        await dome.slew_to_azimuth(200.0)
    assert ("PUT", "/api/v1/dome/0/abortslew") not in proxy.requests
    assert read_simulator(simulator_url, "dome/0", "slewing") is True
    proxy.rules = []
    await dome.abort_slew()
    await dome.park()  # as the simulated observatory starts: parked at home
    await dome.find_home()
    await dome.disconnect()


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        # The roof takes the command and does nothing: it still reports CLOSED.
        (
            FaultRule(Fault.REPLY, path=f"dome/{ROOF}/openshutter"),
            r"no OPEN within 1\.0 s; it still reports CLOSED",
        ),
        # The command is never answered: the same deadline bounds it (not the 6 s HTTP one).
        (FaultRule(Fault.SILENCE, path=f"dome/{ROOF}/openshutter"), r"no OPEN within 1\.0 s$"),
    ],
    ids=["stuck", "silent"],
)
async def test_a_roof_that_does_not_open_times_out_within_its_timeout(
    proxy: FaultProxy, simulator_url: str, rule: FaultRule, message: str
) -> None:
    roof = AlpacaDome("dome", DomeAddress(url=proxy.url, device_number=ROOF, shutter_timeout_s=1))
    await roof.connect()
    proxy.rules = [rule]
    started = time.monotonic()
    with pytest.raises(DeviceTimeout, match=message):
        await roof.open_shutter()
    assert time.monotonic() - started < SHORT_S + LATE_S
    assert proxy.injected_count(rule.kind) == 1
    assert read_simulator(simulator_url, f"dome/{ROOF}", "shutterstatus") == 1  # closed
    proxy.rules = []
    await roof.disconnect()


def roof_closing(url: str) -> tuple[AlpacaDome, Callable[[], Awaitable[None]]]:
    roof = AlpacaDome("dome", DomeAddress(url=url, device_number=ROOF))
    return roof, roof.close_shutter


def panel_off(url: str) -> tuple[AlpacaCoverCalibrator, Callable[[], Awaitable[None]]]:
    panel = AlpacaCoverCalibrator("cover_calibrator", CoverCalibratorAddress(url=url))
    return panel, panel.calibrator_off


@pytest.mark.parametrize(
    ("command", "state_path", "error_value", "operation"),
    [
        (roof_closing, f"dome/{ROOF}/shutterstatus", ShutterState.ERROR.value, "close shutter"),
        (
            panel_off,
            "covercalibrator/0/calibratorstate",
            CalibratorState.ERROR.value,
            "calibrator off",
        ),
    ],
    ids=["shutter", "calibrator"],
)
async def test_a_device_reporting_error_fails_at_once(
    proxy: FaultProxy,
    command: Callable[
        [str], tuple[AlpacaDome | AlpacaCoverCalibrator, Callable[[], Awaitable[None]]]
    ],
    state_path: str,
    error_value: int,
    operation: str,
) -> None:
    """Commands that change nothing here (the roof is closed, the panel off), so the
    simulator keeps its state whatever the driver does."""
    driver, act = command(proxy.url)
    await driver.connect()
    proxy.rules = [FaultRule(Fault.REPLY, path=state_path, value=error_value)]
    started = time.monotonic()
    with pytest.raises(OperationFailed, match=f"{operation} failed: the device reports ERROR"):
        await act()
    assert time.monotonic() - started < LATE_S  # the first poll fails; no waiting for a timeout
    proxy.rules = []
    await driver.disconnect()


async def test_cover_and_panel_cycle_with_brightness(equipment: Equipment) -> None:
    cc = equipment.cover_calibrator
    assert cc is not None
    status = await cc.status()
    assert (status.cover, status.calibrator) == (CoverState.OPEN, CalibratorState.OFF)
    try:
        await cc.close_cover()
        await cc.calibrator_on(128)
        status = await cc.status()
        assert (status.cover, status.calibrator, status.brightness) == (
            CoverState.CLOSED,
            CalibratorState.READY,
            128,
        )
        with pytest.raises(ValueError, match=r"brightness must be within 0\.\.255, got 256"):
            await cc.calibrator_on(256)
        assert (await cc.status()).brightness == 128  # the refused value never reached it
    finally:
        await cc.calibrator_off()
        await cc.open_cover()
    status = await cc.status()
    assert (status.cover, status.calibrator, status.brightness) == (
        CoverState.OPEN,
        CalibratorState.OFF,
        0,
    )


async def test_rotator_moves_and_syncs(equipment: Equipment) -> None:
    rotator = equipment.rotator
    assert rotator is not None
    try:
        await rotator.move_to(-270.0)  # taken modulo 360
        status = await rotator.status()
        assert (status.position_deg, status.mechanical_position_deg) == (90.0, 90.0)
        assert not status.is_moving
        await rotator.sync(100.0)  # e.g. a plate solve's angle: only the synced position moves
        status = await rotator.status()
        assert (status.position_deg, status.mechanical_position_deg) == (100.0, 90.0)
        with pytest.raises(ValueError, match="position_deg must be a finite angle"):
            await rotator.move_to(float("nan"))
    finally:
        await rotator.move_mechanical(0.0)
        await rotator.sync(0.0)
    status = await rotator.status()
    assert (status.position_deg, status.mechanical_position_deg) == (0.0, 0.0)


WEATHER_PROPERTIES = {
    "cloud_cover_pct": "cloudcover",
    "dew_point_c": "dewpoint",
    "humidity_pct": "humidity",
    "pressure_hpa": "pressure",
    "rain_rate_mm_h": "rainrate",
    "sky_brightness_lux": "skybrightness",
    "sky_quality_mag_arcsec2": "skyquality",
    "sky_temperature_c": "skytemperature",
    "star_fwhm_arcsec": "starfwhm",
    "temperature_c": "temperature",
    "wind_direction_deg": "winddirection",
    "wind_gust_m_s": "windgust",
    "wind_speed_m_s": "windspeed",
}


def served_weather(url: str) -> dict[str, float]:
    return {
        field: read_simulator(url, "observingconditions/0", prop)
        for field, prop in WEATHER_PROPERTIES.items()
    }


async def test_weather_reading_is_what_the_station_serves(
    equipment: Equipment, simulator_url: str
) -> None:
    station = equipment.weather
    assert station is not None
    assert set(WEATHER_PROPERTIES) == set(WeatherReading.__dataclass_fields__)
    before = served_weather(simulator_url)
    assert asdict(await station.status()) == before
    write_simulator(simulator_url, "observingconditions/0", "humidity", Humidity=87.5)
    try:
        reading = await station.status()
        assert reading.humidity_pct == 87.5
        assert asdict(reading) == served_weather(simulator_url)
    finally:
        write_simulator(
            simulator_url, "observingconditions/0", "humidity", Humidity=before["humidity_pct"]
        )


async def test_weather_sensors_a_station_lacks_read_none_in_one_request_each(
    proxy: FaultProxy, simulator_url: str
) -> None:
    station = AlpacaWeatherStation("weather", WeatherAddress(url=proxy.url))
    await station.connect()
    proxy.rules = [
        FaultRule(
            Fault.ALPACA_ERROR,
            path="observingconditions/0/(skyquality|starfwhm)$",
            error_number=0x400,
        )  # not implemented
    ]
    seen = len(proxy.requests)
    reading = await station.status()
    assert len(proxy.requests) - seen == len(WEATHER_PROPERTIES)
    assert (reading.sky_quality_mag_arcsec2, reading.star_fwhm_arcsec) == (None, None)
    served = served_weather(simulator_url)
    assert reading.humidity_pct == served["humidity_pct"]
    assert reading.wind_gust_m_s == served["wind_gust_m_s"]
    proxy.rules = []
    await station.disconnect()


@pytest.fixture
async def switch(proxy: FaultProxy) -> AsyncIterator[AlpacaSwitch]:
    """The power box through the proxy, which records which methods set it."""
    driver = AlpacaSwitch("switch", DeviceAddress(url=proxy.url))
    await driver.connect()
    yield driver
    proxy.rules = []
    await driver.disconnect()


async def test_switch_channels_are_read_at_connect(switch: AlpacaSwitch) -> None:
    assert [(c.name, c.boolean, c.maximum) for c in switch.info.channels] == [
        ("Camera power", True, 1.0),
        ("Mount power", True, 1.0),
        ("Dew heater", False, 100.0),
    ]
    assert switch.info.channels[2].description == "Dew heater duty cycle, percent"
    assert all(c.can_write for c in switch.info.channels)


async def test_switch_sets_boolean_and_analogue_channels(
    switch: AlpacaSwitch, proxy: FaultProxy
) -> None:
    assert (await switch.status()).values == (1.0, 1.0, 30.0)
    seen = len(proxy.requests)
    try:
        await switch.set_switch(0, 0)
        await switch.set_switch(2, 45.0)
        assert (await switch.status()).values == (0.0, 1.0, 45.0)
    finally:
        await switch.set_switch(0, 1)
        await switch.set_switch(2, 30.0)
    assert (await switch.status()).values == (1.0, 1.0, 30.0)
    puts = [path.rsplit("/", 1)[1] for method, path in proxy.requests[seen:] if method == "PUT"]
    assert puts == ["setswitch", "setswitchvalue", "setswitch", "setswitchvalue"]


@pytest.mark.parametrize(
    ("channel", "value", "message"),
    [
        (2, 100.5, r"channel 2 \(Dew heater\) takes values within 0\.\.100, got 100\.5"),
        (2, -1.0, r"takes values within 0\.\.100, got -1"),
        (0, 0.5, r"channel 0 \(Camera power\) is on/off: value must be 0 or 1, got 0\.5"),
        (3, 1.0, r"channel must be within 0\.\.2 \(0: Camera power, 1: Mount power, 2: Dew"),
    ],
    ids=["above", "below", "not-boolean", "no-channel"],
)
async def test_switch_refuses_bad_values_before_sending(
    switch: AlpacaSwitch, proxy: FaultProxy, channel: int, value: float, message: str
) -> None:
    seen = len(proxy.requests)
    with pytest.raises(ValueError, match=message):
        await switch.set_switch(channel, value)
    assert proxy.requests[seen:] == []


async def test_switch_refuses_a_read_only_channel(proxy: FaultProxy) -> None:
    proxy.rules = [FaultRule(Fault.REPLY, path="switch/0/canwrite", value=False)]
    driver = AlpacaSwitch("switch", DeviceAddress(url=proxy.url))
    await driver.connect()
    assert not any(c.can_write for c in driver.info.channels)
    seen = len(proxy.requests)
    with pytest.raises(ValueError, match=r"channel 1 \(Mount power\) is read-only"):
        await driver.set_switch(1, 0)
    assert proxy.requests[seen:] == []
    proxy.rules = []
    await driver.disconnect()
