"""Input types shared by every route and body: ids, cursors and pages within what SQLite can
hold, so an out-of-range number is a 422 naming the parameter, never a database error."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

INT64_MAX = 2**63 - 1
"""SQLite integers are signed 64-bit: a larger id, cursor or offset cannot name a row."""

RecordId = Annotated[int, Field(ge=1, le=INT64_MAX, description="a record's id")]
AfterId = Annotated[int, Field(ge=0, le=INT64_MAX, description="only records after this id")]
Offset = Annotated[int, Field(ge=0, le=INT64_MAX, description="records to skip")]
PageLimit = Annotated[int, Field(ge=1, le=1000, description="at most this many records")]


def _strict_json(value: Any) -> Any:
    """Refuses what strict JSON cannot carry: NaN and Infinity (1e309 overflows to Infinity)
    and text with lone surrogates (not UTF-8)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a JSON number: give a finite number")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError("text with a lone surrogate is not UTF-8: send valid text") from e
    elif isinstance(value, dict):
        for key, item in value.items():
            _strict_json(key)
            _strict_json(item)
    elif isinstance(value, list):
        for item in value:
            _strict_json(item)
    return value


JsonDocument = Annotated[dict[str, Any], AfterValidator(_strict_json)]
"""A free-form document (template, plan, run) that can be stored and served back as JSON;
its fields are checked by the sequence engine."""


class RequestBody(BaseModel):
    """A request body: unknown fields, NaN and Infinity are refused (422 naming the field)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
