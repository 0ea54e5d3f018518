"""End to end through the command line: train, generate, and every bad input."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from charpoet.cli import app

SMALL = ["--rnn-size", "32", "--embedding-size", "16", "--batch-size", "8", "--seq-len", "32",
         "--learning-rate", "0.01", "--warmup-steps", "5", "--stats-every", "25steps", "--device", "cpu"]


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from conftest import make_text

    root = tmp_path_factory.mktemp("cli")
    (root / "text.txt").write_text(make_text(400), encoding="utf-8")
    result = cli("train", "--text-path", root / "text.txt", "--checkpoint-path", root / "run",
                 "--num-epochs", "3", *SMALL)
    assert result.exit_code == 0, result.output
    return root / "run"


def test_train_reports_progress_and_evaluation(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics[-1]["val_loss"] < 1.5
    assert (run / "train.log").read_text().count("eval") >= 2


def test_generate_streams_prime_and_continuation(run):
    result = cli("generate", "--checkpoint-path", run, "--prime", "ROMEO:", "--length", "80", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ROMEO:") and len(result.stdout) >= 86
    again = cli("generate", "--checkpoint-path", run, "--prime", "ROMEO:", "--length", "80", "--seed", "1")
    assert again.stdout == result.stdout


def test_generate_several_samples_and_options(run, tmp_path):
    prime = tmp_path / "prime.txt"
    prime.write_text("JULIET:", encoding="utf-8")
    result = cli("generate", "--checkpoint-path", run, "--prime-file", prime, "--num-samples", "3",
                 "--length", "40", "--top-k", "5", "--top-p", "0.9", "--temperature", "0", "--weights", "last")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("--- sample") == 3 and result.stdout.count("JULIET:") >= 3
    assert cli("generate", "--checkpoint-path", run, "--top-n", "3", "--length", "5").exit_code == 0


def test_restore_continues_and_accepts_new_training_options(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = json.loads((copy / "metrics.json").read_text())[-1]["step"]
    result = cli("train", "--checkpoint-path", copy, "--restore", "--num-epochs", "4", "--learning-rate", "0.005")
    assert result.exit_code == 0, result.output
    after = json.loads((copy / "metrics.json").read_text())
    assert after[-1]["step"] > before
    assert json.loads((copy / "config.json").read_text())["train"]["learning_rate"] == 0.005


def _error(result, *fragments):
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def test_bad_inputs_give_one_line_errors(run, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "image.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("just a few words\n")
    new = tmp_path / "new"
    cases = [
        (["train", "--text-path", tmp_path / "missing.txt", "--checkpoint-path", new], ["missing.txt"]),
        (["train", "--text-path", empty, "--checkpoint-path", new], ["empty.txt"]),
        (["train", "--text-path", binary, "--checkpoint-path", new], ["image.bin"]),
        (["train", "--text-path", tiny, "--checkpoint-path", new, "--seq-len", "64"], ["--seq-len"]),
        (["train", "--text-path", tiny, "--checkpoint-path", new, "--cell", "rnn"], ["--cell"]),
        (["train", "--text-path", tiny, "--checkpoint-path", new, "--rnn-size", "abc"], ["--rnn-size"]),
        (["train", "--text-path", tiny, "--checkpoint-path", new, "--drop-rate", "1.5"], ["--drop-rate"]),
        (["train", "--text-path", tiny, "--checkpoint-path", new, "--bogus"], ["--bogus"]),
        (["train", "--checkpoint-path", run, "--text-path", tiny], ["other texts", "--fresh"]),
        (["train", "--checkpoint-path", run, "--restore", "--rnn-size", "64"], ["--rnn-size 64", "32"]),
        (["train", "--checkpoint-path", run, "--restore", "--tokenizer", "word"], ["--tokenizer"]),
        (["train", "--checkpoint-path", tmp_path / "nowhere", "--restore"], ["does not exist"]),
        (["generate", "--checkpoint-path", run, "--prime", "Zebra€"], ["'Z'", "'€'"]),
        (["generate", "--checkpoint-path", run, "--temperature", "-0.5"], ["--temperature"]),
        (["generate", "--checkpoint-path", run, "--top-p", "0"], ["--top-p"]),
        (["generate", "--checkpoint-path", run, "--top-p", "1.01"], ["--top-p"]),
        (["generate", "--checkpoint-path", run, "--weights", "newest"], ["--weights"]),
        (["generate", "--checkpoint-path", tmp_path / "nowhere"], ["does not exist"]),
        (["generate", "--checkpoint-path", run, "--prime-file", tmp_path / "nope.txt"], ["nope.txt"]),
    ]
    for args, fragments in cases:
        _error(cli(*args), *fragments)
    assert not (new / "config.json").exists()


def test_corrupt_run_directories(run, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "last.safetensors").write_bytes(b"garbage")
    _error(cli("generate", "--checkpoint-path", broken, "--weights", "last"), "corrupt")
    _error(cli("train", "--checkpoint-path", broken, "--restore"), "corrupt")
    (broken / "best.safetensors").unlink()
    (broken / "last.safetensors").unlink()
    _error(cli("generate", "--checkpoint-path", broken), "missing")
    (broken / "config.json").write_text("[1, 2")
    _error(cli("generate", "--checkpoint-path", broken), "config.json")


def test_directory_with_a_binary_file_warns_and_trains(tmp_path):
    from conftest import make_text

    corpus = tmp_path / "books"
    corpus.mkdir()
    (corpus / "a.txt").write_text(make_text(100), encoding="utf-8")
    (corpus / "cover.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    result = cli("train", "--text-path", corpus, "--checkpoint-path", tmp_path / "run", "--num-epochs", "0.3", *SMALL)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "cover.png" in result.stderr


def test_restore_checks_named_texts_and_log_path(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    other = tmp_path / "other.txt"
    other.write_text("different words\n" * 100)
    _error(cli("train", "--checkpoint-path", copy, "--restore", "--text-path", other), "other texts")
    log = tmp_path / "logs" / "train.log"
    stored = json.loads((copy / "config.json").read_text())["data"]["text_path"]
    result = cli("train", "--checkpoint-path", copy, "--restore", "--text-path", stored[0],
                 "--num-epochs", "3.5", "--log-path", log)
    assert result.exit_code == 0, result.output
    assert "stopped at step" in log.read_text()


def test_help_lists_the_commands():
    result = cli("--help")
    assert result.exit_code == 0
    assert "train" in result.stdout and "generate" in result.stdout


def test_generate_highlights_and_writes_html(run, tmp_path):
    page = tmp_path / "samples.html"
    result = cli("generate", "--checkpoint-path", run, "--length", "200", "--temperature", "0.2", "--seed", "2",
                 "--num-samples", "2", "--min-quote", "10", "--html", page, "--prime", "ROMEO: what")
    assert result.exit_code == 0, result.output
    assert "copied verbatim" in result.stderr  # not a terminal: a summary line per sample
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.count('class="charpoet-attribution"') == 2
    assert "<mark" in html  # a model trained on four lines copies them
    assert html.count('<strong class="charpoet-prime">ROMEO: what</strong>') == 2  # the prime, as on a terminal
    assert (run / "attribution.index.safetensors").exists()  # the index is cached in the run
    quiet = cli("generate", "--checkpoint-path", run, "--length", "20", "--no-highlight")
    assert quiet.exit_code == 0 and "copied" not in quiet.stderr


def test_attribute_a_file_against_a_run_as_json(run, tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text("My own words. ROMEO: what light through yonder window breaks? The end.\n", encoding="utf-8")
    result = cli("attribute", text, "--checkpoint-path", run, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (span,) = data["spans"]
    assert text.read_text()[span["start"] : span["end"]] == "ROMEO: what light through yonder window breaks?"
    assert span["source"] == "text" and data["metrics"]["copy_rate"] == pytest.approx(47 / len(text.read_text()))


def test_attribute_against_text_files_from_stdin(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("It was the best of times, it was the worst of times.\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["attribute", "-", "--text-path", str(source), "--min-quote", "12"],
                                input="Oh, it was the worst of times indeed")
    assert result.exit_code == 0, result.output
    assert "it was the worst of times" in result.stdout and "[1] source" in result.stdout
    page = tmp_path / "a.html"
    assert cli("attribute", source, "--text-path", source, "--html", page).exit_code == 0
    assert page.read_text().count("<mark") == 1


def test_attribute_bad_inputs(run, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("hello")
    _error(cli("attribute", text), "--checkpoint-path")
    _error(cli("attribute", text, "--checkpoint-path", run, "--text-path", text), "either")
    _error(cli("attribute", text, "--checkpoint-path", tmp_path / "none"), "does not exist")
    _error(cli("attribute", tmp_path / "missing.txt", "--checkpoint-path", run), "missing.txt")
    _error(cli("attribute", text, "--checkpoint-path", run, "--min-quote", "0"), "--min-quote")
    _error(cli("generate", "--checkpoint-path", run, "--min-quote", "0"), "--min-quote")


def test_stale_index_cache_is_rebuilt(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    from charpoet.attribution import INDEX_FILE, index_for_run
    from charpoet.checkpoint import RunDir
    from charpoet.corpus import Library, Source

    index_for_run(copy)
    library = RunDir(copy).read_library()
    RunDir(copy).write_library(Library(library.name, (Source("new", "New", "brand new words here"),)))
    index = index_for_run(copy)
    assert [s.name for s in index.sources] == ["new"]
    (copy / INDEX_FILE).write_bytes(b"junk")
    assert [s.name for s in index_for_run(copy).sources] == ["new"]


def test_tiny_and_huge_temperatures_generate_text(run):
    """--temperature 1e-40 is the greedy limit (it once ended in a traceback); 1e30 is nearly uniform."""
    greedy = cli("generate", "--checkpoint-path", run, "--prime", "ROMEO:", "--length", "40", "--temperature", "0")
    for t in ("1e-40", "1e-300"):
        tiny = cli("generate", "--checkpoint-path", run, "--prime", "ROMEO:", "--length", "40", "--temperature", t)
        assert tiny.exit_code == 0, tiny.output
        assert tiny.stdout == greedy.stdout
    wild = cli("generate", "--checkpoint-path", run, "--length", "40", "--temperature", "1e30", "--seed", "3")
    assert wild.exit_code == 0, wild.output
