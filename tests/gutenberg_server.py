"""A fake Project Gutenberg mirror for tests: an HTTP server on 127.0.0.1 and a local tree.

``GutenbergServer`` is a threaded ``http.server`` on ``127.0.0.1`` (a free port) that serves
an in-memory ``{path: bytes}`` dict, answers 404 for anything else and logs every request.
It can misbehave on demand::

    server.fail("/files/1342/1342-0.txt", 500, 503)   # next two requests: 500, then 503
    server.fail(path, 429, retry_after=1)            # ... with a Retry-After header
    server.cut(path, times=1)      # full Content-Length, half the body, connection closed
    server.delay(path, 1.0)        # wait before answering (for client timeouts)
    server.log                     # [Request(time, method, path, status, headers), ...]
    server.paths()                 # just the requested paths, in order

Fixtures (registered in ``conftest.py``; both need the shared corpora, else they skip):

``gutenberg_server``
    A started ``GutenbergServer`` (stopped after the test), preloaded with the catalog at
    ``/cache/epub/feeds/pg_catalog.csv`` (the head2000 sample plus a record for 2701, which
    the sample lacks) and one book per layout, see ``BOOK_PATHS``:

    ====  ==================================  ==============================================
    id    path                                file (``/work/shared/corpora/gutenberg/raw``)
    ====  ==================================  ==============================================
    5     ``/0/5/5.txt``                      ``SYNTHETIC_BOOK_5`` (root dirs layout, < 10)
    84    ``/cache/epub/84/pg84.txt``         pg84-shelley-frankenstein-modern.txt
    800   ``/files/800/800-8.txt``            pg800-verne-...-fr-iso8859-1.txt (ISO-8859-1)
    1013  ``/files/1013/1013.txt``            pg1013-wells-first-men-in-the-moon.txt
    1342  ``/files/1342/1342-0.txt``          pg1342-austen-...-2008-utf8bom.txt
    2701  ``/dirs/2/7/0/2701/2701-0.txt``     pg2701-melville-moby-dick-2008-utf8bom.txt
    ====  ==================================  ==============================================

    ``server.url`` is the mirror URL (``GutenbergClient(server.url, policy=FetchPolicy(
    min_interval=0.05, backoff=0.01))`` or ``charpoet corpus add ... --mirror URL``);
    ``server.book_ids`` lists the ids and ``server.book_bytes(id)`` gives a book's bytes.

``gutenberg_mirror_dir``
    A temporary directory laid out as a local mirror (``make_mirror_dir``): books 84 at
    ``cache/epub/84/pg84.txt``, 1342 at ``1/3/4/1342/1342-0.txt`` (root dirs tree) and 800
    at ``files/800/800-8.txt``, no CSV catalog, and the 2025 RDF files of 84, 800, 1342
    and 2701 at ``cache/epub/N/pgN.rdf`` (so the catalog is built from RDF; 2701 is
    listed but has no text). ``make_mirror_dir(root, corpora, catalog="csv")`` copies the
    CSV sample to ``cache/epub/feeds/pg_catalog.csv`` instead.
"""

from __future__ import annotations

import functools
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CATALOG_URL_PATH = "/cache/epub/feeds/pg_catalog.csv"
CATALOG_SAMPLE = "gutenberg/catalog/pg_catalog.head2000.csv"
RAW = "gutenberg/raw"
RDF_2025 = "gutenberg/catalog/rdf/2025/cache/epub"

# id -> path on the server; BOOK_SOURCES: id -> file under the shared corpora (None: synthetic)
BOOK_PATHS: dict[int, str] = {
    5: "/0/5/5.txt",
    84: "/cache/epub/84/pg84.txt",
    800: "/files/800/800-8.txt",
    1013: "/files/1013/1013.txt",
    1342: "/files/1342/1342-0.txt",
    2701: "/dirs/2/7/0/2701/2701-0.txt",
}
BOOK_SOURCES: dict[int, str | None] = {
    5: None,
    84: f"{RAW}/pg84-shelley-frankenstein-modern.txt",
    800: f"{RAW}/pg800-verne-le-tour-du-monde-en-80-jours-fr-iso8859-1.txt",
    1013: f"{RAW}/pg1013-wells-first-men-in-the-moon.txt",
    1342: f"{RAW}/pg1342-austen-pride-and-prejudice-2008-utf8bom.txt",
    2701: f"{RAW}/pg2701-melville-moby-dick-2008-utf8bom.txt",
}
# pg_catalog.csv record for 2701 (from its 2025 RDF); the head2000 sample stops at 2030.
CATALOG_EXTRA_ROWS = (
    '2701,Text,2001-07-01,"Moby Dick; Or, The Whale",en,"Melville, Herman, 1819-1891",'
    '"Whaling -- Fiction; Sea stories; Psychological fiction; Ship captains -- Fiction; '
    'Adventure stories; Mentally ill -- Fiction; Ahab, Captain (Fictitious character) -- Fiction; '
    'Whales -- Fiction; Whaling ships -- Fiction",PS,'
    'Best Books Ever Listings; Browsing: Literature; Browsing: Fiction\n'
)

