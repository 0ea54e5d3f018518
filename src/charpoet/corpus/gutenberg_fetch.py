"""Downloading Project Gutenberg books and the catalog, politely, with a local cache.

``GutenbergClient`` talks to one *mirror*: ``https://www.gutenberg.org`` by default,
``$CHARPOET_GUTENBERG_MIRROR`` or any HTTP(S) mirror, or a local directory (or ``file://``
URL) laid out like one. Over the network it

* waits ``min_interval`` seconds between the starts of any two requests (PG asks robots
  for at least 2 s), 404s and retries included;
* retries transient failures (HTTP 5xx and 429, resets, timeouts, a body shorter than
  its Content-Length) with exponential back-off, honouring ``Retry-After``;
* caches raw books in ``$CHARPOET_HOME/gutenberg/books/N/<file>`` next to a JSON sidecar
  ``<file>.json`` (url, size, sha256, fetched_at) and the catalog in
  ``catalog/pg_catalog.csv`` (+ sidecar); everything is written atomically, data first
  and sidecar last, and a cached file is trusted only when its sidecar matches it;
* stops after ``max_downloads`` book downloads per client.

A book's plain text is looked for at, in order (the layout that worked last goes first)::

    cache/epub/N/pgN.txt                     generated UTF-8 text (gutenberg.org)
    files/N/N-0.txt, N-8.txt, N.txt          UTF-8, 8-bit, ASCII editions (gutenberg.org)
    dirs/1/3/4/1342/1342-0.txt ...           the "dirs" tree (gutenberg.org/dirs)
    1/3/4/1342/1342-0.txt ...                the same tree at a mirror's root (rsync mirrors)

In the dirs tree every digit of N but the last is a folder; ids below 10 live in ``0/``.
The bytes are returned as they are: decoding and boilerplate removal happen elsewhere.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import math
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from charpoet.corpus.cache import atomic_write_bytes, charpoet_home
from charpoet.corpus.gutenberg_catalog import Catalog
from charpoet.errors import CharpoetWarning, ConfigError, CorpusError

__all__ = [
    "CATALOG_PATH", "DEFAULT_MIRROR", "MIRROR_ENV", "FetchPolicy", "FetchPolicyError",
    "GutenbergClient", "RawBook", "dirs_path",
]

DEFAULT_MIRROR = "https://www.gutenberg.org"
MIRROR_ENV = "CHARPOET_GUTENBERG_MIRROR"
CATALOG_PATH = "cache/epub/feeds/pg_catalog.csv"
MAX_RETRY_AFTER = 60.0   # seconds; a longer Retry-After is cut to this
_CHUNK = 1 << 16
_MISSING = (403, 404, 410)
_CATALOG_FILE = "pg_catalog.csv"


class FetchPolicyError(ConfigError, CorpusError):
    """A ``FetchPolicy`` value is out of range."""


@dataclass(frozen=True)
class FetchPolicy:
    """How politely and how persistently to download."""

    min_interval: float = 2.0           # seconds between the starts of any two requests
    retries: int = 3                    # extra tries after a transient failure
    backoff: float = 2.0                # first retry wait in seconds; doubles each time
    timeout: float = 30.0               # per request (connect, and each read)
    max_downloads: int = 50             # book downloads per client; cached books are free
    catalog_max_age_days: float = 30.0  # refresh the cached catalog when older

    def validate(self) -> FetchPolicy:
        """Return ``self``, or raise ``FetchPolicyError`` for a negative or absurd value; messages
        name the command-line option (``--min-interval``), as the other configurations do."""
        def flag(name: str) -> str:
            return "--catalog-max-age" if name == "catalog_max_age_days" else "--" + name.replace("_", "-")

        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise FetchPolicyError(f"{flag(f.name)} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise FetchPolicyError(f"{flag(f.name)} must be a finite number >= 0, got {value!r}")
        for name in ("retries", "max_downloads"):
            value = getattr(self, name)
            if int(value) != value:
                raise FetchPolicyError(f"{flag(name)} must be a whole number, got {value!r}")
        if self.timeout <= 0:
            raise FetchPolicyError(f"--timeout must be > 0 seconds, got {self.timeout!r}")
        return self


@dataclass(frozen=True)
class RawBook:
    """A book file as fetched: undecoded bytes and where they came from."""

    id: int
    data: bytes          # the file's bytes, undecoded
    filename: str        # "pg84.txt", "84-0.txt", "800-8.txt", "1013.txt"
    url: str             # http(s) URL, or the local file's path
    from_cache: bool


class _Transient(Exception):
    """A failure worth retrying; ``retry_after`` is the server's wish, in seconds."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


