"""Text files at fsspec URLs (``s3://``, ``gs://``, ``memory://``, ``file://``, ...).

A URL names one file, a directory (a prefix: every file below it, recursively, sorted, hidden
names skipped, as for a local directory) or a glob (``s3://bucket/books/**/*.txt``). Each file
found is a ``RemoteFile``, which ``charpoet.corpus.files`` opens and streams like a local file.
fsspec is imported only when a URL is given; every failure is a one-line ``CorpusError``.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from charpoet.errors import CorpusError

# Two letters at least: C:\ is a drive. (charpoet.storage uses these for run locations too.)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+(://|::)")
# info() keys that change when an object is rewritten, by file system (local, S3, GCS, Azure, memory...)
_VERSION_KEYS = ("mtime", "LastModified", "last_modified", "updated", "ETag", "etag", "generation",
                 "md5Hash", "created")


def is_url(path: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` URLs (``file://`` included) and fsspec chains (``a::b://``)."""
    text = os.fspath(path)  # a Path never is one: Path("s3://b/x") is already "s3:/b/x"
    return isinstance(text, str) and bool(_URL.match(text))


def _reason(exc: BaseException) -> str:
    """An exception as one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


@contextmanager
def _reading(url: str) -> Iterator[None]:
    """Any failure of a file system backend (network, permission, ...) as a one-line ``CorpusError``."""
    try:
        yield
    except CorpusError:
        raise
    except FileNotFoundError:
        raise CorpusError(f"{url}: no such file or directory") from None
    except Exception as exc:  # backends raise their own types (botocore, aiohttp, google.auth, ...)
        raise CorpusError(f"{url}: cannot read ({_reason(exc)})") from None


def url_to_fs(url: str) -> tuple[Any, str]:
    """``fsspec.core.url_to_fs`` with one-line errors naming an unknown protocol or a missing package."""
    try:
        from fsspec.core import url_to_fs as _url_to_fs
        from fsspec.registry import known_implementations
    except ImportError:
        raise CorpusError(f"{url}: reading URLs needs the fsspec package: pip install fsspec") from None
    try:
        return _url_to_fs(url)
    except ImportError as exc:
        import importlib.util

        for link in url.split("::"):
            scheme = link.split("://", 1)[0]
            module = known_implementations.get(scheme, {}).get("class", "").split(".")[0]
            if module and importlib.util.find_spec(module) is None:
                package = module.replace("_", "-")
                raise CorpusError(f"{url}: {scheme}:// needs the {package} package: pip install {package}") from None
        raise CorpusError(f"{url}: cannot open ({_reason(exc)})") from None
    except ValueError as exc:
        if str(exc).startswith("Protocol not known"):
            scheme = str(exc).split(":", 1)[1].strip()
            raise CorpusError(f"{url}: unknown protocol {scheme}:// (not a file system fsspec knows)") from None
        raise CorpusError(f"{url}: cannot open ({_reason(exc)})") from None
    except Exception as exc:
        raise CorpusError(f"{url}: cannot open ({_reason(exc)})") from None


class RemoteFile:
    """One file at a URL, as ``charpoet.corpus.files`` streams it (the same attributes as a local file)."""

    failures: tuple[type[BaseException], ...] = (Exception,)  # what a read may raise: any backend error

    def __init__(self, fs: Any, path: str, url: str):
        self.fs, self.path, self.url = fs, path, url
        self.origin = self.location = url
        self.stem = PurePosixPath(path).stem
        scheme = url.split("::")[-1].split("://", 1)[0]
        # The file's place among others, for names that must tell colliding stems apart.
        self.key = PurePosixPath("/", f"{scheme}:", *[p for p in path.split("/") if p])

    def __repr__(self) -> str:
        return f"RemoteFile({self.url!r})"

    @property
    def identity(self) -> str:
        """What tells two names of this file apart from other files: ``file://`` URLs as local paths."""
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else self.fs.protocol
        if "file" in protocols or "local" in protocols:
            return os.path.realpath(self.path)
        return str(self.fs.unstrip_protocol(self.path))

    def open(self) -> BinaryIO:
        return self.fs.open(self.path, "rb")

    def stamp(self) -> tuple[object, ...]:
        """Size and version (modification time, ETag, ...) now; ``FileNotFoundError`` once it is gone."""
        self.fs.invalidate_cache(self.path)
        info = self.fs.info(self.path)
        version = next((str(info[k]) for k in _VERSION_KEYS if info.get(k) is not None), None)
        return (info.get("size"), version)


def _static_prefix(path: str) -> str:
    """The folder part of a glob before its first wildcard: ``b/books`` for ``b/books/**/*.txt``."""
    first = min(i for i, c in enumerate(path) if c in "*?[")
    return path[:first].rsplit("/", 1)[0] if "/" in path[:first] else ""


def _visible(path: str, root: str) -> bool:
    rel = path[len(root):] if root and path.startswith(root) else path
    return not any(part.startswith(".") for part in rel.split("/") if part)


def _walk(fs: Any, root: str) -> list[str]:
    """Every non-hidden file below ``root``, sorted by relative path (as ``os.walk`` expansion)."""
    root = root.rstrip("/")
    found = fs.find(root, detail=True)
    files = [p for p, info in found.items() if info.get("type") == "file" and _visible(p, root + "/")]
    return sorted(files, key=lambda p: p[len(root) + 1:].split("/"))


def expand_url(pattern: str) -> list[tuple[RemoteFile, bool]]:
    """A URL's files as ``(file, explicitly named)`` pairs: a file, a directory (recursive), or a glob."""
    fs, path = url_to_fs(pattern)

    def found(paths: list[str]) -> list[tuple[RemoteFile, bool]]:
        return [(RemoteFile(fs, p, fs.unstrip_protocol(p)), False) for p in paths]

    with _reading(pattern):
        if fs.isfile(path):
            return [(RemoteFile(fs, path, pattern), True)]
        if fs.isdir(path):
            files = _walk(fs, path)
            if not files:
                raise CorpusError(f"{pattern}: directory contains no (non-hidden) files")
            return found(files)
        if any(c in path for c in "*?["):
            prefix = _static_prefix(path)
            matches = fs.glob(path, detail=True)
            out: list[tuple[RemoteFile, bool]] = []
            for p in sorted(matches):
                if not _visible(p, prefix + "/" if prefix else ""):
                    continue
                out += found(_walk(fs, p)) if matches[p].get("type") == "directory" else found([p])
            if not out:
                raise CorpusError(f"{pattern}: no files match this pattern")
            return out
        raise CorpusError(f"{pattern}: no such file or directory")


def default_name(pattern: str) -> str:
    """The library name for one URL: a file's stem, a directory's name, ``custom`` for a glob."""
    path = pattern.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
    if any(c in path for c in "*?[") or not path:
        return "custom"
    try:
        fs, fs_path = url_to_fs(pattern)
        if fs.isdir(fs_path):
            return posixpath.basename(fs_path.rstrip("/")) or "custom"
    except Exception:  # unreadable: the library build says why; here only a name is guessed
        pass
    return PurePosixPath(path).stem or "custom"
