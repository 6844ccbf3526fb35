"""Alpaca ObservingConditions driver: one reading of every sensor the station has."""

from __future__ import annotations

from drivers.alpaca._alpyca import ObservingConditions as AlpycaObservingConditions
from drivers.alpaca.device import AlpacaDevice, alpyca_args
from drivers.base import WeatherInfo, WeatherReading
from drivers.errors import FaultListener
from drivers.profile import WeatherAddress

# WeatherReading field -> ASCOM property. A station implements only the sensors it has.
_SENSORS = {
    "cloud_cover_pct": "CloudCover",
    "dew_point_c": "DewPoint",
    "humidity_pct": "Humidity",
    "pressure_hpa": "Pressure",
    "rain_rate_mm_h": "RainRate",
    "sky_brightness_lux": "SkyBrightness",
    "sky_quality_mag_arcsec2": "SkyQuality",
    "sky_temperature_c": "SkyTemperature",
    "star_fwhm_arcsec": "StarFWHM",
    "temperature_c": "Temperature",
    "wind_direction_deg": "WindDirection",
    "wind_gust_m_s": "WindGust",
    "wind_speed_m_s": "WindSpeed",
}


class AlpacaWeatherStation(AlpacaDevice[WeatherInfo]):
    def __init__(
        self, role: str, address: WeatherAddress, on_fault: FaultListener | None = None
    ) -> None:
        host, protocol = alpyca_args(address)
        super().__init__(
            role,
            address,
            AlpycaObservingConditions(host, address.device_number, protocol),
            on_fault,
        )

    async def _read_info(self) -> WeatherInfo:
        return WeatherInfo(name=str(await self._get("Name")))

    async def status(self) -> WeatherReading:
        """Read every sensor once (one request each); a sensor the station lacks reads None."""
        values: dict[str, float | None] = {}
        for field, prop in _SENSORS.items():
            value = await self._get_optional(prop)
            values[field] = float(value) if value is not None else None
        return WeatherReading(**values)
