"""Reading user text files into a library: path expansion, encoding detection, normalization.

Text is decoded as UTF-8 (a BOM is dropped); failing that, as Windows-1252 when bytes
0x80-0x9F that cp1252 defines occur, else as ISO-8859-1, with a ``CharpoetWarning``.
Line endings become ``\\n`` and the text is put in Unicode NFC.

``library_from_paths`` streams: building the library reads each file once, in blocks of
``BLOCK_BYTES`` (its encoding, the empty and binary checks, and for UTF-8 its length and
digest), and each source then reads its file again on demand, block by block. A block is
cut after its last newline, where decoding and normalising piece by piece gives exactly
the text decoding the whole file gives. Files at fsspec URLs are read the same way (see
``charpoet.corpus.remote``). A file that changes after the library was built is an error.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import os
import re
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePath
from typing import BinaryIO, Protocol

from charpoet.corpus.library import Library, Source
from charpoet.corpus.remote import RemoteFile, expand_url, is_url
from charpoet.corpus.remote import default_name as _url_default_name
from charpoet.errors import CharpoetWarning, CorpusError
from charpoet.resources import format_bytes, physical_memory

BLOCK_BYTES = 1 << 22  # bytes read at a time when a file is streamed (4 MiB)
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
_CP1252_BYTE = re.compile(b"[" + b"".join(re.escape(bytes([b])) for b in _CP1252_C1) + b"]")
_ASCII_LOOKBACK = 1 << 16  # characters searched for a cut in a line longer than a block


class BinaryFileError(CorpusError):
    """The file looks binary, not text."""


class _File(Protocol):
    """A file to stream: a local ``_LocalFile`` or a ``RemoteFile`` at a URL."""

    origin: str  # how errors name it
    location: str  # the source's path: absolute path or URL
    stem: str
    key: PurePath  # its absolute place, to tell colliding stems apart
    failures: tuple[type[BaseException], ...]  # what opening or reading it may raise

    def open(self) -> BinaryIO: ...

    def stamp(self) -> tuple[object, ...]: ...


class _LocalFile:
    failures: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, path: Path):
        self.path = path
        self.origin = os.fspath(path)
        self.location = os.path.abspath(path)
        self.stem = path.stem
        self.key = Path(self.location)

    def __repr__(self) -> str:
        return f"_LocalFile({self.origin!r})"

    def open(self) -> BinaryIO:
        return open(self.path, "rb")

    def stamp(self) -> tuple[object, ...]:
        """Size, modification time and inode now; ``FileNotFoundError`` once it is gone."""
        st = os.stat(self.path)
        return (st.st_size, st.st_mtime_ns, st.st_ino)


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


def _expand_local(pattern: str) -> list[tuple[Path, bool]]:
    path = Path(pattern).expanduser()
    if path.is_file():
        return [(path, True)]
    if path.is_dir():
        found = [(p, False) for p in _walk(path)]
        if not found:
            raise CorpusError(f"{pattern}: directory contains no (non-hidden) files")
        return found
    if _has_glob(pattern) and not path.exists():
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        if not matches:
            raise CorpusError(f"{pattern}: no files match this pattern")
        found = []
        for m in map(Path, matches):
            found += [(m, False)] if m.is_file() else [(p, False) for p in _walk(m)]
        return found
    raise CorpusError(f"{pattern}: no such file or directory")


def _expand(patterns: Sequence[str | os.PathLike[str]]) -> list[tuple[_File, bool]]:
    """Expand patterns to ``(file, explicitly named)`` pairs, in order, without duplicates.

    Local patterns are files, directories (recursive, sorted, hidden skipped) and globs; URLs
    are expanded the same way by fsspec (``charpoet.corpus.remote``).
    """
    out: list[tuple[_File, bool]] = []
    seen: set[str] = set()
    for entry in patterns:
        pattern = os.fspath(entry)
        found: list[tuple[_File, bool]]
        if is_url(pattern):
            found = [(f, explicit) for f, explicit in expand_url(pattern)]
        else:
            found = [(_LocalFile(p), explicit) for p, explicit in _expand_local(pattern)]
        for f, explicit in found:
            key = f.identity if isinstance(f, RemoteFile) else os.path.realpath(f.origin)
            if key not in seen:
                seen.add(key)
                out.append((f, explicit))
    return out


def expand_paths(patterns: Sequence[str | os.PathLike[str]]) -> list[Path | str]:
    """Expand files, directories (recursive, sorted, hidden skipped) and globs to files.

    Local files are ``Path``s; files found at URLs are URL strings.
    """
    return [f.path if isinstance(f, _LocalFile) else f.origin for f, _ in _expand(patterns)]


def _check_binary(head: bytes, has_nul: bool, origin: str) -> None:
    """``BinaryFileError`` unless a file whose first bytes are ``head`` (BOM removed) is text."""
    if head.startswith(_MAGIC):
        raise BinaryFileError(f"{origin}: binary file (image or archive), not text")
    if has_nul:
        utf16 = head[:2] in (b"\xff\xfe", b"\xfe\xff")
        hint = "; UTF-16 is not supported, save it as UTF-8" if utf16 else ""
        raise BinaryFileError(f"{origin}: binary file (contains NUL bytes){hint}")
    head = head[:_SNIFF_BYTES]
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
    body = data.removeprefix(_BOM)
    if not body.strip():
        raise CorpusError(f"{origin}: file is empty")
    _check_binary(body[:_SNIFF_BYTES], b"\0" in body, origin)
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


# --- streamed reading ------------------------------------------------------------------------


def _blocks(f: BinaryIO) -> Iterator[bytes]:
    """The bytes of an open file in blocks of about ``BLOCK_BYTES``, a leading UTF-8 BOM removed."""
    size = BLOCK_BYTES
    first = b""
    while len(first) < len(_BOM):  # the BOM may straddle tiny blocks
        block = f.read(size)
        if not block:
            break
        first += block
    first = first.removeprefix(_BOM)
    if first:
        yield first
    while block := f.read(size):
        yield block


def _ascii_cut(text: str, start: int) -> int:
    """A cut in ``text`` after ``start`` and before an ASCII character (no UTF-8 sequence, CRLF pair
    or NFC composition spans it: ASCII never composes with what precedes it), else ``start``."""
    for i in range(len(text) - 1, max(start, len(text) - _ASCII_LOOKBACK), -1):
        if text[i] < "\x80":
            return i
    return start


class _TextDecoder:
    """Blocks of bytes in, decoded and normalised text out, exactly as decoding them joined.

    Text is held back until a newline (``\\n`` never ends a CRLF pair or an NFC composition);
    a longer line is cut before an ASCII character once it reaches ``BLOCK_BYTES`` characters.
    """

    def __init__(self, encoding: str):
        self._utf8 = codecs.getincrementaldecoder("utf-8")() if encoding == "UTF-8" else None
        self._cp1252 = encoding == "Windows-1252"
        self._pending = ""
        self._limit = BLOCK_BYTES

    def feed(self, block: bytes, final: bool = False) -> str:
        """The text of ``block`` that can be normalised now; ``UnicodeDecodeError`` for bad UTF-8."""
        if self._utf8 is not None:
            text = self._utf8.decode(block, final)
        else:
            text = block.decode("latin-1")
            if self._cp1252:
                text = text.translate(_CP1252_TABLE)
        pending = self._pending + text if self._pending else text
        if final:
            self._pending = ""
            return normalize_text(pending)
        cut = pending.rfind("\n") + 1
        if len(pending) - cut >= self._limit:
            cut = _ascii_cut(pending, cut)
        self._pending = pending[cut:]
        return normalize_text(pending[:cut]) if cut else ""


def _changed(origin: str, why: str = "") -> CorpusError:
    return CorpusError(f"{origin}: file changed while charpoet was reading it{why}; "
                       "run the command again once it is complete")


def _stamp(file: _File) -> tuple[object, ...]:
    try:
        return file.stamp()
    except FileNotFoundError:
        raise CorpusError(f"{file.origin}: file disappeared while charpoet was reading it; "
                          "restore it and run the command again") from None
    except file.failures as e:
        raise CorpusError(f"{file.origin}: cannot read file ({_reason(e)})") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


class _Scan:
    """What one streamed pass over a file found: its encoding, and for UTF-8 its length and digest."""

    def __init__(self, file: _File):
        try:
            self.stamp = file.stamp()
        except file.failures as e:
            raise CorpusError(f"{file.origin}: cannot read file ({_reason(e)})") from None
        head, nul, nonblank, cp1252, checked = b"", False, False, False, False
        utf8: _TextDecoder | None = _TextDecoder("UTF-8")
        digest, count = hashlib.sha256(), 0
        origin = file.origin
        try:
            with file.open() as f:
                for block in _blocks(f):
                    if len(head) < _SNIFF_BYTES:
                        head += block[: _SNIFF_BYTES - len(head)]
                    nul = nul or b"\0" in block
                    nonblank = nonblank or bool(block.strip())
                    cp1252 = cp1252 or _CP1252_BYTE.search(block) is not None
                    if nonblank and (nul or (not checked and len(head) >= _SNIFF_BYTES)):
                        _check_binary(head, nul, origin)  # fails at once on a big binary file
                        checked = True
                    if utf8 is not None:
                        try:
                            piece = utf8.feed(block)
                        except UnicodeDecodeError:
                            utf8 = None
                        else:
                            digest.update(piece.encode("utf-8"))
                            count += len(piece)
        except CorpusError:
            raise
        except file.failures as e:
            raise CorpusError(f"{origin}: cannot read file ({_reason(e)})") from None
        if not nonblank:
            raise CorpusError(f"{origin}: file is empty")
        if not checked:
            _check_binary(head, nul, origin)
        if utf8 is not None:
            try:
                piece = utf8.feed(b"", final=True)
            except UnicodeDecodeError:
                utf8 = None
            else:
                digest.update(piece.encode("utf-8"))
                count += len(piece)
        if _stamp(file) != self.stamp:
            raise _changed(origin)
        self.encoding = "UTF-8" if utf8 is not None else "Windows-1252" if cp1252 else "ISO-8859-1"
        self.num_chars = count if utf8 is not None else None
        self.sha256 = digest.hexdigest() if utf8 is not None else None


class _StreamedText:
    """A source's ``reader``: the file's text, decoded and normalised block by block, on each call.

    The file must be as it was when the library was built (same size and modification time):
    it is checked before and after each pass.
    """

    def __init__(self, file: _File, encoding: str, stamp: tuple[object, ...]):
        self.file, self.encoding, self.stamp = file, encoding, stamp

    def __repr__(self) -> str:
        return f"_StreamedText({self.file.origin!r}, {self.encoding})"

    def __call__(self) -> Iterator[str]:
        return self._read()

    def _read(self) -> Iterator[str]:
        file, origin = self.file, self.file.origin
        if _stamp(file) != self.stamp:
            raise _changed(origin)
        decoder = _TextDecoder(self.encoding)
        try:
            with file.open() as f:
                for block in _blocks(f):
                    if b"\0" in block:
                        raise _changed(origin, " (it now holds binary data: NUL bytes)")
                    try:
                        piece = decoder.feed(block)
                    except UnicodeDecodeError:
                        raise _changed(origin, " (it is no longer valid UTF-8)") from None
                    if piece:
                        yield piece
        except CorpusError:
            raise
        except file.failures as e:
            raise CorpusError(f"{origin}: cannot read file ({_reason(e)})") from None
        try:
            tail = decoder.feed(b"", final=True)
        except UnicodeDecodeError:
            raise _changed(origin, " (it is no longer valid UTF-8)") from None
        if _stamp(file) != self.stamp:
            raise _changed(origin)
        if tail:
            yield tail


def _unique_names(files: Sequence[_File]) -> list[str]:
    """File stems; colliding stems become paths relative to the colliders' common parent."""
    stems = [f.stem for f in files]
    names = list(stems)
    for stem in set(stems):
        idx = [i for i, s in enumerate(stems) if s == stem]
        if len(idx) > 1:
            keys = [files[i].key for i in idx]
            base = os.path.commonpath([str(k.parent) for k in keys])
            for i, k in zip(idx, keys, strict=True):
                names[i] = k.relative_to(base).as_posix()
    return names


