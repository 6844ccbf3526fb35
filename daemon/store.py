"""Durable frame files: nothing the camera took is lost, nothing half-written is kept.

A frame is written to a temporary file in its final folder, flushed to disk (fsync), renamed
into place atomically, and the folder is fsynced too (`processing.io.write_atomic`); only then
does the caller commit the database row. A commit that fails (the database's disk is full)
makes the caller `remove` the file again, so no file is left without a row. A crash between
the rename and the commit leaves a complete file without a row, which `scan` finds at the next
start so it can be registered; a crash before the rename leaves only a temporary file (its name
ends in `processing.io.TEMP_SUFFIX`), which `scan` removes (that frame was never complete).
"""

from __future__ import annotations

import errno
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from processing.io import TEMP_SUFFIX, write_atomic

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """A frame file could not be written (disk full, read-only, no permission).

    Stop capturing: later frames would fail the same way. Frames written before are intact.
    """


class FrameNotRecorded(StoreError):
    """The database refused a frame's row (disk full, read-only, locked): the frame is not
    kept, its file is removed. Free space where the database lives, then capture again;
    frames recorded before are intact."""


@dataclass(frozen=True)
class StoredFile:
    path: PurePosixPath
    """Relative to the frames root."""
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class ScanResult:
    unregistered: list[StoredFile]
    removed_partials: list[PurePosixPath]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FrameStore:
    """Frame files under one root folder. Methods block: call them off the event loop."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def absolute(self, relative: PurePosixPath | str) -> Path:
        """The file's absolute path; `ValueError` if `relative` would leave the root."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"path {relative} leaves the frames root")
        return path

    def write(self, relative: PurePosixPath, content: bytes) -> StoredFile:
        """Write `content` durably at `relative` (or a numbered variant if that name is taken)."""
        target = self.absolute(relative)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target = _free_name(target)
            write_atomic(target, content)
        except OSError as e:
            reason = errno.errorcode.get(e.errno or 0, "error")
            raise StoreError(
                f"cannot write frame {relative} under {self.root}: {e.strerror} ({reason})"
            ) from e
        stored = StoredFile(
            PurePosixPath(target.relative_to(self.root).as_posix()),
            hashlib.sha256(content).hexdigest(),
            len(content),
        )
        log.info("frame written: %s (%d bytes)", stored.path, stored.size_bytes)
        return stored

    def remove(self, relative: PurePosixPath) -> None:
        """Delete the frame file at `relative` (one whose row could not be committed);
        `StoreError` when it cannot be deleted."""
        try:
            self.absolute(relative).unlink()
        except OSError as e:
            raise StoreError(
                f"cannot remove frame {relative} under {self.root}: {e.strerror}"
            ) from e
        log.info("frame removed: %s", relative)

    def scan(self, registered: set[str]) -> ScanResult:
        """Find complete frame files without a row; remove partial files of interrupted writes."""
        unregistered: list[StoredFile] = []
        removed: list[PurePosixPath] = []
        if not self.root.exists():
            return ScanResult(unregistered, removed)
        for path in sorted(self.root.rglob("*")):
            if not path.is_file():
                continue
            relative = PurePosixPath(path.relative_to(self.root).as_posix())
            if path.name.endswith(TEMP_SUFFIX):
                path.unlink()
                removed.append(relative)
                log.warning("removed the partial file of an interrupted write: %s", relative)
            elif path.suffix == ".fits" and str(relative) not in registered:
                unregistered.append(StoredFile(relative, sha256_of(path), path.stat().st_size))
        return ScanResult(unregistered, removed)


def _free_name(target: Path) -> Path:
    if not target.exists():
        return target
    for n in range(2, 10_000):
        candidate = target.with_name(f"{target.stem}_{n}{target.suffix}")
        if not candidate.exists():
            return candidate
    raise OSError(errno.EEXIST, "no free file name", str(target))
