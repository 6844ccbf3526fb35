"""One mapping from domain errors to HTTP answers, installed on the app by `create_app`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from daemon.store import StoreError
from drivers.errors import (
    DeviceBusy,
    DeviceError,
    DeviceTimeout,
    NotConnected,
    NotSupported,
    OperationFailed,
)

_DEVICE_STATUS: dict[type[DeviceError], int] = {
    NotConnected: 503,
    DeviceTimeout: 504,
    DeviceBusy: 409,
    NotSupported: 501,
    OperationFailed: 502,
}


async def _device_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DeviceError)
    status = next((code for kind, code in _DEVICE_STATUS.items() if isinstance(error, kind)), 502)
    return JSONResponse(
        status_code=status,
        content={
            "detail": {
                "error": type(error).__name__,
                "device": error.device,
                "operation": error.operation,
                "message": error.message,
            }
        },
    )


async def _store_error(_request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=507, content={"detail": {"error": "StoreError", "message": str(error)}}
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DeviceError, _device_error)
    app.add_exception_handler(StoreError, _store_error)
