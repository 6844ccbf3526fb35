"""Property-based tests of the whole API from its OpenAPI document (schemathesis): seeded,
a bounded number of examples per operation, against the real daemon under uvicorn. Every
answer must be no server error and a status the document lists for that operation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from daemon.api.schemas.autofocus import AutofocusCreate
from daemon.api.schemas.equipment import CalibratorOn, SwitchSet
from daemon.api.schemas.frames import CaptureCreate
from daemon.api.schemas.imaging import CenterCreate, FlatsCreate, LoopCreate
from daemon.app import create_app
from daemon.settings import Settings
from tests.daemon.conftest import RunningDaemon, running_daemon, wait_for
from tests.daemon.test_api import all_connected

CHECKS = [not_a_server_error, status_code_conformance]
FUZZ = settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
"""Seeded (derandomized) and bounded: 15 examples per operation, valid and invalid mixed."""

SCHEMA = schemathesis.openapi.from_dict(create_app(Settings(host="127.0.0.1")).openapi())
OPERATIONS = {result.ok().label: result.ok() for result in SCHEMA.get_all_operations()}

# Valid requests here move devices for real: an exposure of up to an hour (capture), a focus
# curve (autofocus), the flat panel and the power switches of the session's simulator, which
# later tests image through. They are fuzzed only with bodies their model refuses (a mutated
# type such as "5" for a number can still be valid), and must answer 4xx before any device moves.
INVALID_ONLY: dict[str, type[BaseModel]] = {
    "POST /api/capture": CaptureCreate,
    "POST /api/autofocus": AutofocusCreate,
    "POST /api/equipment/calibrator/on": CalibratorOn,
    "POST /api/equipment/switch": SwitchSet,
    # A loop or the flats wizard holds the camera (flats close the cover), a centering slews
    # the mount; covered in test_imaging_ui.py.
    "POST /api/imaging/loop": LoopCreate,
    "POST /api/imaging/flats": FlatsCreate,
    "POST /api/imaging/center": CenterCreate,
}
NOT_FUZZED = {
    # Move the roof, the dome and the dust cover (no body to make invalid), which later tests
    # image through; covered in test_observatory_api.py.
    "POST /api/equipment/roof/open",
    "POST /api/equipment/roof/close",
    "POST /api/equipment/dome/park",
    "POST /api/equipment/cover/open",
    "POST /api/equipment/cover/close",
    "POST /api/equipment/calibrator/off",
    # Drop or re-make every device connection the other operations rely on; covered in
    # test_api.py.
    "POST /api/equipment/connect",
    "POST /api/equipment/disconnect",
    # Server-sent event streams stay open by design (10 s, or a run's whole life); the bounds
    # of their parameters are tested in test_no_server_errors.py.
    "GET /api/events/stream",
    "GET /api/runs/{run_id}/stream",
}


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path, simulator_url: str
) -> Iterator[RunningDaemon]:
    env = {"NIGHTOWL_SIMULATOR_URL": simulator_url, "NIGHTOWL_PROCESS_AFTER_RUN": "false"}
    with running_daemon(tmp_path_factory.mktemp("fuzz-daemon"), catalog_cache, **env) as d:
        wait_for(f"{d.url}/api/equipment", all_connected)
        yield d


def test_the_served_document_is_the_one_fuzzed(daemon: RunningDaemon) -> None:
    assert httpx.get(f"{daemon.url}/openapi.json").json() == SCHEMA.raw_schema


@pytest.mark.parametrize("label", sorted(OPERATIONS.keys() - NOT_FUZZED))
def test_every_answer_is_no_server_error_and_a_documented_status(
    daemon: RunningDaemon, label: str
) -> None:
    operation = OPERATIONS[label]
    if label in INVALID_ONLY:
        model = INVALID_ONLY[label]
        cases = operation.as_strategy(GenerationMode.NEGATIVE).filter(
            lambda case: refuses(model, case.body)
        )
    else:
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

    @FUZZ
    @given(case=cases)
    def answers(case: schemathesis.Case) -> None:
        response = case.call_and_validate(base_url=daemon.url, checks=CHECKS, timeout=30)
        if label in INVALID_ONLY:
            assert 400 <= response.status_code < 500, response.text

    answers()


def refuses(model: type[BaseModel], body: object) -> bool:
    """Whether the API's own model refuses this body (as the JSON that is sent)."""
    try:
        model.model_validate_json(json.dumps(body))
    except (TypeError, ValueError):  # pydantic's ValidationError is a ValueError
        return True
    return False
