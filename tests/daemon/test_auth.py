"""Tokens, roles and login against the real daemon under uvicorn (on loopback, with tokens set),
and the refusal to listen beyond loopback without one."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from daemon.access import Access, is_loopback
from daemon.log_redaction import REDACTED, RedactSecrets
from daemon.settings import Settings
from tests.daemon.conftest import RunningDaemon, running_daemon
from tests.daemon.test_sequences_api import night

CONTROL = "control-3f9a1c7e5b2d4a60"
READ = "read-8e1b6d2c9f4a7035"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[RunningDaemon]:
    """One daemon for the module, with both tokens and no devices (a bare profile starts no
    simulators, so it is up in a second or two)."""
    data_dir = tmp_path_factory.mktemp("auth-daemon")
    profile = data_dir / "bare.yaml"
    profile.write_text("name: bare-pier\n")
    with running_daemon(
        data_dir,
        catalog_cache,
        NIGHTOWL_CONTROL_TOKEN=CONTROL,
        NIGHTOWL_READ_TOKEN=READ,
        NIGHTOWL_EQUIPMENT_PROFILE=str(profile),
        NIGHTOWL_CONNECT_ON_START="false",
    ) as running:
        yield running


def test_without_credentials_only_health_docs_and_me_answer(daemon: RunningDaemon) -> None:
    for path in ("/api/equipment", "/api/sessions", "/api/templates", "/api/runs"):
        reply = httpx.get(f"{daemon.url}{path}")
        assert reply.status_code == 401, path
        assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert httpx.post(f"{daemon.url}/api/equipment/connect").status_code == 401
    assert httpx.get(f"{daemon.url}/api/runs/1/stream").status_code == 401
    health = httpx.get(f"{daemon.url}/api/health")
    assert health.status_code == 200
    assert set(health.json()) == {
        "status",
        "version",
        "database",
        "equipment_profile",
        "timezone",
        "event_loop_stalls",
    }
    assert httpx.get(f"{daemon.url}/docs").status_code == 200
    assert httpx.get(f"{daemon.url}/openapi.json").status_code == 200
    me = httpx.get(f"{daemon.url}/api/auth/me").json()
    assert me == {"role": "none", "auth_required": True}


def test_read_token_may_look_but_not_change(daemon: RunningDaemon) -> None:
    assert httpx.get(f"{daemon.url}/api/equipment", headers=bearer(READ)).status_code == 200
    assert httpx.get(f"{daemon.url}/api/sessions", headers=bearer(READ)).status_code == 200
    refused = httpx.post(
        f"{daemon.url}/api/templates", json={"document": night(1)}, headers=bearer(READ)
    )
    assert refused.status_code == 403
    assert "control role" in refused.json()["detail"]
    me = httpx.get(f"{daemon.url}/api/auth/me", headers=bearer(READ)).json()
    assert me == {"role": "read", "auth_required": True}


def test_control_token_may_change(daemon: RunningDaemon) -> None:
    created = httpx.post(
        f"{daemon.url}/api/templates", json={"document": night(1)}, headers=bearer(CONTROL)
    )
    assert created.status_code == 201, created.text
    template = created.json()["id"]
    deleted = httpx.delete(f"{daemon.url}/api/templates/{template}", headers=bearer(CONTROL))
    assert deleted.status_code == 204


def test_a_wrong_token_is_refused(daemon: RunningDaemon) -> None:
    reply = httpx.get(f"{daemon.url}/api/equipment", headers=bearer(READ + "x"))
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    login = httpx.post(f"{daemon.url}/api/auth/login", json={"token": "not-the-token-at-all"})
    assert login.status_code == 401


def test_login_sets_a_session_cookie_that_logout_forgets(daemon: RunningDaemon) -> None:
    with httpx.Client(base_url=daemon.url) as browser:
        login = browser.post("/api/auth/login", json={"token": READ})
        assert login.status_code == 200
        assert login.json() == {"role": "read"}
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        assert READ not in cookie
        session_id = browser.cookies["nightowl_session"]

        assert browser.get("/api/sessions").status_code == 200
        assert browser.get("/api/auth/me").json() == {"role": "read", "auth_required": True}
        # A browser's EventSource sends no headers, only the cookie.
        with browser.stream("GET", "/api/events/stream") as events:
            assert events.status_code == 200
            assert next(events.iter_lines()) == "retry: 1000"
        assert browser.post("/api/equipment/connect").status_code == 403

        assert browser.post("/api/auth/logout").status_code == 204
        assert "nightowl_session" not in browser.cookies
    # The old cookie, replayed, no longer opens anything: the daemon forgot the session.
    replayed = httpx.get(f"{daemon.url}/api/sessions", cookies={"nightowl_session": session_id})
    assert replayed.status_code == 401


def test_a_token_in_the_query_string_does_not_authenticate(daemon: RunningDaemon) -> None:
    for name in ("token", "access_token", "api_key"):
        reply = httpx.get(f"{daemon.url}/api/equipment", params={name: CONTROL})
        assert reply.status_code == 401, name


def test_the_log_holds_no_token(daemon: RunningDaemon) -> None:
    """After requests carrying both tokens every way a client might send them."""
    for token in (CONTROL, READ):
        httpx.get(f"{daemon.url}/api/equipment", headers=bearer(token))
        httpx.post(f"{daemon.url}/api/auth/login", json={"token": token})
        httpx.get(f"{daemon.url}/api/equipment", params={"token": token})
        httpx.get(f"{daemon.url}/api/equipment", params={"q": token})
    log = daemon.log()
    assert "GET /api/equipment" in log  # the access log is on, so the test can see it
    assert REDACTED in log
    assert CONTROL not in log
    assert READ not in log


def run_serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`nightowl serve` with only these settings; it must stop before it listens."""
    return subprocess.run(
        [sys.executable, "-m", "daemon", "serve"],
        env={"PATH": "/usr/bin:/bin", "NIGHTOWL_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_serve_beyond_loopback_without_a_control_token_refuses_to_start(tmp_path: Path) -> None:
    result = run_serve(tmp_path, NIGHTOWL_HOST="0.0.0.0")
    assert result.returncode == 2
    assert "NIGHTOWL_CONTROL_TOKEN" in result.stderr
    assert "secrets.token_urlsafe" in result.stderr
    assert "Uvicorn running" not in result.stdout + result.stderr


def test_a_short_token_is_refused_naming_its_setting(tmp_path: Path) -> None:
    result = run_serve(tmp_path, NIGHTOWL_READ_TOKEN="short-secret")
    assert result.returncode == 2
    assert "NIGHTOWL_READ_TOKEN" in result.stderr
    assert "at least 16 characters" in result.stderr
    assert "short-secret" not in result.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("10.0.0.1", False),
        ("observatory.local", False),
        ("", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_auth_is_required_once_a_token_is_set_or_beyond_loopback() -> None:
    assert not Settings(host="127.0.0.1").auth_required
    assert Settings(host="127.0.0.1", read_token=READ).auth_required
    beyond = Settings(host="0.0.0.0")
    assert beyond.auth_required
    assert "NIGHTOWL_CONTROL_TOKEN" in (beyond.exposure_problem() or "")
    assert Settings(host="0.0.0.0", control_token=CONTROL).exposure_problem() is None
    with pytest.raises(ValidationError, match="must differ"):
        Settings(control_token=CONTROL, read_token=CONTROL)


def test_a_session_expires() -> None:
    now = [1000.0]
    access = Access(
        Settings(control_token=CONTROL).control_token,
        None,
        required=True,
        session_lifetime_s=60.0,
        clock=lambda: now[0],
    )
    assert access.role_of_token(READ) is None
    role = access.role_of_token(CONTROL)
    assert role == "control"
    session_id = access.start_session(role)
    now[0] += 59.0
    assert access.role_of_session(session_id) == "control"
    now[0] += 2.0
    assert access.role_of_session(session_id) is None


def test_log_redaction_keeps_the_access_log_format() -> None:
    """uvicorn's access formatter unpacks the record's arguments, so they stay a 5-tuple."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/api/equipment?limit=5&token={CONTROL}", "1.1", 401),
        None,
    )
    assert RedactSecrets([CONTROL]).filter(record)
    assert isinstance(record.args, tuple)
    assert len(record.args) == 5
    assert record.getMessage() == (
        f'127.0.0.1:5000 - "GET /api/equipment?limit=5&token={REDACTED} HTTP/1.1" 401'
    )
