"""Durable frame files: atomic writes, collision-free names, recovery scan, clear failures."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

import pytest

from daemon.store import FrameStore, StoreError
from tests.helpers import read_only_folder


def test_write_is_complete_and_checksummed(tmp_path: Path) -> None:
    store = FrameStore(tmp_path)
    content = os.urandom(100_000)
    stored = store.write(PurePosixPath("M31/2026-11-21/LIGHT/a.fits"), content)
    assert stored.path == PurePosixPath("M31/2026-11-21/LIGHT/a.fits")
    assert (tmp_path / stored.path).read_bytes() == content
    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    assert stored.size_bytes == len(content)
    assert [p.name for p in (tmp_path / "M31/2026-11-21/LIGHT").iterdir()] == ["a.fits"]


def test_an_existing_name_is_never_overwritten(tmp_path: Path) -> None:
    store = FrameStore(tmp_path)
    first = store.write(PurePosixPath("x/a.fits"), b"first")
    second = store.write(PurePosixPath("x/a.fits"), b"second")
    assert second.path == PurePosixPath("x/a_2.fits")
    assert (tmp_path / first.path).read_bytes() == b"first"


def test_a_path_leaving_the_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="leaves the frames root"):
        FrameStore(tmp_path / "root").write(PurePosixPath("../outside.fits"), b"x")
    assert not (tmp_path / "outside.fits").exists()


def test_read_only_folder_gives_store_error_and_leaves_nothing(tmp_path: Path) -> None:
    with read_only_folder(tmp_path / "ro"), pytest.raises(StoreError) as caught:
        FrameStore(tmp_path).write(PurePosixPath("ro/a.fits"), b"x")
    assert "cannot write frame ro/a.fits" in str(caught.value)
    assert list((tmp_path / "ro").iterdir()) == []


def test_scan_finds_unrecorded_files_and_removes_partials(tmp_path: Path) -> None:
    store = FrameStore(tmp_path)
    known = store.write(PurePosixPath("n/known.fits"), b"known")
    orphan = store.write(PurePosixPath("n/orphan.fits"), b"orphan")
    partial = tmp_path / "n" / ".crashed.fits.1234abcd.partial"
    partial.write_bytes(b"half")
    result = store.scan({str(known.path)})
    assert [f.path for f in result.unregistered] == [orphan.path]
    assert result.unregistered[0].sha256 == orphan.sha256
    assert result.removed_partials == [PurePosixPath("n/.crashed.fits.1234abcd.partial")]
    assert not partial.exists()


def test_remove_deletes_a_frame_file_and_reports_one_it_cannot(tmp_path: Path) -> None:
    store = FrameStore(tmp_path)
    kept = store.write(PurePosixPath("n/kept.fits"), b"kept")
    gone = store.write(PurePosixPath("n/gone.fits"), b"gone")
    store.remove(gone.path)
    assert [p.name for p in (tmp_path / "n").iterdir()] == ["kept.fits"]
    assert (tmp_path / kept.path).read_bytes() == b"kept"
    with pytest.raises(StoreError, match=r"cannot remove frame n/gone\.fits"):
        store.remove(gone.path)
