"""One mapping from domain errors to HTTP answers, installed on the app by `create_app`: routes
raise or let through the errors of the services, devices, store and engine, never map them."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from daemon.errors import Busy, Conflict, Gone, NotFound, Refused, ServiceError
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
    return _answer(
        status,
        {
            "error": type(error).__name__,
            "device": error.device,
            "operation": error.operation,
            "message": error.message,
        },
    )


async def _store_error(_request: Request, error: Exception) -> JSONResponse:
    return _answer(507, {"error": "StoreError", "message": str(error)})


async def _document_error(_request: Request, error: Exception) -> JSONResponse:
    """A malformed sequence document: every problem with its node path and how to fix it."""
    assert isinstance(error, DocumentError)
    return _answer(422, [_issue_dict(i, error.field) for i in error.issues])


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 (`loc`, `msg`, `type`, `input`, `ctx` per problem), but an input such as
    NaN, Infinity or a lone surrogate is shown as text instead of breaking the answer."""
    assert isinstance(error, RequestValidationError)
    return _answer(422, jsonable_encoder(error.errors()))


async def _http_error(request: Request, error: Exception) -> Response:
    """FastAPI's answer, except for a body that is not UTF-8: FastAPI answers 400 where any
    other malformed JSON is a 422 `json_invalid`; it is malformed JSON too (RFC 8259)."""
    assert isinstance(error, HTTPException)
    cause = error.__cause__
    if error.status_code == 400 and isinstance(cause, UnicodeDecodeError):
        problem = {
            "type": "json_invalid",
            "loc": ["body", cause.start],
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": "the body is not UTF-8 text"},
        }
        return _answer(422, [problem])
    return await http_exception_handler(request, error)


_SERVICE_STATUS: dict[type[ServiceError], int] = {
    NotFound: 404,
    Busy: 409,
    Conflict: 409,
    Gone: 410,
    Refused: 422,
}


async def _service_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServiceError)
    status = next((code for kind, code in _SERVICE_STATUS.items() if isinstance(error, kind)), 400)
    return _answer(status, error.detail())


def _answer(status: int, detail: Any) -> JSONResponse:
    """`{"detail": ...}` as strict JSON, whatever a message or an echoed input holds."""
    return JSONResponse(status_code=status, content={"detail": _strict_json(detail)})


def _strict_json(value: Any) -> Any:
    """NaN and Infinity become text ("nan", "inf"); text with lone surrogates gets them
    escaped ("\\ud800"): JSON has no such numbers and UTF-8 no such characters."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_strict_json(k): _strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict_json(v) for v in value]
    return value


def _issue_dict(issue: Issue, field: str) -> dict[str, object]:
    return {
        "loc": ["body", field, *[p for p in issue.path.split(".") if p]],
        "path": issue.path,
        "msg": issue.message,
        "fix": issue.fix,
        "type": f"sequence_{field}",
    }


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(DeviceError, _device_error)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(DocumentError, _document_error)
    app.add_exception_handler(ServiceError, _service_error)
