"""Tests for charpoet.corpus.gutenberg_fetch against the fake mirror of gutenberg_server.py."""

from __future__ import annotations

import hashlib
import json
import socket
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from gutenberg_server import (
    BOOK_PATHS,
    CATALOG_URL_PATH,
    MIRROR_DIR_BOOKS,
    GutenbergServer,
    make_mirror_dir,
)

from charpoet.corpus.cache import charpoet_home
from charpoet.corpus.gutenberg_fetch import (
    DEFAULT_MIRROR,
    MAX_RETRY_AFTER,
    MIRROR_ENV,
    FetchPolicy,
    FetchPolicyError,
    GutenbergClient,
    dirs_path,
)
from charpoet.errors import CharpoetWarning, ConfigError, CorpusError

FAST = {"min_interval": 0.05, "backoff": 0.01, "retries": 2, "timeout": 5.0}


def make_client(mirror: object, **policy: object) -> GutenbergClient:
    policy = {**FAST, **policy}
    return GutenbergClient(mirror, policy=FetchPolicy(**policy))  # type: ignore[arg-type]


class FakeTime:
    """A monotonic clock that only moves when slept on; records the sleeps."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.t += seconds


def cache_files(root: Path | None = None) -> list[str]:
    """Every file below the cache, hidden temp files included, relative and sorted."""
    root = root or charpoet_home() / "gutenberg"
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def expected_candidates(n: int) -> list[str]:
    tree = dirs_path(n)
    variants = [f"{n}-0.txt", f"{n}-8.txt", f"{n}.txt"]
    return ([f"cache/epub/{n}/pg{n}.txt"] + [f"files/{n}/{v}" for v in variants]
            + [f"dirs/{tree}/{v}" for v in variants] + [f"{tree}/{v}" for v in variants])


# -- candidates -------------------------------------------------------------------------------

def test_dirs_layout_and_candidate_order() -> None:
    assert [dirs_path(n) for n in (5, 84, 1342, 12345)] == [
        "0/5", "8/84", "1/3/4/1342", "1/2/3/4/12345"]
    client = GutenbergClient("http://127.0.0.1:9")
    assert client.candidate_paths(84) == [
        "cache/epub/84/pg84.txt", "files/84/84-0.txt", "files/84/84-8.txt", "files/84/84.txt",
        "dirs/8/84/84-0.txt", "dirs/8/84/84-8.txt", "dirs/8/84/84.txt",
        "8/84/84-0.txt", "8/84/84-8.txt", "8/84/84.txt"]
    assert client.candidate_paths(5)[-3:] == ["0/5/5-0.txt", "0/5/5-8.txt", "0/5/5.txt"]
    assert client.candidate_paths(12345)[4] == "dirs/1/2/3/4/12345/12345-0.txt"


# -- downloading ------------------------------------------------------------------------------

def test_download_order_fallbacks_and_layout_memo(gutenberg_server: GutenbergServer) -> None:
    server = gutenberg_server
    client = make_client(server.url)
    expected: list[str] = []
    for book_id in (84, 1342, 800, 1013, 2701, 5):
        order = client.candidate_paths(book_id)
        raw = client.fetch(book_id)
        target = BOOK_PATHS[book_id].lstrip("/")
        expected += ["/" + p for p in order[: order.index(target) + 1]]
        assert (raw.id, raw.data, raw.from_cache) == (book_id, server.book_bytes(book_id), False)
        assert raw.filename == target.rsplit("/", 1)[1]
        assert raw.url == f"{server.url}/{target}"
    assert server.paths() == expected
    assert expected[:7] == [  # the exact order, including the memo of the "files" layout
        "/cache/epub/84/pg84.txt",
        "/cache/epub/1342/pg1342.txt", "/files/1342/1342-0.txt",
        "/files/800/800-0.txt", "/files/800/800-8.txt",
        "/files/1013/1013-0.txt", "/files/1013/1013-8.txt"]
    assert client.downloads == 6 and client.requests == len(expected)
    assert all(r.status in (200, 404) for r in server.log)


def test_layout_memo_saves_requests(gutenberg_server: GutenbergServer, tmp_path: Path) -> None:
    server = gutenberg_server
    fresh = GutenbergClient(server.url, policy=FetchPolicy(**FAST), cache_dir=tmp_path / "fresh")
    fresh.fetch(1013)
    assert server.paths() == ["/cache/epub/1013/pg1013.txt", "/files/1013/1013-0.txt",
                              "/files/1013/1013-8.txt", "/files/1013/1013.txt"]
    server.clear_log()
    warm = make_client(server.url)
    warm.fetch(1342)   # found in the files layout, which is now tried first
    server.clear_log()
    warm.fetch(1013)
    assert server.paths() == [
        "/files/1013/1013-0.txt", "/files/1013/1013-8.txt", "/files/1013/1013.txt"]
    assert warm.candidate_paths(2701)[:4] == [
        "files/2701/2701-0.txt", "files/2701/2701-8.txt", "files/2701/2701.txt",
        "cache/epub/2701/pg2701.txt"]
    warm.fetch(2701)   # dirs layout
    assert warm.candidate_paths(5)[0] == "dirs/0/5/5-0.txt"


def test_8bit_file_returned_unchanged(gutenberg_server: GutenbergServer,
                                     shared_corpora: Path) -> None:
    raw = make_client(gutenberg_server.url).fetch(800)
    name = "pg800-verne-le-tour-du-monde-en-80-jours-fr-iso8859-1.txt"
    source = shared_corpora / "gutenberg/raw" / name
    assert raw.filename == "800-8.txt"
    assert raw.data == source.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.data.decode("utf-8")
    assert "Phileas" in raw.data.decode("latin-1")


def test_headers_sent(gutenberg_server: GutenbergServer) -> None:
    make_client(gutenberg_server.url).fetch(84)
    headers = gutenberg_server.log[0].headers
    assert headers["User-Agent"] == "charpoet/0.1.0 (+https://github.com/charpoet)"
    assert headers["Accept-Encoding"] == "identity"


def test_403_and_410_move_on_without_retry(gutenberg_server: GutenbergServer) -> None:
    server = gutenberg_server
    server.fail("/cache/epub/1342/pg1342.txt", 403)
    server.fail("/cache/epub/800/pg800.txt", 410)
    client = make_client(server.url, retries=3)
    assert client.fetch(1342).filename == "1342-0.txt"
    server.clear_log()
    client = make_client(server.url, retries=3)
    assert client.fetch(800).filename == "800-8.txt"
    assert [r.status for r in server.log] == [410, 404, 200]


def test_missing_everywhere(gutenberg_server: GutenbergServer) -> None:
    client = make_client(gutenberg_server.url, min_interval=0.0)
    with pytest.raises(CorpusError) as info:
        client.fetch(99999)
    tried = expected_candidates(99999)
    assert str(info.value) == (f"book 99999: no plain-text file on {gutenberg_server.url} "
                               f"(tried 10 locations: {', '.join(tried)})")
    assert "\n" not in str(info.value)
    assert gutenberg_server.paths() == ["/" + p for p in tried]
    assert client.downloads == 0 and cache_files() == []


@pytest.mark.parametrize("bad", [0, -3, "abc", "", 1.5, True, None, "12a"])
def test_invalid_book_ids(bad: object) -> None:
    client = GutenbergClient("http://127.0.0.1:9")
    with pytest.raises(CorpusError, match="invalid Project Gutenberg book id.*positive whole"):
        client.fetch(bad)  # type: ignore[arg-type]
    with pytest.raises(CorpusError, match="invalid Project Gutenberg book id"):
        client.candidate_paths(bad)  # type: ignore[arg-type]


def test_string_id_accepted(gutenberg_server: GutenbergServer) -> None:
    assert make_client(gutenberg_server.url).fetch(" 84 ").id == 84  # type: ignore[arg-type]


# -- cache ------------------------------------------------------------------------------------

def test_cache_is_used_the_second_time(gutenberg_server: GutenbergServer) -> None:
    server = gutenberg_server
    first = make_client(server.url).fetch(1342)
    assert cache_files() == ["books/1342/1342-0.txt", "books/1342/1342-0.txt.json"]
    meta = json.loads((charpoet_home() / "gutenberg/books/1342/1342-0.txt.json").read_text())
    assert meta["url"] == first.url and meta["size"] == len(first.data)
    assert meta["sha256"] == hashlib.sha256(first.data).hexdigest()
    assert abs(datetime.fromisoformat(meta["fetched_at"]).timestamp() - time.time()) < 60
    requests = len(server.log)
    client = make_client(server.url)
    second = client.fetch(1342)
    assert len(server.log) == requests  # no request at all
    assert (second.data, second.filename, second.url, second.from_cache) == (
        first.data, "1342-0.txt", first.url, True)
    assert client.downloads == 0


def test_custom_cache_dir(gutenberg_server: GutenbergServer, tmp_path: Path) -> None:
    client = GutenbergClient(gutenberg_server.url, policy=FetchPolicy(**FAST),
                             cache_dir=tmp_path / "c")
    client.fetch(84)
    assert cache_files(tmp_path / "c") == ["books/84/pg84.txt", "books/84/pg84.txt.json"]
    assert cache_files() == []


@pytest.mark.parametrize("damage",
                         ["edit", "truncate", "delete sidecar", "bad sidecar", "delete file"])
def test_corrupt_cache_is_fetched_again(gutenberg_server: GutenbergServer, damage: str) -> None:
    server = gutenberg_server
    good = make_client(server.url).fetch(84)
    path = charpoet_home() / "gutenberg/books/84/pg84.txt"
    sidecar = path.with_name("pg84.txt.json")
    if damage == "edit":
        path.write_bytes(good.data.replace(b"Frankenstein", b"Frankenstien", 1))
    elif damage == "truncate":
        path.write_bytes(good.data[:1000])
    elif damage == "delete sidecar":
        sidecar.unlink()
    elif damage == "bad sidecar":
        sidecar.write_text("{not json")
    else:
        path.unlink()
    server.clear_log()
    with pytest.warns(CharpoetWarning,
                      match="cached copy of book 84 is corrupt; downloading it again"):
        again = make_client(server.url).fetch(84)
    assert again.data == good.data and not again.from_cache
    assert server.paths() == ["/cache/epub/84/pg84.txt"]
    assert cache_files() == ["books/84/pg84.txt", "books/84/pg84.txt.json"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert make_client(server.url).fetch(84).from_cache


# -- politeness -------------------------------------------------------------------------------

def test_rate_limit_in_real_time(gutenberg_server: GutenbergServer) -> None:
    client = make_client(gutenberg_server.url, min_interval=0.15)
    client.catalog()
    client.fetch(1013)   # 4 requests: 3 misses, then the file
    times = [r.time for r in gutenberg_server.log]
    assert len(times) == 5
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.15 - 0.01, gaps


def test_rate_limit_with_injected_clock(gutenberg_server: GutenbergServer) -> None:
    fake = FakeTime()
    client = GutenbergClient(gutenberg_server.url,
                             policy=FetchPolicy(min_interval=2.0, backoff=3.0),
                             sleep=fake.sleep, clock=fake.clock)
    client.fetch(1013)
    assert fake.sleeps == [2.0, 2.0, 2.0]
    gutenberg_server.fail("/files/1342/1342-0.txt", 500)
    fake.sleeps.clear()
    client.fetch(1342)   # files layout first: 1342-0.txt fails once; back-off 3 s > interval
    assert fake.sleeps == [2.0, 3.0]


def test_retry_after_500_then_503(gutenberg_server: GutenbergServer) -> None:
    server = gutenberg_server
    path = "/files/1342/1342-0.txt"
    server.fail(path, 500, 503)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    client = GutenbergClient(server.url, policy=FetchPolicy(**{**FAST, "retries": 3}), sleep=sleep)
    raw = client.fetch(1342)
    assert raw.data == server.book_bytes(1342)
    assert [(r.path, r.status) for r in server.log][1:] == [(path, 500), (path, 503), (path, 200)]
    assert 0.01 in sleeps and 0.02 in sleeps   # back-off doubles
    assert client.downloads == 1


def test_retries_exhausted(gutenberg_server: GutenbergServer) -> None:
    server = gutenberg_server
    path = "/cache/epub/84/pg84.txt"
    server.fail(path, 500, 502, 503, 503)
    with pytest.raises(CorpusError) as info:
        make_client(server.url, retries=2).fetch(84)
    message = str(info.value)
    assert message == (f"book 84: could not download {server.url}{path} after 3 tries "
                       "(HTTP 503 Service Unavailable)")
    assert server.paths() == [path] * 3
    assert cache_files() == []


def test_429_honours_retry_after(gutenberg_server: GutenbergServer) -> None:
    fake = FakeTime()
    client = GutenbergClient(gutenberg_server.url, sleep=fake.sleep, clock=fake.clock,
                             policy=FetchPolicy(min_interval=1.0, backoff=0.5))
    gutenberg_server.fail("/cache/epub/84/pg84.txt", 429, 429, retry_after=7)
    client.fetch(84)
    assert fake.sleeps == [7.0, 7.0]
    gutenberg_server.fail("/cache/epub/84/pg84.txt", 503, retry_after=100000)
    (charpoet_home() / "gutenberg/books/84/pg84.txt").unlink()
    with pytest.warns(CharpoetWarning):
        client.fetch(84)
    assert fake.sleeps[-1] == MAX_RETRY_AFTER


def test_timeout_is_retried(gutenberg_server: GutenbergServer) -> None:
    server = gutenberg_server
    # the held answers come long after the client's timeout; the others come at once, so even a
    # loaded machine answers them well within it
    server.delay("/cache/epub/84/pg84.txt", 30.0)
    client = make_client(server.url, timeout=1.0, retries=1)
    assert client.fetch(84).data == server.book_bytes(84)
    assert server.paths() == ["/cache/epub/84/pg84.txt"] * 2
    server.delay("/cache/epub/1342/pg1342.txt", 30.0, times=2)   # the cache layout goes first
    with pytest.raises(CorpusError, match=r"^book 1342: could not download .*pg1342\.txt "
                                          r"after 2 tries \(timed out\)$"):
        client.fetch(1342)


def test_connection_cut_once_leaves_no_partial_file(gutenberg_server: GutenbergServer) -> None:
    server = gutenberg_server
    path = "/files/800/800-8.txt"
    server.cut(path)
    raw = make_client(server.url, retries=1).fetch(800)
    assert raw.data == server.book_bytes(800)
    log = [r for r in server.log if r.path == path]
    assert [r.cut for r in log] == [True, False]
    assert cache_files() == ["books/800/800-8.txt", "books/800/800-8.txt.json"]


def test_connection_cut_every_time(gutenberg_server: GutenbergServer) -> None:
    server = gutenberg_server
    path = "/files/800/800-8.txt"
    server.cut(path, times=5)
    size = len(server.book_bytes(800))
    with pytest.raises(CorpusError) as info:
        make_client(server.url, retries=2).fetch(800)
    assert str(info.value) == (f"book 800: could not download {server.url}{path} after 3 tries "
                               f"(connection closed after {size // 2} of {size} bytes)")
    assert cache_files() == []   # no file, no sidecar, no temp file


def test_other_http_error_is_not_retried(gutenberg_server: GutenbergServer) -> None:
    gutenberg_server.fail("/cache/epub/84/pg84.txt", 400)
    with pytest.raises(CorpusError, match=r"pg84\.txt: HTTP 400"):
        make_client(gutenberg_server.url, retries=3).fetch(84)
    assert len(gutenberg_server.log) == 1


def test_unreachable_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client(f"http://127.0.0.1:{port}", retries=1, min_interval=0.0)
    with pytest.raises(CorpusError, match=r"book 84: could not download http://127\.0\.0\.1:\d+/"
                                          r"cache/epub/84/pg84\.txt after 2 tries \(.*refused"):
        client.fetch(84)


def test_download_limit(gutenberg_server: GutenbergServer) -> None:
    client = make_client(gutenberg_server.url, max_downloads=2)
    client.fetch(84)
    client.fetch(1342)
    requests = len(gutenberg_server.log)
    with pytest.raises(CorpusError) as info:
        client.fetch(800)
    assert str(info.value) == ("download limit reached (2 books this run); "
                               "raise --max-downloads to fetch more")
    assert len(gutenberg_server.log) == requests
    assert client.fetch(84).from_cache and client.downloads == 2
    with pytest.raises(CorpusError, match="download limit reached .0 books"):
        make_client(gutenberg_server.url, max_downloads=0).fetch(800)


# -- catalog ----------------------------------------------------------------------------------

def test_catalog_download_and_cache(gutenberg_server: GutenbergServer) -> None:
    server = gutenberg_server
    client = make_client(server.url)
    assert client.catalog_age_days() is None
    catalog = client.catalog()
    assert len(catalog) == 1983 and catalog.get(2701).author == "Herman Melville"
    assert server.paths() == [CATALOG_URL_PATH]
    assert client.catalog() is catalog   # memo per client
    assert cache_files() == ["catalog/pg_catalog.csv", "catalog/pg_catalog.csv.json"]
    meta = json.loads((charpoet_home() / "gutenberg/catalog/pg_catalog.csv.json").read_text())
    assert meta["mirror"] == server.url and meta["url"] == server.url + CATALOG_URL_PATH
    other = make_client(server.url)
    assert len(other.catalog()) == 1983 and len(server.log) == 1
    assert 0 <= other.catalog_age_days() < 0.01


def test_catalog_refresh(gutenberg_server: GutenbergServer) -> None:
    server = gutenberg_server
    make_client(server.url).catalog()
    # older than catalog_max_age_days (injected wall clock)
    late = GutenbergClient(server.url, policy=FetchPolicy(**FAST, catalog_max_age_days=30),
                           now=lambda: time.time() + 31 * 86400)
    assert late.catalog_age_days() == pytest.approx(31, abs=0.01)
    late.catalog()
    assert len(server.log) == 2
    # not yet old enough
    early = GutenbergClient(server.url, policy=FetchPolicy(**FAST),
                            now=lambda: time.time() + 29 * 86400)
    early.catalog()
    assert len(server.log) == 2
    # the sidecar's date says 40 days ago
    sidecar = charpoet_home() / "gutenberg/catalog/pg_catalog.csv.json"
    meta = json.loads(sidecar.read_text())
    meta["fetched_at"] = (datetime.now(timezone.utc) - timedelta(days=40)).isoformat()
    sidecar.write_text(json.dumps(meta))
    make_client(server.url).catalog()
    assert len(server.log) == 3
    # refresh=True, even on the same client
    client = make_client(server.url)
    client.catalog()
    assert len(server.log) == 3
    client.catalog(refresh=True)
    assert len(server.log) == 4
    # cached from another mirror
    meta = json.loads(sidecar.read_text())
    meta["mirror"] = "https://example.org"
    sidecar.write_text(json.dumps(meta))
    make_client(server.url).catalog()
    assert len(server.log) == 5
    assert server.paths() == [CATALOG_URL_PATH] * 5


def test_catalog_refresh_failure_falls_back(gutenberg_server: GutenbergServer) -> None:
    server = gutenberg_server
    make_client(server.url).catalog()
    server.fail(CATALOG_URL_PATH, 503, 503, 503)
    with pytest.warns(CharpoetWarning,
                      match="could not refresh the Project Gutenberg catalog .*HTTP 503.*cached"):
        catalog = make_client(server.url).catalog(refresh=True)
    assert len(catalog) == 1983
    server.remove(CATALOG_URL_PATH)
    late = GutenbergClient(server.url, policy=FetchPolicy(**FAST),
                           now=lambda: time.time() + 90 * 86400)
    with pytest.warns(CharpoetWarning, match="not found.*cached copy from 90 days ago"):
        assert len(late.catalog()) == 1983


def test_catalog_failures_without_cache(gutenberg_server: GutenbergServer) -> None:
    server = gutenberg_server
    server.remove(CATALOG_URL_PATH)
    with pytest.raises(CorpusError,
                       match=r"no Project Gutenberg catalog at http://.*\.csv \(not found\)"):
        make_client(server.url).catalog()
    server.add(CATALOG_URL_PATH, b"<html><body>Gutenberg is down</body></html>\n")
    with pytest.raises(CorpusError, match="not a Project Gutenberg catalog"):
        make_client(server.url).catalog()
    server.add(CATALOG_URL_PATH, b"Text#,Title\n1,\xff\xfe\n")
    with pytest.raises(CorpusError, match="not UTF-8"):
        make_client(server.url).catalog()
    assert cache_files() == []


def test_corrupt_catalog_is_fetched_again(gutenberg_server: GutenbergServer) -> None:
    server = gutenberg_server
    make_client(server.url).catalog()
    path = charpoet_home() / "gutenberg/catalog/pg_catalog.csv"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.warns(CharpoetWarning, match="cached Project Gutenberg catalog is corrupt"):
        assert len(make_client(server.url).catalog()) == 1983
    assert len(server.log) == 2
    assert len(make_client(server.url).catalog()) == 1983 and len(server.log) == 2


# -- mirrors ----------------------------------------------------------------------------------

def test_mirror_resolution(monkeypatch: pytest.MonkeyPatch, gutenberg_server: GutenbergServer,
                           tmp_path: Path) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert GutenbergClient().mirror == DEFAULT_MIRROR == "https://www.gutenberg.org"
    monkeypatch.setenv(MIRROR_ENV, gutenberg_server.url + "/")
    client = GutenbergClient(policy=FetchPolicy(**FAST))
    assert client.mirror == gutenberg_server.url and not client.is_local
    assert client.fetch(84).url == gutenberg_server.url + "/cache/epub/84/pg84.txt"
    assert GutenbergClient("https://example.org/pg/").mirror == "https://example.org/pg"
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))
    assert GutenbergClient().is_local and GutenbergClient().mirror == str(tmp_path.resolve())


def test_bad_mirrors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"^Project Gutenberg mirror .*nowhere does not exist$"):
        GutenbergClient(tmp_path / "nowhere")
    with pytest.raises(CorpusError, match="does not exist"):
        GutenbergClient(str(tmp_path / "nowhere"))
    with pytest.raises(CorpusError, match="does not exist"):
        GutenbergClient((tmp_path / "nowhere").as_uri())
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(CorpusError, match="is not a directory"):
        GutenbergClient(tmp_path / "file.txt")
    with pytest.raises(CorpusError, match="unsupported Project Gutenberg mirror"):
        GutenbergClient("ftp://aleph.gutenberg.org")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no Project Gutenberg catalog in .*empty"):
        GutenbergClient(tmp_path / "empty").catalog()


def test_local_mirror_dir(gutenberg_mirror_dir: Path, shared_corpora: Path) -> None:
    client = GutenbergClient(gutenberg_mirror_dir, policy=FetchPolicy(max_downloads=0))
    assert client.is_local and client.mirror == str(gutenberg_mirror_dir.resolve())
    for book_id, rel in MIRROR_DIR_BOOKS.items():
        raw = client.fetch(book_id)
        path = gutenberg_mirror_dir.resolve() / rel
        assert (raw.data, raw.filename, raw.url, raw.from_cache) == (
            path.read_bytes(), path.name, str(path), False)
    assert client.downloads == 0 and cache_files() == []
    catalog = client.catalog()   # built from the RDF files
    assert sorted(b.id for b in catalog) == [84, 800, 1342, 2701]
    assert catalog.get(800).author == "Jules Verne" and client.catalog_age_days() is None
    with pytest.raises(CorpusError,
                       match=r"book 2701: no plain-text file on .*pg-mirror \(tried 10 locations"):
        client.fetch(2701)


def test_local_mirror_with_csv_and_dirs_tree(tmp_path: Path, shared_corpora: Path) -> None:
    root = make_mirror_dir(tmp_path / "m", shared_corpora, catalog="csv")
    (root / "dirs/2/7/0/2701").mkdir(parents=True)
    (root / "dirs/2/7/0/2701/2701.txt").write_bytes(b"Call me Ishmael.\n")
    client = GutenbergClient(root.as_uri())   # file:// URL
    assert client.is_local
    assert len(client.catalog()) == 1983
    raw = client.fetch(2701)
    assert (raw.data, raw.filename) == (b"Call me Ishmael.\n", "2701.txt")
    (root / "pg_catalog.csv").write_text("not,a,catalog\n")
    (root / "cache/epub/feeds/pg_catalog.csv").unlink()
    with pytest.raises(CorpusError, match=r"pg_catalog\.csv: not a Project Gutenberg catalog"):
        GutenbergClient(root).catalog()


# -- policy -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [{"min_interval": -1}, {"retries": -1}, {"retries": 1.5},
                                 {"backoff": float("nan")}, {"timeout": 0}, {"max_downloads": -5},
                                 {"catalog_max_age_days": -0.5}, {"max_downloads": "3"}])
def test_policy_validation(bad: dict[str, object]) -> None:
    policy = FetchPolicy(**bad)  # type: ignore[arg-type]
    with pytest.raises(FetchPolicyError) as info:
        policy.validate()
    assert isinstance(info.value, ConfigError) and isinstance(info.value, CorpusError)
    name = next(iter(bad))
    flag = "--catalog-max-age" if name == "catalog_max_age_days" else "--" + name.replace("_", "-")
    assert str(info.value).startswith(flag + " must be")
    with pytest.raises(CorpusError):
        GutenbergClient("http://127.0.0.1:9", policy=policy)
    assert FetchPolicy().validate() == FetchPolicy(2.0, 3, 2.0, 30.0, 50, 30.0)
