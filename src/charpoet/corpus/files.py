"""Reading user text files into a library: path expansion, encoding detection, normalization.

Text is decoded as UTF-8 (a BOM is dropped); failing that, as Windows-1252 when bytes
0x80-0x9F that cp1252 defines occur, else as ISO-8859-1, with a ``CharpoetWarning``.
Line endings become ``\\n`` and the text is put in Unicode NFC.
"""

from __future__ import annotations

import glob
import os
import unicodedata
import warnings
from collections.abc import Sequence
from pathlib import Path

from charpoet.corpus.library import Library, Source
from charpoet.errors import CharpoetWarning, CorpusError
from charpoet.resources import format_bytes, physical_memory

_BOM = b"\xef\xbb\xbf"
_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"PK\x03\x04", b"PK\x05\x06",
          b"\x1f\x8b", b"%PDF-", b"\x7fELF", b"7z\xbc\xaf", b"BZh91", b"\xfd7zXZ")
_CONTROL = (frozenset(range(32)) - {9, 10, 12, 13}) | {127}
_SNIFF_BYTES = 8192
_MAX_CONTROL_SHARE = 0.10
# cp1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined; they stay C1 code points.
_CP1252_C1 = {b: bytes([b]).decode("cp1252") for b in range(0x80, 0xA0)
              if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}
_CP1252_TABLE = str.maketrans({chr(b): c for b, c in _CP1252_C1.items()})


class BinaryFileError(CorpusError):
    """The file looks binary, not text."""


def _has_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _walk(directory: Path) -> list[Path]:
    """All non-hidden regular files below ``directory``, sorted by relative path."""
    found: list[Path] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root, f) for f in files if not f.startswith(".")]
    files_only = [p for p in found if p.is_file()]
    return sorted(files_only, key=lambda p: p.relative_to(directory).parts)


def _expand(patterns: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, bool]]:
    """Expand patterns to ``(path, explicitly named)`` pairs, in order, without duplicates."""
    out: list[tuple[Path, bool]] = []
    seen: set[str] = set()
    for entry in patterns:
        pattern = os.fspath(entry)
        path = Path(pattern).expanduser()
        if path.is_file():
            found = [(path, True)]
        elif path.is_dir():
            found = [(p, False) for p in _walk(path)]
            if not found:
                raise CorpusError(f"{pattern}: directory contains no (non-hidden) files")
        elif _has_glob(pattern) and not path.exists():
            matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
            if not matches:
                raise CorpusError(f"{pattern}: no files match this pattern")
            found = []
            for m in map(Path, matches):
                found += [(m, False)] if m.is_file() else [(p, False) for p in _walk(m)]
        else:
            raise CorpusError(f"{pattern}: no such file or directory")
        for p, explicit in found:
            key = os.path.realpath(p)
            if key not in seen:
                seen.add(key)
                out.append((p, explicit))
    return out


