"""Where charpoet keeps user state, and how it writes files there safely."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def charpoet_home() -> Path:
    """Return ``$CHARPOET_HOME`` if set, else ``~/.cache/charpoet`` (not created here)."""
    env = os.environ.get("CHARPOET_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "charpoet"


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is out (a write may take only part of them)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temp file in the same directory, fsync, rename.

    A crash at any moment leaves either the old file or the new one, never a mix. A failed
    write (a full disk, an I/O error) raises its ``OSError`` and removes the temp file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)  # a full disk may only show here (delayed allocation, NFS)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # never hide the error that matters
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def remove_temp_files(folder: str | Path, name: str = "*") -> list[Path]:
    """Delete the temporary files ``atomic_write_bytes`` leaves in ``folder`` when its process is
    killed (``.NAME.*.tmp``; only those of file ``name`` if given); call it only while no other
    process writes there."""
    stale = [p for p in Path(folder).glob(f".{name}.*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def append_bytes(path: str | Path, data: bytes, sync: bool = False) -> None:
    """Append ``data`` to ``path`` whole or not at all; ``sync`` also fsyncs the file.

    A failed write (a full disk) raises its ``OSError`` after cutting the file back to its
    old length, so a log never ends in half a line.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            _write_all(fd, data)
            if sync:
                os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
