"""alpyca's device classes with one change: requests to different devices run concurrently.

alpyca 3.1 holds one class-wide lock for the whole of every HTTP request, only to number its
transactions. A silent server then stalls every other device of the process for up to alpyca's
5 s HTTP timeout per call, so a hung safety monitor would time out a healthy camera. These
subclasses take the lock just to draw a transaction id and keep everything else as alpyca does
(request shape, HTTP timeout, ASCOM error translation).
"""

from __future__ import annotations

from typing import Any

import requests
from alpaca.camera import Camera as _Camera
from alpaca.covercalibrator import CoverCalibrator as _CoverCalibrator
from alpaca.device import Device
from alpaca.dome import Dome as _Dome
from alpaca.filterwheel import FilterWheel as _FilterWheel
from alpaca.focuser import Focuser as _Focuser
from alpaca.observingconditions import ObservingConditions as _ObservingConditions
from alpaca.rotator import Rotator as _Rotator
from alpaca.safetymonitor import SafetyMonitor as _SafetyMonitor
from alpaca.switch import Switch as _Switch
from alpaca.telescope import Telescope as _Telescope

HTTP_TIMEOUT_S = 5.0


class _Concurrent(Device):  # type: ignore[misc]
    def _request(self, method: str, attribute: str, tmo: float, data: dict[str, Any]) -> Any:
        with Device._ctid_lock:
            transaction = Device._client_trans_id
            Device._client_trans_id += 1
        fields = {
            "ClientTransactionID": str(transaction),
            "ClientID": str(Device._client_id),
            **data,
        }
        headers = {}
        if self.address.startswith("[") and not self.address.startswith("[::1]"):
            headers["Host"] = f"{self.address.split('%')[0]}]"
        url = f"{self.base_url}/{attribute}"
        session: requests.Session = self.rqs
        if method == "GET":
            response = session.get(url, params=fields, timeout=tmo, headers=headers)
        else:
            response = session.put(url, data=fields, timeout=tmo, headers=headers)
        self._Device__check_error(response)
        return response.json()

    def _get(self, attribute: str, tmo: float = HTTP_TIMEOUT_S, **data: Any) -> Any:
        return self._request("GET", attribute, tmo, data)["Value"]

    def _put(self, attribute: str, tmo: float = HTTP_TIMEOUT_S, **data: Any) -> Any:
        return self._request("PUT", attribute, tmo, data)


class Camera(_Concurrent, _Camera):  # type: ignore[misc]
    pass


class Telescope(_Concurrent, _Telescope):  # type: ignore[misc]
    pass


class Focuser(_Concurrent, _Focuser):  # type: ignore[misc]
    pass


class FilterWheel(_Concurrent, _FilterWheel):  # type: ignore[misc]
    pass


class SafetyMonitor(_Concurrent, _SafetyMonitor):  # type: ignore[misc]
    pass


class Dome(_Concurrent, _Dome):  # type: ignore[misc]
    pass


class CoverCalibrator(_Concurrent, _CoverCalibrator):  # type: ignore[misc]
    pass


class Rotator(_Concurrent, _Rotator):  # type: ignore[misc]
    pass


class ObservingConditions(_Concurrent, _ObservingConditions):  # type: ignore[misc]
    pass


class Switch(_Concurrent, _Switch):  # type: ignore[misc]
    pass
