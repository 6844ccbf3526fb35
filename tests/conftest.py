"""Shared fixtures: one real Alpaca simulator server for the session, and its equipment.

Set NIGHTOWL_TEST_SIMULATOR_URL to run the suite against a simulator that is already running
(`nightowl sim`); otherwise the session starts its own rig on a free loopback port. Tests of
the database get a throwaway PostgreSQL server (`postgres`), one per session and xdist worker.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from daemon.simulator.rig import SimulatorRig, simulator_profile
from drivers.alpaca import build_equipment
from drivers.equipment import Equipment
from sequences.astro import configure_astropy_offline
from tests.pg import PostgresServer, binaries


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After the last test of a file that used the worker's simulator, its camera is unbinned
    again, full frame, as a fresh simulator's: a file that bins (the live stack's 4 x 4
    lights) must not change the frame size or plate scale the next file on that worker
    exposes at."""
    url = getattr(item, "funcargs", {}).get("simulator_url")
    if url is None or (nextitem is not None and nextitem.module is item.module):
        return
    camera = f"{url}/api/v1/camera/0"
    with httpx.Client(timeout=10) as client:

        def put(name: str, value: int) -> None:
            reply = client.put(f"{camera}/{name.lower()}", data={name: value})
            assert reply.json()["ErrorNumber"] == 0, f"{name}: {reply.text}"

        width, height = (client.get(f"{camera}/camera{a}size").json()["Value"] for a in "xy")
        for name, value in (("BinX", 1), ("BinY", 1), ("StartX", 0), ("StartY", 0)):
            put(name, value)
        put("NumX", width)
        put("NumY", height)


@pytest.fixture(scope="session", autouse=True)
def astropy_offline() -> None:
    """As the daemon does at startup: astropy never reaches for the network."""
    configure_astropy_offline()


@pytest.fixture(scope="session")
def catalog_cache(pytestconfig: pytest.Config) -> Path:
    """A cache dir that outlives the session, so the star catalog is built once per checkout."""
    assert pytestconfig.cache is not None
    return Path(pytestconfig.cache.mkdir("nightowl-cache"))


@pytest.fixture(scope="session")
def simulator_url(tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path) -> Iterator[str]:
    external = os.environ.get("NIGHTOWL_TEST_SIMULATOR_URL")
    if external:
        yield external.rstrip("/")
        return
    with SimulatorRig(run_dir=tmp_path_factory.mktemp("simulator"), cache_dir=catalog_cache) as rig:
        yield rig.url


@pytest.fixture(scope="session")
async def equipment(simulator_url: str) -> AsyncIterator[Equipment]:
    """The simulated observatory, connected. Tests set the state they need (pointing, parked)."""
    eq = build_equipment(simulator_profile(simulator_url))
    failures = {role: e for role, e in (await eq.connect_all()).items() if e is not None}
    assert not failures, failures
    yield eq
    await eq.disconnect_all()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session; `create_database()` gives each user its own
    database. Skipped only where Debian's `postgresql` is not installed (`make test`
    installs it)."""
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (initdb, pg_ctl, postgres): make database")
    server = PostgresServer(bin_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend: a SQLite file, a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nightowl.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()
