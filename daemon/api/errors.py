"""One mapping from domain errors to HTTP answers, installed on the app by `create_app`: routes
raise or let through the errors of the services, devices, store and engine, never map them."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from daemon.errors import Busy, Conflict, NotFound, Refused, ServiceError
from daemon.store import StoreError
from drivers.errors import (
    DeviceBusy,
    DeviceError,
    DeviceTimeout,
    NotConnected,
    NotSupported,
    OperationFailed,
)
from sequences.errors import DocumentError
from sequences.model import Issue

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


async def _document_error(_request: Request, error: Exception) -> JSONResponse:
    """A malformed sequence document: every problem with its node path and how to fix it."""
    assert isinstance(error, DocumentError)
    return JSONResponse(
        status_code=422,
        content={"detail": [_issue_dict(i, error.field) for i in error.issues]},
    )


_SERVICE_STATUS: dict[type[ServiceError], int] = {
    NotFound: 404,
    Busy: 409,
    Conflict: 409,
    Refused: 422,
}


async def _service_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServiceError)
    status = next((code for kind, code in _SERVICE_STATUS.items() if isinstance(error, kind)), 400)
    return JSONResponse(status_code=status, content={"detail": error.detail()})


def _issue_dict(issue: Issue, field: str) -> dict[str, object]:
    return {
        "loc": ["body", field, *[p for p in issue.path.split(".") if p]],
        "path": issue.path,
        "msg": issue.message,
        "fix": issue.fix,
        "type": f"sequence_{field}",
    }


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DeviceError, _device_error)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(DocumentError, _document_error)
    app.add_exception_handler(ServiceError, _service_error)
