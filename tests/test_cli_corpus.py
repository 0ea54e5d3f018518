"""``charpoet corpus ...`` end to end against a fake Gutenberg mirror on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charpoet.cli import app

FAST = ["--min-interval", "0.01"]


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def fails(result, message: str):
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], result.stderr
    return result


def test_search(gutenberg_server) -> None:
    mirror = ["--mirror", gutenberg_server.url]
    result = ok(cli("corpus", "search", "--author", "austen", *mirror))
    assert "Pride and Prejudice" in result.stdout and "Jane Austen" in result.stdout
    assert "found in 1,983" in result.stderr
    french = ok(cli("corpus", "search", "--language", "French", "--limit", "3", *mirror))
    assert len(french.stdout.strip().splitlines()) == 4  # header + 3 books
    assert "showing 3" in french.stderr
    rows = [json.loads(line) for line in ok(cli("corpus", "search", "moby", "--json", *mirror)).stdout.splitlines()]
    assert {r["id"] for r in rows} >= {15, 2701}
    by_number = ok(cli("corpus", "search", "1342", "--json", *mirror)).stdout.splitlines()
    assert [json.loads(line)["title"] for line in by_number] == ["Pride and Prejudice"]
    both = ok(cli("corpus", "search", "--author", "verne", "--language", "en", "--json", *mirror))
    assert all("en" in json.loads(line)["languages"] for line in both.stdout.splitlines())
    fails(cli("corpus", "search", "--language", "Klingon", *mirror), "unknown language")
    fails(cli("corpus", "search", "--limit", "-1", *mirror), "--limit")
    catalog_requests = [p for p in gutenberg_server.paths() if p.endswith("pg_catalog.csv")]
    assert len(catalog_requests) == 1  # downloaded once, then cached


def test_add_list_show_remove_and_train(gutenberg_server, tmp_path: Path) -> None:
    mirror = ["--mirror", gutenberg_server.url, *FAST]
    added = ok(cli("corpus", "add", "84", "5", "--library", "tiny", *mirror))
    assert "added" in added.stdout and "Frankenstein" in added.stdout and "Mary Wollstonecraft Shelley" in added.stdout
    assert "library tiny: 2 books" in added.stderr

    listing = ok(cli("corpus", "list"))
    assert "tiny" in listing.stdout and "2 books" in listing.stdout
    books = ok(cli("corpus", "list", "--library", "tiny"))
    assert "Frankenstein" in books.stdout and "84" in books.stdout

    shown = ok(cli("corpus", "show", "84", "--report", "--mirror", gutenberg_server.url))
    assert "Shelley, Mary Wollstonecraft" in shown.stdout and "Science fiction" in shown.stdout
    assert "in library tiny" in shown.stdout and "header" in shown.stdout
    fails(cli("corpus", "show", "999999", "--mirror", gutenberg_server.url), "not in the Project Gutenberg catalog")
    by_name = ok(cli("corpus", "show", "tiny"))  # a library's name shows its books
    assert by_name.stdout == books.stdout and "library tiny: 2 books" in by_name.stderr
    fails(cli("corpus", "show", "tinny"), "'tinny' is neither a book number nor a library (libraries: tiny)")

    # train on the library: every book is a source, titled and credited
    run = tmp_path / "run"
    ok(cli("train", "--library", "tiny", "--checkpoint-path", run, "--rnn-size", "16", "--embedding-size", "8",
           "--num-layers", "1", "--batch-size", "4", "--seq-len", "16", "--num-epochs", "0.002",
           "--stats-every", "1000steps", "--device", "cpu"))
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["library"] == "tiny"
    from charpoet.checkpoint import RunDir

    stored = RunDir(run).read_library()
    assert stored.names == ["pg84", "pg5"] and stored.sources[0].author == "Mary Wollstonecraft Shelley"
    fails(cli("train", "--library", "tiny", "--text-path", tmp_path, "--checkpoint-path", tmp_path / "r2"),
          "only one of")
    fails(cli("train", "--library", "nothing", "--checkpoint-path", tmp_path / "r3"), "no library 'nothing'")

    ok(cli("corpus", "remove", "5", "--library", "tiny"))
    fails(cli("corpus", "remove", "5", "--library", "tiny"), "not in library tiny: 5")
    assert "1 book" in ok(cli("corpus", "list")).stdout


def test_add_by_search_with_language_and_limit(gutenberg_server) -> None:
    mirror = ["--mirror", gutenberg_server.url, *FAST]
    # fields are ANDed: Verne's French books with "monde" in the title: only 800
    result = cli("corpus", "add", "--author", "Jules Verne", "--title", "monde", "--language", "fr",
                 "--limit", "1", "--library", "verne", *mirror)
    ok(result)
    assert "added" in result.stdout and "Le tour du monde" in result.stdout
    assert "library verne: 1 book" in result.stderr
    # --language drops books in other languages, by the catalog, before any download
    english = cli("corpus", "add", "800", "84", "--language", "en", "--library", "english", *mirror)
    ok(english)
    assert "skipped" in english.stdout and "language fr, not en" in english.stdout
    # --limit counts books added: the second match is never downloaded
    gutenberg_server.clear_log()
    ok(cli("corpus", "add", "1013", "1342", "--limit", "1", "--library", "one", *mirror))
    assert any("1013" in p for p in gutenberg_server.paths())
    assert not any("1342" in p for p in gutenberg_server.paths())


def test_add_errors(gutenberg_server) -> None:
    mirror = ["--mirror", gutenberg_server.url, *FAST, "--retries", "0"]
    fails(cli("corpus", "add", *mirror), "give book numbers")
    fails(cli("corpus", "add", "0", *mirror), "positive")
    fails(cli("corpus", "add", "5", "--library", "bad name", *mirror), "bad library name")
    fails(cli("corpus", "add", "5", "--min-interval", "-1", "--mirror", gutenberg_server.url), "min")
    partly = fails(cli("corpus", "add", "999999", "5", "--library", "partly", *mirror), "1 book could not be added")
    assert "failed" in partly.stdout and "no plain-text file" in partly.stdout
    assert "library partly: 1 book" in partly.stderr
    fails(cli("corpus", "add", "--author", "zzzzzz", *mirror), "no book in the catalog matches")
    fails(cli("corpus", "add", "5", "--mirror", "/no/such/mirror"), "")
    limited = fails(cli("corpus", "add", "84", "1342", "--library", "limited", "--max-downloads", "1", *mirror),
                    "download limit reached")
    assert "added" in limited.stdout and "Frankenstein" in limited.stdout  # the first one is kept
    assert "1 book" in ok(cli("corpus", "list")).stdout.split("limited")[1]


def test_clean_file(shared_corpora: Path, tmp_path: Path) -> None:
    raw = shared_corpora / "gutenberg" / "raw" / "pg800-verne-le-tour-du-monde-en-80-jours-fr-iso8859-1.txt"
    result = ok(cli("corpus", "clean", raw))
    assert "Phileas Fogg" in result.stdout and "Project Gutenberg" not in result.stdout
    assert "ISO-8859-1" in result.stderr and "removed" in result.stderr
    out = tmp_path / "clean.txt"
    explained = ok(cli("corpus", "clean", raw, "-o", out, "--explain"))
    assert out.read_text(encoding="utf-8") == result.stdout and explained.stdout == ""
    assert "header" in explained.stderr and "lines" in explained.stderr
    plain = tmp_path / "plain.txt"
    plain.write_text("Just a poem.\nNo boilerplate.\n", encoding="utf-8")
    unchanged = ok(cli("corpus", "clean", plain))
    assert unchanged.stdout == "Just a poem.\nNo boilerplate.\n" and "warning:" in unchanged.stderr
    fails(cli("corpus", "clean", tmp_path / "missing.txt"), "cannot read file")
    (tmp_path / "empty.txt").write_bytes(b"")
    fails(cli("corpus", "clean", tmp_path / "empty.txt"), "empty")
    (tmp_path / "bin.dat").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    fails(cli("corpus", "clean", tmp_path / "bin.dat"), "binary")


def test_split(tmp_path: Path) -> None:
    from conftest import make_text

    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(5):
        (texts / f"book{i}.txt").write_text(make_text(100, seed=i), encoding="utf-8")
    out = tmp_path / "out"
    result = ok(cli("corpus", "split", "--text-path", texts, "-o", out, "--prefix", "mine"))
    assert sorted(p.name for p in out.iterdir()) == ["mine.test.txt", "mine.train.txt", "mine.valid.txt"]
    assert "train" in result.stdout and "3 sources" in result.stdout
    by_text = ok(cli("corpus", "split", "--text-path", texts, "-o", out, "--by", "text", "--test", "0"))
    assert "5 sources" in by_text.stdout
    fails(cli("corpus", "split", "-o", out), "either --library or --text-path")
    fails(cli("corpus", "split", "--text-path", texts, "--by", "line"), "--by")
    fails(cli("corpus", "split", "--library", "nothing"), "no library")


@pytest.mark.parametrize("args", [["corpus"], ["corpus", "--help"], ["corpus", "add", "--help"]])
def test_help(args) -> None:
    result = cli(*args)
    assert result.exit_code == 0 and "Usage" in result.stdout


def test_local_mirror_directory(gutenberg_mirror_dir: Path) -> None:
    # a local mirror: a dirs tree at the root, cache/epub and files trees, a catalog built from RDF
    found = ok(cli("corpus", "search", "--author", "austen", "--mirror", gutenberg_mirror_dir))
    assert "Pride and Prejudice" in found.stdout and "found in 4" in found.stderr
    added = ok(cli("corpus", "add", "1342", "800", "--library", "local", "--mirror", gutenberg_mirror_dir))
    assert added.stdout.count("added") == 2 and "Jane Austen" in added.stdout
    failed = fails(cli("corpus", "add", "2701", "--library", "local", "--mirror", gutenberg_mirror_dir),
                   "could not be added")
    assert "no plain-text file" in failed.stdout


def test_clean_from_standard_input(shared_corpora: Path) -> None:
    raw = (shared_corpora / "gutenberg" / "raw" / "pg84-shelley-frankenstein-frank15-2003.txt").read_bytes()
    result = CliRunner().invoke(app, ["corpus", "clean", "-", "--explain"], input=raw)
    ok(result)
    assert result.stdout.startswith("Frankenstein, or the Modern Prometheus\n")
    assert result.stdout.endswith("lost in darkness and distance.\n")
    assert "lines 1-" in result.stderr and "header" in result.stderr


def test_titles_with_brackets_are_printed_as_text(gutenberg_server) -> None:
    book = (b"Title: Odes [/Horace] [bold]x[/bold]\n\n*** START OF THE PROJECT GUTENBERG EBOOK ODES ***\n"
            b"Title text of a book about odes and more odes, long enough to be a body.\n"
            b"*** END OF THE PROJECT GUTENBERG EBOOK ODES ***\n")
    gutenberg_server.add("/files/777777/777777.txt", book)
    result = ok(cli("corpus", "add", "777777", "--library", "odd", "--mirror", gutenberg_server.url, *FAST))
    assert "added" in result.stdout
    listing = ok(cli("corpus", "list", "--library", "odd"))
    assert "Odes [/Horace] [bold]x[/bold]" in " ".join(listing.stdout.split())


def test_unwritable_output_is_a_one_line_error(shared_corpora: Path) -> None:
    raw = shared_corpora / "gutenberg" / "raw" / "pg1013-wells-first-men-in-the-moon.txt"
    fails(cli("corpus", "clean", raw, "-o", "/proc/no/such/dir/out.txt"), "")
