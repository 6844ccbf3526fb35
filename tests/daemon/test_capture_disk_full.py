"""A disk that fills between a frame's file and its row, for real: the daemon's database and
frames on a small tmpfs. The client gets 507 with the reason, no file is left without a row,
earlier frames are intact, and the daemon captures again once space is freed."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.daemon.conftest import running_daemon, wait_for
from tests.daemon.test_api import all_connected

PAGE = 4096
"""tmpfs allocates whole pages."""


@contextlib.contextmanager
def small_tmpfs(mountpoint: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of `size_mb` at `mountpoint` (root only; the test skips otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)


def fill(volume: Path, leave_bytes: int) -> Path:
    """Take all free space of `volume` but `leave_bytes` with one file; return it."""
    stats = os.statvfs(volume)
    filler = volume / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, stats.f_bavail * stats.f_frsize - leave_bytes)
    finally:
        os.close(fd)
    return filler


def files_and_rows(volume: Path) -> tuple[set[str], set[str]]:
    root = volume / "frames"
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    with contextlib.closing(sqlite3.connect(volume / "nightowl.db")) as db:
        return files, {path for (path,) in db.execute("SELECT path FROM frame")}


def test_a_disk_full_between_file_and_row_answers_507_and_keeps_the_store_consistent(
    tmp_path: Path, catalog_cache: Path
) -> None:
    with small_tmpfs(tmp_path / "volume", size_mb=48) as volume:
        data = tmp_path / "data"  # the daemon's log stays off the small disk
        data.mkdir()
        (volume / "frames").mkdir()
        (data / "frames").symlink_to(volume / "frames")
        database = {"NIGHTOWL_DATABASE_URL": f"sqlite:///{volume / 'nightowl.db'}"}
        with running_daemon(data, catalog_cache, **database) as daemon:
            wait_for(f"{daemon.url}/api/equipment", all_connected)

            def dark() -> httpx.Response:
                body = {"frame_type": "DARK", "exposure_s": 0.2}
                return httpx.post(f"{daemon.url}/api/capture", json=body, timeout=120)

            first = dark().json()[0]
            # Room for one more frame file of the same size, not for the row's commit after it.
            filler = fill(volume, -(-first["size_bytes"] // PAGE) * PAGE + PAGE)
            reply = dark()

            assert reply.status_code == 507, reply.text
            message = reply.json()["detail"]["message"]
            assert "database or disk is full" in message
            assert "file removed" in message
            files, recorded = files_and_rows(volume)
            assert files == recorded == {first["path"]}
            kept = httpx.get(f"{daemon.url}/api/frames/{first['id']}/fits")
            assert hashlib.sha256(kept.content).hexdigest() == first["sha256"]
            # The removed file gave the database room for the error event.
            with contextlib.closing(sqlite3.connect(volume / "nightowl.db")) as db:
                errors = [m for (m,) in db.execute("SELECT message FROM event WHERE level='error'")]
            assert any("database or disk is full" in m for m in errors)

            filler.unlink()
            again = dark()
            assert again.status_code == 201, again.text
            files, recorded = files_and_rows(volume)
            assert files == recorded == {first["path"], again.json()[0]["path"]}