def expand_paths(patterns: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand files, directories (recursive, sorted, hidden skipped) and globs to files."""
    return [p for p, _ in _expand(patterns)]


def _check_binary(data: bytes, origin: str) -> None:
    if data.startswith(_MAGIC):
        raise BinaryFileError(f"{origin}: binary file (image or archive), not text")
    if b"\0" in data:
        utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")
        hint = "; UTF-16 is not supported, save it as UTF-8" if utf16 else ""
        raise BinaryFileError(f"{origin}: binary file (contains NUL bytes){hint}")
    head = data[:_SNIFF_BYTES]
    control = sum(1 for b in head if b in _CONTROL)
    if control > _MAX_CONTROL_SHARE * len(head):
        share = f"{control} of the first {len(head)} bytes are control codes"
        raise BinaryFileError(f"{origin}: binary file ({share})")


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode ``data`` as UTF-8 (BOM dropped), else Windows-1252 or ISO-8859-1.

    Returns ``(text, encoding)``; newlines and Unicode normal form are left as they are.
    Windows-1252 is chosen when bytes 0x80-0x9F that it defines occur (they are control
    codes in ISO-8859-1, which real text never uses).
    """
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    if any(b in _CP1252_C1 for b in data):
        return data.decode("latin-1").translate(_CP1252_TABLE), "Windows-1252"
    return data.decode("latin-1"), "ISO-8859-1"


def normalize_text(text: str) -> str:
    """Line endings to ``\\n`` and Unicode to NFC."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text)


def decode_file_bytes(data: bytes, origin: str) -> tuple[str, str]:
    """Decode and normalize file bytes: ``(text, encoding)``; ``origin`` names the file in errors.

    Empty and binary data are errors.
    """
    if not data.removeprefix(_BOM).strip():
        raise CorpusError(f"{origin}: file is empty")
    _check_binary(data.removeprefix(_BOM), origin)
    text, encoding = decode_bytes(data)
    return normalize_text(text), encoding


def decode_text(data: bytes, origin: str, *, warn_legacy: bool = True) -> str:
    """Like ``decode_file_bytes``, the text only; a legacy 8-bit encoding gives a ``CharpoetWarning``
    unless ``warn_legacy`` is false (for sources known to be 8-bit, like Gutenberg ``-8.txt``).
    """
    text, encoding = decode_file_bytes(data, origin)
    if encoding != "UTF-8" and warn_legacy:
        warnings.warn(f"{origin}: not valid UTF-8; decoded as {encoding}", CharpoetWarning,
                      stacklevel=3)
    return text


def max_file_bytes() -> int:
    """The largest text file read whole: an eighth of the machine's memory (decoding, Unicode
    normalisation and token ids each hold a copy)."""
    return physical_memory() // 8


def read_file_bytes(path: str | os.PathLike[str]) -> bytes:
    """A file's bytes; ``CorpusError`` for one that cannot be read or is too large to hold."""
    origin = os.fspath(path)
    try:
        size, limit = os.stat(path).st_size, max_file_bytes()
        if size > limit:
            raise CorpusError(f"{origin}: file is {format_bytes(size)}, more than charpoet reads at once on "
                              f"this machine ({format_bytes(limit)}, an eighth of its memory); split it")
        return Path(path).read_bytes()
    except OSError as e:
        raise CorpusError(f"{origin}: cannot read file ({e.strerror or e})") from None


def read_text_file(path: str | os.PathLike[str]) -> str:
    """Read a text file: detect its encoding, normalize newlines to LF and Unicode to NFC."""
    return decode_text(read_file_bytes(path), os.fspath(path))


def _unique_names(paths: list[Path]) -> list[str]:
    """File stems; colliding stems become paths relative to the colliders' common parent."""
    stems = [p.stem for p in paths]
    names = list(stems)
    for stem in set(stems):
        idx = [i for i, s in enumerate(stems) if s == stem]
        if len(idx) > 1:
            absolute = [Path(os.path.abspath(paths[i])) for i in idx]
            base = os.path.commonpath([str(a.parent) for a in absolute])
            for i, a in zip(idx, absolute, strict=True):
                names[i] = a.relative_to(base).as_posix()
    return names


def default_library_name(patterns: Sequence[str | os.PathLike[str]]) -> str:
    """The name ``library_from_paths`` gives: a single file's stem, a directory's name, else custom."""
    if len(patterns) == 1:
        path = Path(os.fspath(patterns[0])).expanduser()
        if path.is_file():
            return path.stem
        if path.is_dir():
            return Path(os.path.abspath(path)).name or "custom"
    return "custom"


def library_from_paths(
    patterns: Sequence[str | os.PathLike[str]], name: str | None = None
) -> Library:
    """Read every file named by ``patterns`` into a ``Library`` (one source per file).

    Binary files found by expanding a directory or glob are skipped with a warning;
    named binary files, empty files and unreadable files are errors.
    """
    if isinstance(patterns, str | os.PathLike):
        patterns = [patterns]
    if not patterns:
        raise CorpusError("no text files given")
    kept: list[tuple[Path, str]] = []
    for path, explicit in _expand(patterns):
        try:
            kept.append((path, read_text_file(path)))
        except BinaryFileError as e:
            if explicit:
                raise
            warnings.warn(f"{e}; skipped", CharpoetWarning, stacklevel=2)
    if not kept:
        raise CorpusError(f"no readable text files in {', '.join(map(os.fspath, patterns))}")
    paths = [p for p, _ in kept]
    for p in paths:
        try:
            os.fspath(p).encode("utf-8")
        except UnicodeEncodeError:
            raise CorpusError(f"{os.fsencode(p)!r}: the file name is not valid UTF-8; rename the file") from None
    sources = tuple(
        Source(name=n, title=p.stem, text=t, path=os.path.abspath(p))
        for n, (p, t) in zip(_unique_names(paths), kept, strict=True)
    )
    return Library(name=name or default_library_name(patterns), sources=sources)