SYNTHETIC_BOOK_5 = (
    "The Project Gutenberg EBook of The United States Constitution\r\n"
    "\r\n"
    "This eBook is for the use of anyone anywhere at no cost and with\r\n"
    "almost no restrictions whatsoever.\r\n"
    "\r\n"
    "Title: The United States Constitution\r\n"
    "\r\n"
    "Language: English\r\n"
    "\r\n"
    "*** START OF THIS PROJECT GUTENBERG EBOOK THE UNITED STATES CONSTITUTION ***\r\n"
    "\r\n"
    "We the People of the United States, in Order to form a more perfect Union,\r\n"
    "establish Justice, insure domestic Tranquility, provide for the common\r\n"
    "defence, promote the general Welfare, and secure the Blessings of Liberty to\r\n"
    "ourselves and our Posterity, do ordain and establish this Constitution for the\r\n"
    "United States of America.\r\n"
    "\r\n"
    "Article I.\r\n"
    "\r\n"
    "Section 1. All legislative Powers herein granted shall be vested in a Congress\r\n"
    "of the United States, which shall consist of a Senate and House of\r\n"
    "Representatives.\r\n"
    "\r\n"
    "*** END OF THIS PROJECT GUTENBERG EBOOK THE UNITED STATES CONSTITUTION ***\r\n"
).encode("ascii")


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    time: float            # time.monotonic() when the request line was read
    method: str
    path: str
    status: int            # what was answered (200 also for a cut response)
    headers: dict[str, str] = field(default_factory=dict, compare=False)
    cut: bool = False      # the body was cut short


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"  # one request per connection; a cut is a plain close

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.owner._answer(self, head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self.server.owner._answer(self, head=True)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: GutenbergServer

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up (timeout, cut) is expected here


class GutenbergServer:
    """An in-memory Project Gutenberg mirror over HTTP on 127.0.0.1."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self.files: dict[str, bytes] = dict(files or {})
        self.log: list[Request] = []
        self.book_ids: list[int] = []
        self._failures: dict[str, list[tuple[int, float | None]]] = {}
        self._cuts: dict[str, int] = {}
        self._delays: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- content and misbehaviour ---------------------------------------------------------

    def add(self, path: str, data: bytes) -> None:
        """Serve ``data`` at ``path`` (``"/files/84/84.txt"``)."""
        self.files[_norm(path)] = data

    def remove(self, path: str) -> None:
        self.files.pop(_norm(path), None)

    def fail(self, path: str, *statuses: int, retry_after: float | None = None) -> None:
        """Answer the next ``len(statuses)`` requests of ``path`` with these statuses."""
        with self._lock:
            self._failures.setdefault(_norm(path), []).extend((s, retry_after) for s in statuses)

    def cut(self, path: str, times: int = 1) -> None:
        """The next ``times`` answers of ``path`` stop after half the body."""
        with self._lock:
            self._cuts[_norm(path)] = self._cuts.get(_norm(path), 0) + times

    def delay(self, path: str, seconds: float, times: int = 1) -> None:
        """Wait ``seconds`` before answering the next ``times`` requests of ``path``."""
        with self._lock:
            self._delays.setdefault(_norm(path), []).extend([seconds] * times)

    def book_bytes(self, book_id: int) -> bytes:
        return self.files[BOOK_PATHS[book_id]]

    def paths(self, method: str | None = "GET") -> list[str]:
        """The requested paths, in order."""
        return [r.path for r in self.log if method is None or r.method == method]

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> GutenbergServer:
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> GutenbergServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- answering ------------------------------------------------------------------------

    def _answer(self, handler: _Handler, *, head: bool) -> None:
        started = time.monotonic()
        path = _norm(handler.path.split("?", 1)[0])
        with self._lock:
            failures = self._failures.get(path)
            failure = failures.pop(0) if failures else None
            delays = self._delays.get(path)
            delay = delays.pop(0) if delays else 0.0
            cut = failure is None and path in self.files and self._cuts.get(path, 0) > 0
            if cut:
                self._cuts[path] -= 1
        data = self.files.get(path)
        status = failure[0] if failure else (200 if data is not None else 404)
        with self._lock:
            self.log.append(Request(started, handler.command, path, status, dict(handler.headers),
                                    cut=cut))
        if delay:
            time.sleep(delay)
        if status != 200:
            body = f"{status} fake mirror\n".encode()
            handler.send_response(status)
            if failure and failure[1] is not None:
                handler.send_header("Retry-After", f"{failure[1]:g}")
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if not head:
                handler.wfile.write(body)
            return
        assert data is not None
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if head:
            return
        if cut:
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        handler.wfile.write(data)


def _norm(path: str) -> str:
    return "/" + path.lstrip("/")


# -- shared-corpora content -----------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _read(path: Path) -> bytes:
    return path.read_bytes()


def book_source_bytes(corpora: Path, book_id: int) -> bytes:
    """The bytes of a fixture book (``SYNTHETIC_BOOK_5`` for 5)."""
    source = BOOK_SOURCES[book_id]
    return SYNTHETIC_BOOK_5 if source is None else _read(corpora / source)


def catalog_bytes(corpora: Path) -> bytes:
    """The head2000 sample with ``CATALOG_EXTRA_ROWS`` appended."""
    data = _read(corpora / CATALOG_SAMPLE)
    if not data.endswith(b"\n"):
        data += b"\n"
    return data + CATALOG_EXTRA_ROWS.encode("utf-8")


def make_server(corpora: Path) -> GutenbergServer:
    """A (not yet started) server with the catalog and the books of ``BOOK_PATHS``."""
    server = GutenbergServer()
    server.add(CATALOG_URL_PATH, catalog_bytes(corpora))
    for book_id, path in BOOK_PATHS.items():
        server.add(path, book_source_bytes(corpora, book_id))
    server.book_ids = sorted(BOOK_PATHS)
    return server


MIRROR_DIR_BOOKS: dict[int, str] = {
    84: "cache/epub/84/pg84.txt",
    1342: "1/3/4/1342/1342-0.txt",
    800: "files/800/800-8.txt",
}
MIRROR_DIR_RDF = (84, 800, 1342, 2701)


def make_mirror_dir(root: Path, corpora: Path, *, catalog: str = "rdf") -> Path:
    """Lay out a local mirror at ``root``: ``MIRROR_DIR_BOOKS`` plus an RDF or CSV catalog."""
    if catalog not in ("rdf", "csv", "none"):
        raise ValueError(f"catalog must be 'rdf', 'csv' or 'none', not {catalog!r}")
    for book_id, rel in MIRROR_DIR_BOOKS.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(book_source_bytes(corpora, book_id))
    if catalog == "rdf":
        for book_id in MIRROR_DIR_RDF:
            target = root / f"cache/epub/{book_id}/pg{book_id}.rdf"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(corpora / RDF_2025 / str(book_id) / f"pg{book_id}.rdf", target)
    elif catalog == "csv":
        target = root / CATALOG_URL_PATH.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(catalog_bytes(corpora))
    return root


@pytest.fixture
def gutenberg_server(shared_corpora: Path,
                     monkeypatch: pytest.MonkeyPatch) -> Iterator[GutenbergServer]:
    """A started fake mirror with the catalog and six books (see the module docstring)."""
    for name in ("no_proxy", "NO_PROXY"):  # an http_proxy in the environment must not apply
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    server = make_server(shared_corpora).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gutenberg_mirror_dir(tmp_path: Path, shared_corpora: Path) -> Path:
    """A local mirror directory: books 84, 800, 1342 and RDF files of 84, 800, 1342, 2701."""
    return make_mirror_dir(tmp_path / "pg-mirror", shared_corpora)