def _user_agent() -> str:
    try:
        import charpoet
        version = getattr(charpoet, "__version__", "")
    except ImportError:  # pragma: no cover - only while charpoet is half-imported
        version = ""
    return f"charpoet/{version or '0'} (+https://github.com/charpoet)"


def _check_id(book_id: object) -> int:
    """``book_id`` as a positive int; strings of digits are accepted."""
    if isinstance(book_id, bool):
        number = None
    elif isinstance(book_id, int):
        number = book_id
    elif isinstance(book_id, str) and book_id.strip().isdigit():
        number = int(book_id.strip())
    else:
        number = None
    if number is None or number <= 0:
        raise CorpusError(f"invalid Project Gutenberg book id {book_id!r} "
                          "(expected a positive whole number, e.g. 84)")
    return number


def dirs_path(book_id: int) -> str:
    """The folder of ``book_id`` in the dirs tree: 5 -> ``0/5``, 1342 -> ``1/3/4/1342``."""
    digits = str(book_id)
    parents = list(digits[:-1]) or ["0"]
    return "/".join(parents + [digits])


def _layouts(n: int) -> list[list[str]]:
    """Candidate relative paths of book ``n``, grouped by layout, in the default order."""
    variants = (f"{n}-0.txt", f"{n}-8.txt", f"{n}.txt")
    tree = dirs_path(n)
    return [
        [f"cache/epub/{n}/pg{n}.txt"],
        [f"files/{n}/{v}" for v in variants],
        [f"dirs/{tree}/{v}" for v in variants],
        [f"{tree}/{v}" for v in variants],
    ]


def _resolve_mirror(mirror: str | os.PathLike[str] | None) -> tuple[str, Path | None]:
    """``(mirror, local root)``: the root is ``None`` for an HTTP(S) mirror."""
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV, "").strip() or DEFAULT_MIRROR
    if isinstance(mirror, os.PathLike):
        return _local_mirror(Path(mirror))
    text = str(mirror).strip()
    if not text:
        raise CorpusError("the Project Gutenberg mirror is empty")
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        return text.rstrip("/"), None
    if scheme == "file":
        parsed = urllib.parse.urlsplit(text)
        return _local_mirror(Path(urllib.request.url2pathname(parsed.path)))
    if len(scheme) > 1:  # "c:" is a Windows drive, not a scheme
        raise CorpusError(f"unsupported Project Gutenberg mirror {text!r} "
                          "(use an http(s):// URL or a local directory)")
    return _local_mirror(Path(text))


def _local_mirror(path: Path) -> tuple[str, Path]:
    path = path.expanduser()
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise CorpusError(f"Project Gutenberg mirror {path} {what}")
    path = path.resolve()
    return str(path), path


