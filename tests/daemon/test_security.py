"""Web pages of other sites and token guessers against the real daemon under uvicorn: the Host
check, the Origin check, the per-client limit on wrong tokens and the roles in the OpenAPI
document; the limit's clock and the settings' forms without a daemon.

Linux answers on all of 127.0.0.0/8, so a test client binds its own source address there and
the daemon sees a separate client per address.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import ValidationError

from daemon.access import (
    FAILED_TOKEN_DELAY_S,
    LOCKOUT_S,
    MAX_FAILURES,
    FailureLimit,
    client_key,
    normal_origin,
)
from daemon.api.guards import MAX_BODY_BYTES, host_matches, host_of
from daemon.settings import Settings
from tests.daemon.conftest import RunningDaemon, bare_daemon
from tests.daemon.test_sequences_api import night

CONTROL = "control-5d8e2a9b1c7f4036"
PLANETARIUM = "http://planetarium.example:8080"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def from_address(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def port_of(daemon: RunningDaemon) -> int:
    port = urlsplit(daemon.url).port
    assert port is not None
    return port


@pytest.fixture(scope="module")
def open_daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[RunningDaemon]:
    """The default setup: loopback, no token; one page of another site is trusted."""
    yield from bare_daemon(
        tmp_path_factory, catalog_cache, "open-daemon", NIGHTOWL_ALLOWED_ORIGINS=PLANETARIUM
    )


@pytest.fixture(scope="module")
def guarded_daemon(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[RunningDaemon]:
    yield from bare_daemon(
        tmp_path_factory, catalog_cache, "guarded-daemon", NIGHTOWL_CONTROL_TOKEN=CONTROL
    )


def test_a_rebound_host_name_is_refused_and_starts_no_run(open_daemon: RunningDaemon) -> None:
    """What a page on evil.example sends once its name points at 127.0.0.1."""
    url, port = open_daemon.url, port_of(open_daemon)
    start = {"document": night(1), "ignore_issues": True}
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}"):
        refused = httpx.post(f"{url}/api/runs", json=start, headers={"Host": host})
        assert refused.status_code == 400, host
        assert "NIGHTOWL_ALLOWED_HOSTS" in refused.json()["detail"]
    # Reads and the web UI too: a rebinding page could read everything it is answered.
    for path in ("/api/frames/latest", "/"):
        assert httpx.get(f"{url}{path}", headers={"Host": "evil.example"}).status_code == 400
    assert httpx.get(f"{url}/api/runs").json() == []

    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST."):
        assert httpx.get(f"{url}/api/health", headers={"Host": host}).status_code == 200, host
    started = httpx.post(f"{url}/api/runs", json=start, headers={"Host": f"localhost:{port}"})
    assert started.status_code == 201, started.text


def test_any_host_name_once_a_token_guards_the_api(guarded_daemon: RunningDaemon) -> None:
    reply = httpx.get(
        f"{guarded_daemon.url}/api/equipment",
        headers={"Host": "observatory.example", **bearer(CONTROL)},
    )
    assert reply.status_code == 200


def test_a_page_of_another_site_may_not_change_anything(open_daemon: RunningDaemon) -> None:
    url = open_daemon.url
    before = httpx.get(f"{url}/api/templates").json()
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": f"http://127.0.0.1:{port_of(open_daemon) + 1}"},  # another local server
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Sec-Fetch-Site": "cross-site"},
    ):
        refused = httpx.post(f"{url}/api/templates", json={"document": night(1)}, headers=headers)
        assert refused.status_code == 403, headers
        assert "NIGHTOWL_ALLOWED_ORIGINS" in refused.json()["detail"]
        assert httpx.post(f"{url}/api/equipment/connect", headers=headers).status_code == 403
    assert httpx.get(f"{url}/api/templates").json() == before
    # Reads stay open: without CORS a foreign page cannot see the answer anyway.
    read = httpx.get(f"{url}/api/templates", headers={"Origin": "http://evil.example"})
    assert read.status_code == 200


def test_the_daemons_own_pages_and_allowed_origins_may_change(open_daemon: RunningDaemon) -> None:
    url, port = open_daemon.url, port_of(open_daemon)
    for headers in (
        {},  # curl, the CLI, scripts
        {"Origin": url, "Sec-Fetch-Site": "same-origin"},
        {"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"},
        {"Origin": PLANETARIUM, "Sec-Fetch-Site": "cross-site"},
    ):
        created = httpx.post(f"{url}/api/templates", json={"document": night(1)}, headers=headers)
        assert created.status_code == 201, (headers, created.text)
        template = created.json()["id"]
        assert httpx.delete(f"{url}/api/templates/{template}", headers=headers).status_code == 204


def test_a_body_beyond_the_limit_is_refused_413(open_daemon: RunningDaemon) -> None:
    """Declared too large, or streamed past the limit without a length: 413 either way, and
    nothing is created; a body under the limit reaches the route (422 for its content)."""
    url = f"{open_daemon.url}/api/templates"
    big = b'{"name": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}'
    declared = httpx.post(url, content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413, declared.text
    assert "4 MiB" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    streamed = httpx.post(url, content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413, streamed.text
    assert httpx.get(url).json() == []
    small = httpx.post(url, content=b'{"name": "x"}', headers={"Content-Type": "application/json"})
    assert small.status_code == 422


def test_wrong_bearer_tokens_lock_the_client_out(guarded_daemon: RunningDaemon) -> None:
    url = guarded_daemon.url
    with from_address("127.0.0.3") as guesser, from_address("127.0.0.4") as neighbour:
        started = time.monotonic()
        codes = [
            guesser.get(f"{url}/api/equipment", headers=bearer(f"wrong-token-{i:08d}")).status_code
            for i in range(MAX_FAILURES + 2)
        ]
        elapsed_s = time.monotonic() - started
        assert codes == [401] * MAX_FAILURES + [429] * 2
        assert elapsed_s >= MAX_FAILURES * FAILED_TOKEN_DELAY_S

        # Locked out, even the right token is not looked at, wherever it is sent.
        locked = guesser.get(f"{url}/api/equipment", headers=bearer(CONTROL))
        assert locked.status_code == 429
        assert 0 < int(locked.headers["Retry-After"]) <= LOCKOUT_S
        assert guesser.post(f"{url}/api/auth/login", json={"token": CONTROL}).status_code == 429
        assert guesser.get(f"{url}/api/auth/me", headers=bearer(CONTROL)).status_code == 429

        wrong = neighbour.get(f"{url}/api/equipment", headers=bearer("wrong-token-neighbour"))
        assert wrong.status_code == 401
        assert neighbour.get(f"{url}/api/equipment", headers=bearer(CONTROL)).status_code == 200

    events = httpx.get(f"{url}/api/events", params={"source": "auth"}, headers=bearer(CONTROL))
    [event] = events.json()
    assert event["level"] == "warning"
    assert event["data"]["client"] == "127.0.0.3"
    assert "127.0.0.3 locked out" in event["message"]
    log = guarded_daemon.log()
    assert "127.0.0.3 locked out" in log
    assert "wrong-token-" not in log


async def _logins(address: str, tokens: list[str], url: str) -> list[int]:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(transport=transport, timeout=60) as client:
        replies = await asyncio.gather(
            *(client.post(f"{url}/api/auth/login", json={"token": t}) for t in tokens)
        )
    return [r.status_code for r in replies]


def test_concurrent_wrong_logins_are_held_to_the_limit(guarded_daemon: RunningDaemon) -> None:
    """The delay is per request: only the count per client stops a burst of guesses."""
    tokens = [f"wrong-token-{i:08d}" for i in range(100)]
    codes = asyncio.run(_logins("127.0.0.5", tokens, guarded_daemon.url))
    assert codes.count(401) == MAX_FAILURES
    assert codes.count(429) == len(tokens) - MAX_FAILURES


def test_a_right_token_clears_the_count(guarded_daemon: RunningDaemon) -> None:
    wrong = [f"wrong-token-{i:08d}" for i in range(MAX_FAILURES - 1)]
    url = guarded_daemon.url
    assert asyncio.run(_logins("127.0.0.6", wrong, url)) == [401] * len(wrong)
    assert asyncio.run(_logins("127.0.0.6", [CONTROL], url)) == [200]
    assert asyncio.run(_logins("127.0.0.6", wrong, url)) == [401] * len(wrong)


def test_the_openapi_document_names_each_routes_role(open_daemon: RunningDaemon) -> None:
    schema = httpx.get(f"{open_daemon.url}/openapi.json").json()
    start_run = schema["paths"]["/api/runs"]["post"]
    assert start_run["x-nightowl-role"] == "control"
    assert "Role: control" in start_run["description"]
    assert {"401", "403", "429"} <= set(start_run["responses"])
    assert start_run["security"] == [{"bearerToken": []}, {"sessionCookie": []}]
    frame = schema["paths"]["/api/frames/{frame_id}"]["get"]
    assert frame["x-nightowl-role"] == "read"
    assert {"401", "429"} <= set(frame["responses"])
    assert "403" not in frame["responses"]
    health = schema["paths"]["/api/health"]["get"]
    assert health["x-nightowl-role"] == "none"
    assert health["security"] == []
    login = schema["paths"]["/api/auth/login"]["post"]
    assert {"401", "429"} <= set(login["responses"])
    assert set(schema["components"]["securitySchemes"]) == {"bearerToken", "sessionCookie"}
    roles = {
        op["x-nightowl-role"]
        for path, ops in schema["paths"].items()
        if path.startswith("/api/")
        for op in ops.values()
    }
    assert roles == {"read", "control", "none"}


def test_a_lockout_ends_after_its_window() -> None:
    now = [1000.0]
    limit = FailureLimit(clock=lambda: now[0])
    assert not any(limit.failed("203.0.113.7") for _ in range(MAX_FAILURES - 1))
    assert limit.failed("203.0.113.7")
    assert limit.locked_for("203.0.113.7") == LOCKOUT_S
    assert limit.locked_for("203.0.113.8") == 0
    now[0] += LOCKOUT_S - 1
    assert limit.locked_for("203.0.113.7") == 1.0
    now[0] += 1
    assert limit.locked_for("203.0.113.7") == 0
    assert not limit.failed("203.0.113.7")  # the count started again


def test_failures_older_than_the_window_are_forgotten() -> None:
    now = [0.0]
    limit = FailureLimit(window_s=300.0, clock=lambda: now[0])
    for _ in range(MAX_FAILURES - 1):
        limit.failed("a")
    now[0] += 300.0
    assert not any(limit.failed("a") for _ in range(MAX_FAILURES - 1))
    assert limit.failed("a")


def test_a_right_token_forgets_the_failures() -> None:
    limit = FailureLimit(clock=lambda: 0.0)
    for _ in range(MAX_FAILURES - 1):
        limit.failed("a")
    limit.succeeded("a")
    assert not any(limit.failed("a") for _ in range(MAX_FAILURES - 1))


def test_only_the_most_recent_clients_are_remembered() -> None:
    limit = FailureLimit(max_failures=1, max_clients=3, clock=lambda: 0.0)
    assert limit.failed("a")
    limit.failed("b")
    limit.failed("c")
    assert limit.locked_for("a") > 0
    limit.failed("d")
    assert limit.locked_for("a") == 0
    assert limit.locked_for("d") > 0


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::99", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unknown", "unknown"),
    ],
)
def test_failures_count_per_address_and_ipv6_per_64(address: str, key: str) -> None:
    assert client_key(address) == key


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("127.0.0.1:8000", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("[0:0::1]", "::1"),
        ("LocalHost.:8000", "localhost"),
        ("observatory.local", "observatory.local"),
        ("", None),
        ("evil.example:80:80", None),
        ("evil.example/path", None),
        ("user@127.0.0.1", None),
    ],
)
def test_host_header_forms(header: str, host: str | None) -> None:
    assert host_of(header) == host


def test_host_patterns() -> None:
    assert host_matches("obs.example.org", ["*.example.org"])
    assert not host_matches("example.org", ["*.example.org"])
    assert not host_matches("evilexample.org", ["*.example.org"])
    assert host_matches("anything", ["*"])


@pytest.mark.parametrize(
    ("origin", "normal"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("HTTPS://Obs.Example", "https://obs.example:443"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
        ("null", None),
        ("file://", None),
        ("http://obs.example/page", None),
        ("http://obs.example:99999", None),
    ],
)
def test_origin_forms(origin: str, normal: str | None) -> None:
    assert normal_origin(origin) == normal


def test_allowed_hosts_and_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTOWL_ALLOWED_HOSTS", "observatory.local, 192.168.1.20,*.Example.org")
    monkeypatch.setenv("NIGHTOWL_ALLOWED_ORIGINS", '["https://obs.example:8443"]')
    monkeypatch.setenv("NIGHTOWL_PROCESSING_ROOTS", "/srv/nights, /srv/archive")
    settings = Settings()
    assert settings.processing_roots == [Path("/srv/nights"), Path("/srv/archive")]
    assert settings.allowed_hosts == ["observatory.local", "192.168.1.20", "*.example.org"]
    assert settings.allowed_origins == ["https://obs.example:8443"]
    assert settings.resolved_allowed_hosts == [
        "localhost",
        "127.0.0.1",
        "::1",
        "observatory.local",
        "192.168.1.20",
        "*.example.org",
    ]


def test_the_default_hosts_are_the_loopback_names_until_a_token_is_set() -> None:
    assert Settings().resolved_allowed_hosts == ["localhost", "127.0.0.1", "::1"]
    assert Settings(host="127.0.0.2").resolved_allowed_hosts[-1] == "127.0.0.2"
    assert Settings(control_token=CONTROL).resolved_allowed_hosts == ["*"]
    assert Settings(host="0.0.0.0", control_token=CONTROL).resolved_allowed_hosts == ["*"]
    chosen = Settings(control_token=CONTROL, allowed_hosts=["obs.example"])
    assert chosen.resolved_allowed_hosts == ["localhost", "127.0.0.1", "::1", "obs.example"]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("allowed_hosts", "observatory.local:8000"),
        ("allowed_hosts", "http://observatory.local"),
        ("allowed_hosts", "obs*.example.org"),
        ("allowed_origins", "observatory.local"),
        ("allowed_origins", "https://obs.example/app"),
        ("allowed_origins", "[not json"),
    ],
)
def test_a_bad_value_is_refused_naming_its_setting(setting: str, value: str) -> None:
    with pytest.raises(ValidationError, match=f"NIGHTOWL_{setting.upper()}"):
        Settings(**{setting: value})
