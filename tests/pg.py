"""A throwaway PostgreSQL server for tests: Debian's binaries, a temporary data directory,
a free loopback port, a database per test module or test (`create_database`).

PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user (its data
directory is given to that user); as anyone else, it runs as the caller. `make test` installs
Debian's `postgresql` when it is missing (the Makefile's `database` target).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from daemon.simulator.rig import free_port

_START_TIMEOUT_S = 60
_PORT_ATTEMPTS = 3
_names = itertools.count(1)


def binaries() -> Path | None:
    """The folder holding `initdb`, `pg_ctl` and `postgres`; None when PostgreSQL is absent."""
    candidates = [Path(p).parent for p in filter(None, [shutil.which("initdb")])]
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if all((folder / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


class PostgresServer:
    """One server: `start()`, then `create_database()` for each fresh database, `stop()`."""

    def __init__(self, bin_dir: Path) -> None:
        self._bin = bin_dir
        # Under /tmp, not pytest's tmp dirs: those are private to root, and the server may
        # run as `postgres`.
        self.root = Path(tempfile.mkdtemp(prefix="nightowl-pg-"))
        self.data_dir = self.root / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0

    def _command(self, *args: str) -> list[str]:
        if self._as_postgres:
            return ["runuser", "-u", "postgres", "--", *args]
        return list(args)

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            self._command(*args), capture_output=True, text=True, timeout=_START_TIMEOUT_S
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chmod(self.root, 0o755)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(
            str(self._bin / "initdb"),
            "-D",
            str(self.data_dir),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        # Another process (an xdist worker's server) may take the free port first: try again
        # on another one.
        for attempt in range(_PORT_ATTEMPTS):
            try:
                self._start_on_port()
                return
            except RuntimeError:
                if attempt == _PORT_ATTEMPTS - 1:
                    raise
                self.port = free_port()

    def _start_on_port(self) -> None:
        # A test server: durability traded for speed (fsync off), loopback only.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self._bin / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            str(_START_TIMEOUT_S),
            "start",
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "nightowl") -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = f"{prefix}_{os.getpid()}_{next(_names)}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(
                str(self._bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