def _now_iso(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _short(reason: object) -> str:
    """One line of an exception or reason."""
    text = str(reason).strip() or type(reason).__name__
    return " ".join(text.split())[:200]


class GutenbergClient:
    """Fetches books and the catalog from one Project Gutenberg mirror, with a cache."""

    def __init__(self, mirror: str | os.PathLike[str] | None = None, *,
                 policy: FetchPolicy = FetchPolicy(), cache_dir: Path | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], float] = time.time):
        """``clock`` (monotonic) paces requests, ``sleep`` waits, ``now`` (wall clock,
        seconds since the epoch) dates cache entries; all three are injectable for tests."""
        self.policy = policy.validate()
        self.mirror, self._root = _resolve_mirror(mirror)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else charpoet_home() / "gutenberg"
        self.downloads = 0
        self.requests = 0
        self._sleep, self._clock, self._now = sleep, clock, now
        self._last_start: float | None = None
        self._first_layout = 0
        self._catalog: Catalog | None = None
        self._opener = urllib.request.build_opener()
        self._opener.addheaders = [("User-Agent", _user_agent()), ("Accept-Encoding", "identity")]

    @property
    def is_local(self) -> bool:
        """Whether the mirror is a local directory."""
        return self._root is not None

    def __repr__(self) -> str:
        return f"GutenbergClient({self.mirror!r})"

    # -- candidates -------------------------------------------------------------------

    def candidate_paths(self, book_id: int) -> list[str]:
        """Relative paths tried for ``book_id``, in order (last successful layout first)."""
        layouts = _layouts(_check_id(book_id))
        order = [self._first_layout] + [i for i in range(len(layouts)) if i != self._first_layout]
        return [path for i in order for path in layouts[i]]

    def _layout_of(self, book_id: int, path: str) -> int:
        return next(i for i, group in enumerate(_layouts(book_id)) if path in group)

    # -- books --------------------------------------------------------------------------

    def fetch(self, book_id: int) -> RawBook:
        """The plain-text file of ``book_id``: from the cache, the local mirror or the network."""
        n = _check_id(book_id)
        if self._root is not None:
            return self._fetch_local(n)
        cached = self._cached_book(n)
        if cached is not None:
            return cached
        if self.downloads >= self.policy.max_downloads:
            raise CorpusError(f"download limit reached ({self.policy.max_downloads} books this "
                              "run); raise --max-downloads to fetch more")
        tried = []
        for rel in self.candidate_paths(n):
            url = f"{self.mirror}/{rel}"
            data = self._get(url, f"book {n}")
            tried.append(rel)
            if data is None:
                continue
            self._first_layout = self._layout_of(n, rel)
            self.downloads += 1
            filename = rel.rsplit("/", 1)[-1]
            self._store_book(n, filename, data, url)
            return RawBook(id=n, data=data, filename=filename, url=url, from_cache=False)
        raise self._not_found(n, tried)

    def _not_found(self, n: int, tried: list[str]) -> CorpusError:
        return CorpusError(f"book {n}: no plain-text file on {self.mirror} "
                           f"(tried {len(tried)} locations: {', '.join(tried)})")

    def _fetch_local(self, n: int) -> RawBook:
        assert self._root is not None
        tried = self.candidate_paths(n)
        for rel in tried:
            path = self._root / rel
            if path.is_file():
                try:
                    data = path.read_bytes()
                except OSError as e:
                    raise CorpusError(f"book {n}: cannot read {path} ({e.strerror or e})") from None
                self._first_layout = self._layout_of(n, rel)
                return RawBook(id=n, data=data, filename=path.name, url=str(path), from_cache=False)
        raise self._not_found(n, tried)

    def book_dir(self, book_id: int) -> Path:
        """Where the cached files of ``book_id`` live."""
        return self.cache_dir / "books" / str(_check_id(book_id))

    def _cached_book(self, n: int) -> RawBook | None:
        """The verified cached copy of book ``n``; bad copies are deleted with a warning."""
        directory = self.book_dir(n)
        try:
            names = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
        except OSError:
            return None
        found: RawBook | None = None
        corrupt = False
        for name in names:
            if name.endswith(".json"):
                if name[:-5] not in names:  # a sidecar without its file
                    corrupt = True
                    (directory / name).unlink(missing_ok=True)
                continue
            path = directory / name
            meta = self._verified(path)
            if meta is None:
                corrupt = True
                path.unlink(missing_ok=True)
                _sidecar(path).unlink(missing_ok=True)
            elif found is None:
                found = RawBook(id=n, data=meta.pop("_data"), filename=name,
                                url=str(meta.get("url", path)), from_cache=True)
        if found is None and corrupt:
            warnings.warn(f"cached copy of book {n} is corrupt; downloading it again",
                          CharpoetWarning, stacklevel=3)
        return found

    @staticmethod
    def _verified(path: Path) -> dict[str, Any] | None:
        """The sidecar of ``path`` plus its data (key ``_data``), if both agree."""
        try:
            meta = json.loads(_sidecar(path).read_text(encoding="utf-8"))
            data = path.read_bytes()
            if not isinstance(meta, dict):
                return None
            digest = hashlib.sha256(data).hexdigest()
            if meta.get("size") != len(data) or meta.get("sha256") != digest:
                return None
        except (OSError, ValueError):
            return None
        meta["_data"] = data
        return meta

    def _store(self, path: Path, data: bytes, meta: dict[str, Any]) -> None:
        """Write ``data`` then its sidecar, both atomically."""
        meta = {**meta, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "fetched_at": _now_iso(self._now())}
        try:
            atomic_write_bytes(path, data)
            atomic_write_bytes(_sidecar(path), json.dumps(meta, indent=1).encode("utf-8"))
        except OSError as e:
            raise CorpusError(f"cannot write the download cache at {path.parent} "
                              f"({e.strerror or e})") from None

    def _store_book(self, n: int, filename: str, data: bytes, url: str) -> None:
        directory = self.book_dir(n)
        if directory.is_dir():  # an older copy under another name must not shadow this one
            for old in directory.iterdir():
                if not old.name.startswith(".") and old.name not in (filename, filename + ".json"):
                    old.unlink(missing_ok=True)
        self._store(directory / filename, data, {"id": n, "url": url})

    # -- catalog ------------------------------------------------------------------------

    def catalog_path(self) -> Path:
        """Where the cached catalog lives."""
        return self.cache_dir / "catalog" / _CATALOG_FILE

    def catalog_age_days(self) -> float | None:
        """Age of the cached catalog in days, ``None`` if there is none (or a local mirror)."""
        if self._root is not None:
            return None
        try:
            meta = json.loads(_sidecar(self.catalog_path()).read_text(encoding="utf-8"))
            fetched = datetime.fromisoformat(meta["fetched_at"]).timestamp()
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return max(0.0, (self._now() - fetched) / 86400.0)

    def catalog(self, *, refresh: bool = False) -> Catalog:
        """The catalog: cached for ``catalog_max_age_days``, else downloaded again.

        The cached copy is also replaced when ``refresh`` is set, when it came from another
        mirror or when it is corrupt; a failed refresh falls back to it with a warning.
        """
        if self._root is not None:
            if self._catalog is None:
                self._catalog = self._local_catalog(self._root)
            return self._catalog
        if self._catalog is not None and not refresh:
            return self._catalog
        old = self._cached_catalog()  # (bytes, mirror), checked against its sidecar
        if old is not None and not refresh and old[1] == self.mirror:
            age = self.catalog_age_days()
            if age is not None and age <= self.policy.catalog_max_age_days:
                try:
                    self._catalog = Catalog.from_csv(self._decode_catalog(old[0], "cache"))
                    return self._catalog
                except CorpusError:
                    self._drop_catalog()
                    old = None
        url = f"{self.mirror}/{CATALOG_PATH}"
        try:
            data = self._get(url, "catalog")
            if data is None:
                raise CorpusError(f"no Project Gutenberg catalog at {url} (not found)")
            catalog = Catalog.from_csv(self._decode_catalog(data, url))
        except CorpusError as e:
            fallback = self._parse_cached(old)
            if fallback is None:
                raise
            age = self.catalog_age_days()
            when = f" from {age:.0f} days ago" if age is not None else ""
            warnings.warn(f"could not refresh the Project Gutenberg catalog ({e}); "
                          f"using the cached copy{when}", CharpoetWarning, stacklevel=2)
            self._catalog = fallback
            return fallback
        self._store(self.catalog_path(), data, {"url": url, "mirror": self.mirror})
        self._catalog = catalog
        return catalog

    def _parse_cached(self, old: tuple[bytes, str] | None) -> Catalog | None:
        if old is None:
            return None
        try:
            return Catalog.from_csv(self._decode_catalog(old[0], "cache"))
        except CorpusError:
            self._drop_catalog()
            return None

    def _drop_catalog(self) -> None:
        """Delete the cached catalog, with a warning."""
        warnings.warn("cached Project Gutenberg catalog is corrupt; downloading it again",
                      CharpoetWarning, stacklevel=4)
        path = self.catalog_path()
        path.unlink(missing_ok=True)
        _sidecar(path).unlink(missing_ok=True)

    @staticmethod
    def _decode_catalog(data: bytes, source: str) -> str:
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise CorpusError(f"{source}: not a Project Gutenberg catalog (not UTF-8)") from None

    def _cached_catalog(self) -> tuple[bytes, str] | None:
        """``(data, mirror it came from)`` of the cached catalog, if present and intact.

        A copy whose sidecar is missing or does not match is deleted with a warning.
        """
        path = self.catalog_path()
        if not path.exists() and not _sidecar(path).exists():
            return None
        meta = self._verified(path)
        if meta is None:
            self._drop_catalog()
            return None
        return meta["_data"], str(meta.get("mirror", ""))

    @classmethod
    def _local_catalog(cls, root: Path) -> Catalog:
        """``pg_catalog.csv`` (feeds folder or root) of a local mirror, else its RDF files."""
        for path in (root / CATALOG_PATH, root / _CATALOG_FILE):
            if path.is_file():
                try:
                    data = path.read_bytes()
                except OSError as e:
                    raise CorpusError(f"cannot read {path} ({e.strerror or e})") from None
                try:
                    return Catalog.from_csv(cls._decode_catalog(data, str(path)))
                except CorpusError as e:
                    raise CorpusError(f"{path}: {e}") from None
        catalog = Catalog.from_rdf_tree(root)
        if len(catalog) == 0:
            raise CorpusError(f"no Project Gutenberg catalog in {root} (looked for {CATALOG_PATH}, "
                              f"{_CATALOG_FILE} and RDF files)")
        return catalog

    # -- HTTP ---------------------------------------------------------------------------

    def _wait_turn(self) -> None:
        """Sleep until ``min_interval`` after the previous request's start."""
        if self._last_start is not None:
            wait = self._last_start + self.policy.min_interval - self._clock()
            if wait > 0:
                self._sleep(wait)
        self._last_start = self._clock()
        self.requests += 1

    def _get(self, url: str, what: str) -> bytes | None:
        """The body at ``url``, ``None`` if it is missing (403/404/410); retries transients."""
        attempt = 0
        while True:
            self._wait_turn()
            try:
                return self._request(url)
            except _Transient as e:
                if attempt >= self.policy.retries:
                    tries = f"{attempt + 1} tries" if attempt else "1 try"
                    raise CorpusError(f"{what}: could not download {url} after {tries} ({e})"
                                      ) from None
                delay = self.policy.backoff * 2 ** attempt
                if e.retry_after is not None:
                    delay = min(max(e.retry_after, 0.0), MAX_RETRY_AFTER)
                if delay > 0:
                    self._sleep(delay)
                attempt += 1

    def _request(self, url: str) -> bytes | None:
        request = urllib.request.Request(url)
        try:
            with self._opener.open(request, timeout=self.policy.timeout) as response:
                expected = response.headers.get("Content-Length")
                chunks = []
                while chunk := response.read(_CHUNK):
                    chunks.append(chunk)
                data = b"".join(chunks)
        except urllib.error.HTTPError as e:
            _close_quietly(e)
            if e.code in _MISSING:
                return None
            reason = f"HTTP {e.code} {_short(e.reason)}".strip()
            if e.code == 429 or 500 <= e.code < 600:
                retry_after = _retry_after(e.headers.get("Retry-After") if e.headers else None)
                raise _Transient(reason, retry_after) from None
            raise CorpusError(f"{url}: {reason}") from None
        except http.client.IncompleteRead as e:
            raise _Transient(f"connection closed after {len(e.partial)} bytes") from None
        except urllib.error.URLError as e:
            raise _Transient(_short(e.reason)) from None
        except (TimeoutError, socket.timeout):
            raise _Transient("timed out") from None
        except (OSError, http.client.HTTPException) as e:
            raise _Transient(_short(e) if str(e) else type(e).__name__) from None
        if expected is not None and expected.strip().isdigit() and len(data) < int(expected):
            raise _Transient(f"connection closed after {len(data)} of {int(expected)} bytes")
        return data


def _close_quietly(error: urllib.error.HTTPError) -> None:
    try:
        error.close()
    except Exception:  # noqa: BLE001 - an HTTPError without a body cannot be closed
        pass


def _retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds (delta-seconds or an HTTP date), if readable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - time.time())
