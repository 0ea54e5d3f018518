"""Runs at any fsspec URL: train in a local staging directory, mirror it to the remote one.

    --checkpoint-path s3://bucket/runs/x        (or gs://, memory://, file:///abs/path, ...)
          |  pull(): download the run's files             ^  push(): upload what changed,
          v  (temp file + rename each)                    |  (temp name + mv each), config.json last
    $CHARPOET_HOME/remote-runs/<sha256(url)[:16]>/        training reads and writes here (a RunDir)
      .charpoet-sync.json   size, mtime and inode of every file as last pushed or pulled

A local path is its own location: ``local`` is the path and pull/push do nothing.

Atomicity. Locally every staged file is replaced by rename, as ``checkpoint.py`` does. Remotely
each file is uploaded to ``.NAME.<random>.tmp`` in the same folder and then moved over ``NAME``
with ``fs.mv``, so a reader never sees a half-written file under its final name. On local and
memory file systems the move is a rename; on object stores (S3, GCS, Azure) it is a server-side
copy and delete, which is still all-or-nothing for the final key, as a single PUT is. Uploads go
in a fixed order, ``last.safetensors`` and then ``config.json`` last, so a run only "exists"
remotely once everything it refers to is there. A failed upload raises ``CheckpointError``,
removes its temporary object and keeps the staged run as it is: the next push retries.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import secrets
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from charpoet.corpus.cache import atomic_write_bytes, charpoet_home
from charpoet.corpus.remote import is_url, url_to_fs
from charpoet.errors import CheckpointError, CorpusError
from charpoet.runfiles import CONFIG, LAST, RUN_FILES, RUN_FOLDERS, SYNCED_FILES, SYNCED_FOLDERS

# push() and pull() move the synced files and folders of charpoet.runfiles; remove() deletes every run file.
SYNC_FILE = ".charpoet-sync.json"
is_remote = is_url  # scheme://... URLs (file:// included) and fsspec chains (a::b://)


def read_only_staging() -> Path:
    """Staging root for commands that only read a remote run (generate, chat, attribute), so they
    never replace files under a ``charpoet train`` writing to the same URL."""
    return charpoet_home() / "remote-runs-read"


def readable_run(path: str | os.PathLike[str]) -> Path:
    """The local directory to read the run at ``path`` from: itself, or a fresh copy of a remote
    run in the read-only staging area; ``CheckpointError`` if a remote URL holds no run."""
    location = RunLocation(path, staging_root=read_only_staging())
    location.pull()
    if location.remote and not location.exists():
        raise CheckpointError(f"no charpoet run at {location.url}")
    return location.local


def open_run(path: str | os.PathLike[str]) -> RunLocation:
    return RunLocation(path)


class RunLocation:
    """Where a run lives: a local directory, or a remote URL mirrored through a local staging directory."""

    def __init__(self, path: str | os.PathLike[str], *, staging_root: Path | None = None):
        self.remote = is_remote(path)
        if self.remote:
            url = os.fspath(path)
            self.url = url.rstrip("/") if not url.endswith("://") else url
            root = staging_root if staging_root is not None else charpoet_home() / "remote-runs"
            self.local = Path(root).expanduser() / hashlib.sha256(self.url.encode("utf-8")).hexdigest()[:16]
        else:
            self.local = Path(path).expanduser()
            self.url = str(self.local)
        self._fs_root: tuple[Any, str] | None = None

    def __repr__(self) -> str:
        return f"RunLocation({self.url!r})" + (f" staged in {str(self.local)!r}" if self.remote else "")

    # --- the file system ------------------------------------------------------------------
    @property
    def fs(self) -> Any:
        return self._resolve()[0]

    @property
    def root(self) -> str:
        """The location as a path of ``fs`` (no protocol)."""
        return self._resolve()[1]

    def _resolve(self) -> tuple[Any, str]:
        if self._fs_root is None:
            if self.remote:
                self._fs_root = _url_to_fs(self.url)
            else:
                from fsspec.implementations.local import LocalFileSystem

                self._fs_root = LocalFileSystem(), str(self.local.absolute())
        return self._fs_root

    def _rpath(self, rel: str) -> str:
        return posixpath.join(self.root, rel)

    # --- the public operations ------------------------------------------------------------
    def exists(self) -> bool:
        """A run is there: ``config.json`` exists at the location (remotely, for a URL)."""
        if not self.remote:
            return (self.local / CONFIG).is_file()
        fs, root = self._resolve()
        try:
            fs.invalidate_cache(root)
            return bool(fs.isfile(posixpath.join(root, CONFIG)))
        except Exception as exc:
            raise CheckpointError(f"cannot read {self.url}: {_reason(exc)}") from None

    def pending(self) -> list[str]:
        """Staged files changed since they were last pushed or pulled (nothing for local runs)."""
        if not self.remote:
            return []
        synced = self._load_sync()
        return sorted(rel for rel, st in _scan(self.local, None).items()
                      if _synced(rel) and synced.get(rel) != st)

    def pull(self) -> list[str]:
        """Download the remote run into the staging directory; returns the paths pulled.

        Remote files replace their staged copies, except copies changed since they were last
        pushed or pulled (a crash after a failed push): those are kept for the next push.
        Staged copies of files the remote no longer has are deleted, unless changed too.
        ``config.json`` comes last, so an interrupted pull never leaves a staged "run".
        """
        if not self.remote:
            return []
        remote = self._remote_files()
        staged = _scan(self.local, [n for n in SYNCED_FILES + SYNCED_FOLDERS if (self.local / n).exists()])
        synced = self._load_sync()
        pulled: list[str] = []
        dropped: list[str] = []
        try:
            for rel in sorted(remote, key=_upload_rank):
                if rel in staged and rel in synced and synced[rel] != staged[rel]:
                    continue  # unpushed local work
                synced[rel] = self._download(rel, remote[rel])
                pulled.append(rel)
            for rel in sorted(set(staged) - set(remote)):
                if synced.get(rel) == staged[rel]:  # pushed or pulled once, gone remotely since
                    (self.local / rel).unlink(missing_ok=True)
                    del synced[rel]
                    dropped.append(rel)
        finally:
            if pulled or dropped:
                self._save_sync(synced)
        return pulled

    def push(self, names: Iterable[str] | None = None, *, force: bool = False) -> list[str]:
        """Upload the staged files changed since the last push; returns the paths uploaded.

        ``names`` limits the push to these relative paths (files or folders); ``force``
        uploads them even when unchanged. ``last.safetensors`` and ``config.json`` go last.
        """
        if not self.remote:
            return []
        current = {rel: st for rel, st in _scan(self.local, None if names is None else list(names)).items()
                   if _synced(rel)}  # derived files (tokens/) stay on each machine
        synced = self._load_sync()
        todo = sorted((rel for rel, st in current.items() if force or synced.get(rel) != st), key=_upload_rank)
        done: list[str] = []
        try:
            made: set[str] = set()
            for rel in todo:
                self._upload(rel, made)
                synced[rel] = current[rel]  # the stat taken before the upload: a later change re-uploads
                done.append(rel)
        finally:
            if done:
                self._save_sync(synced)
        return done

    def remove(self) -> None:
        """Delete the run: its files and folders (``config.json`` first), then its staging copy.

        Files that are not part of a run are left alone, and the folder with them.
        """
        fs, root = self._resolve()
        try:
            fs.invalidate_cache(root)
            entries = fs.ls(root, detail=True)
        except FileNotFoundError:
            entries = []
        except Exception as exc:
            raise CheckpointError(f"cannot read {self.url}: {_reason(exc)}") from None
        doomed = [e["name"] for e in entries if _is_run_entry(posixpath.basename(e["name"].rstrip("/")))]
        doomed.sort(key=lambda p: posixpath.basename(p) != CONFIG)  # the run stops existing first
        try:
            for p in doomed:
                fs.rm(p, recursive=True)
        except Exception as exc:
            raise CheckpointError(f"cannot remove the run at {self.url}: {_reason(exc)}") from None
        try:  # tidy up the emptied folder; never a bucket, only a folder inside one
            fs.invalidate_cache(root)
            if doomed and posixpath.dirname(root.strip("/")) and not fs.ls(root):
                fs.rmdir(root)
        except Exception:
            pass  # already gone (object stores have no folders)
        if self.remote and self.local.exists():
            try:
                shutil.rmtree(self.local)
            except OSError as exc:
                raise CheckpointError(f"cannot remove the staged copy {self.local}: {_reason(exc)}") from None

    # --- transfers ----------------------------------------------------------------------
    def _remote_files(self) -> dict[str, str]:
        """Relative path -> fs path of every run file at the remote location."""
        fs, root = self._resolve()
        out: dict[str, str] = {}
        try:
            fs.invalidate_cache(root)
            try:
                entries = fs.ls(root, detail=True)
            except FileNotFoundError:
                return {}
            for entry in entries:
                name = posixpath.basename(entry["name"].rstrip("/"))
                if entry["type"] == "file" and name in SYNCED_FILES:
                    out[name] = entry["name"]
                elif entry["type"] == "directory" and name in SYNCED_FOLDERS:
                    for p in fs.find(entry["name"]):
                        rel = _relative(p, root)
                        if rel is not None and not any(part.startswith(".") for part in rel.split("/")):
                            out[rel] = p
        except Exception as exc:
            raise CheckpointError(f"cannot read {self.url}: {_reason(exc)}") from None
        return out

    def _download(self, rel: str, rpath: str) -> list[int]:
        """Fetch one file into the staging directory atomically; returns its new stat."""
        dest = self.local / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        os.close(fd)
        try:
            self.fs.get_file(rpath, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, Exception):
                raise CheckpointError(f"cannot download {rel} from {self.url}: {_reason(exc)}") from None
            raise
        return _stat(dest)

    def _upload(self, rel: str, made: set[str]) -> None:
        """Upload one staged file to a temporary name beside its target, then move it over."""
        fs, final = self.fs, self._rpath(rel)
        parent, base = posixpath.split(final)
        tmp = posixpath.join(parent, f".{base}.{secrets.token_hex(4)}.tmp")
        try:
            if parent not in made:
                fs.makedirs(parent, exist_ok=True)
                made.add(parent)
            fs.put_file(str(self.local / rel), tmp)
            fs.mv(tmp, final)
        except BaseException as exc:
            try:
                fs.rm_file(tmp)
            except Exception:
                pass  # never written, or already moved
            if isinstance(exc, Exception):
                raise CheckpointError(f"cannot upload {rel} to {self.url}: {_reason(exc)}") from None
            raise

    # --- what was synced ------------------------------------------------------------------
    def _load_sync(self) -> dict[str, list[int]]:
        try:
            d = json.loads((self.local / SYNC_FILE).read_text(encoding="utf-8"))
            return dict(d["files"]) if d.get("url") == self.url else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}  # missing or damaged: everything counts as changed, which is safe

    def _save_sync(self, files: dict[str, list[int]]) -> None:
        data = json.dumps({"url": self.url, "files": dict(sorted(files.items()))}, indent=1) + "\n"
        atomic_write_bytes(self.local / SYNC_FILE, data.encode("utf-8"))


def _url_to_fs(url: str) -> tuple[Any, str]:
    """``charpoet.corpus.remote.url_to_fs`` (one-line errors naming an unknown protocol or a missing
    package), its errors as the ``CheckpointError`` of a run location."""
    try:
        return url_to_fs(url)
    except CorpusError as exc:
        raise CheckpointError(str(exc)) from None


def _scan(local: Path, names: list[str] | None) -> dict[str, list[int]]:
    """Relative posix path -> [size, mtime_ns, inode] of the staged files (hidden ones skipped)."""
    if names is None:
        roots = [local] if local.is_dir() else []
    else:
        roots = []
        for name in names:
            rel = PurePosixPath(str(name).replace(os.sep, "/"))
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                raise CheckpointError(f"cannot upload {name}: not a path inside the run")
            if not (local / rel).exists():
                raise CheckpointError(f"cannot upload {name}: {local / rel} does not exist")
            roots.append(local / rel)
    out: dict[str, list[int]] = {}
    for top in roots:
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for p in files:
            rel = p.relative_to(local).as_posix()
            if not any(part.startswith(".") for part in rel.split("/")):
                out[rel] = _stat(p)
    return out


def _synced(rel: str) -> bool:
    """Whether the run file or folder entry ``rel`` is mirrored to remote storage (charpoet.runfiles)."""
    return rel.split("/")[0] in SYNCED_FILES + SYNCED_FOLDERS


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]  # a rename (atomic write) always changes the inode


def _upload_rank(rel: str) -> tuple[int, str]:
    return (2 if rel == CONFIG else 1 if rel == LAST else 0, rel)


def _is_run_entry(name: str) -> bool:
    temporary = name.endswith(".tmp") and any(name.startswith(f".{n}.") for n in RUN_FILES)
    return name in RUN_FILES or name in RUN_FOLDERS or name == SYNC_FILE or temporary


def _relative(path: str, root: str) -> str | None:
    root = root.rstrip("/")
    return path[len(root) + 1 :] if path.startswith(root + "/") else None


def _reason(exc: BaseException) -> str:
    """An exception as one line."""
    return " ".join(str(exc).split()) or type(exc).__name__