def default_library_name(patterns: Sequence[str | os.PathLike[str]]) -> str:
    """The name ``library_from_paths`` gives: a single file's stem, a directory's name, else custom."""
    if len(patterns) == 1:
        pattern = os.fspath(patterns[0])
        if is_url(pattern):
            return _url_default_name(pattern)
        path = Path(pattern).expanduser()
        if path.is_file():
            return path.stem
        if path.is_dir():
            return Path(os.path.abspath(path)).name or "custom"
    return "custom"


def library_from_paths(
    patterns: Sequence[str | os.PathLike[str]], name: str | None = None
) -> Library:
    """A ``Library`` of every file named by ``patterns`` (one streamed source per file).

    Patterns are local files, directories and globs, or fsspec URLs of the same. Each file is
    read once now, in blocks (encoding, empty and binary checks); its source reads it again
    when its text is needed, and fails if the file has changed since. Binary files found by
    expanding a directory or glob are skipped with a warning; named binary files, empty files
    and unreadable files are errors.
    """
    if isinstance(patterns, str | os.PathLike):
        patterns = [patterns]
    if not patterns:
        raise CorpusError("no text files given")
    kept: list[tuple[_File, _Scan]] = []
    for file, explicit in _expand(patterns):
        try:
            kept.append((file, _Scan(file)))
        except BinaryFileError as e:
            if explicit:
                raise
            warnings.warn(f"{e}; skipped", CharpoetWarning, stacklevel=2)
            continue
        if kept[-1][1].encoding != "UTF-8":
            warnings.warn(f"{file.origin}: not valid UTF-8; decoded as {kept[-1][1].encoding}",
                          CharpoetWarning, stacklevel=2)
    if not kept:
        raise CorpusError(f"no readable text files in {', '.join(map(os.fspath, patterns))}")
    for file, _ in kept:
        if isinstance(file, _LocalFile):
            try:
                file.origin.encode("utf-8")
            except UnicodeEncodeError:
                raise CorpusError(f"{os.fsencode(file.path)!r}: the file name is not valid UTF-8; "
                                  "rename the file") from None
    sources = tuple(
        Source(name=n, title=file.stem, path=file.location, reader=_StreamedText(file, scan.encoding, scan.stamp),
               num_chars=scan.num_chars, sha256=scan.sha256)
        for n, (file, scan) in zip(_unique_names([f for f, _ in kept]), kept, strict=True)
    )
    return Library(name=name or default_library_name(patterns), sources=sources)
