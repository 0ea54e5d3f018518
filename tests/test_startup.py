"""Start-up: ``import charpoet`` and the commands that need no model never import torch or numpy.

Each check runs in a fresh interpreter (this one has long since imported torch). No timing is
asserted: ``time charpoet --help`` is measured by hand.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import charpoet

SRC = Path(__file__).resolve().parents[1] / "src"

# Runs each command line of argv[1] (JSON) through the CLI and writes, to the file argv[2],
# its exit status and the heavy modules imported so far.
RUN_COMMANDS = """
import json, sys
from charpoet.cli import main

report = []
for args in json.loads(sys.argv[1]):
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code
    report.append({"args": args, "code": code, "heavy": [m for m in ("torch", "numpy") if m in sys.modules]})
with open(sys.argv[2], "w", encoding="utf-8") as f:
    json.dump(report, f)
"""


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)


def run_cli(tmp_path: Path, *commands: list[str | Path]) -> subprocess.CompletedProcess[str]:
    """Run ``commands`` in one fresh interpreter; each must exit 0 without importing torch or numpy."""
    report = tmp_path / "startup-report.json"
    result = python(RUN_COMMANDS, json.dumps([[str(a) for a in c] for c in commands]), str(report))
    assert result.returncode == 0, result.stderr
    for entry in json.loads(report.read_text(encoding="utf-8")):
        assert entry["code"] in (0, None), (entry, result.stderr)
        assert entry["heavy"] == [], f"charpoet {' '.join(entry['args'])} imported {entry['heavy']}"
    return result


def test_import_charpoet_is_light_and_names_load_on_use() -> None:
    result = python("""
import json, sys
import charpoet
from charpoet import RunConfig, __version__
light = "torch" not in sys.modules and "numpy" not in sys.modules
load = charpoet.load
print(json.dumps([light, "torch" in sys.modules, callable(charpoet.train), charpoet.train.__module__]))
""")
    assert result.returncode == 0, result.stderr
    light, torch_after_load, train_callable, train_module = json.loads(result.stdout)
    assert light and torch_after_load and train_callable and train_module == "charpoet.train"


def test_public_names_resolve() -> None:
    assert set(charpoet.__all__) <= set(dir(charpoet))
    for name in charpoet.__all__:
        assert getattr(charpoet, name) is not None
    importlib.import_module("charpoet.train")
    assert callable(charpoet.train)  # the submodule of the same name does not hide the function
    with pytest.raises(AttributeError):
        charpoet.no_such_name  # noqa: B018


def test_help_needs_no_torch(tmp_path: Path) -> None:
    commands = ["train", "generate", "chat", "attribute", "evaluate", "runs", "corpus"]
    corpus = ["search", "add", "list", "show", "remove", "clean", "split"]
    result = run_cli(tmp_path, [], ["--help"], *[[c, "--help"] for c in commands],
                     *[["corpus", c, "--help"] for c in corpus])
    assert "Usage" in result.stdout


def test_corpus_commands_need_no_torch(tmp_path: Path) -> None:
    from conftest import make_text

    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(3):
        (texts / f"book{i}.txt").write_text(make_text(100, seed=i), encoding="utf-8")
    split = ["corpus", "split", "--text-path", texts, "-o", tmp_path / "split", "--prefix", "mine"]
    run_cli(tmp_path, ["corpus", "list"], ["corpus", "clean", texts / "book0.txt"], split)
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["mine.test.txt", "mine.train.txt", "mine.valid.txt"]


def test_library_commands_need_no_torch(gutenberg_mirror_dir: Path, tmp_path: Path) -> None:
    mirror = ["--mirror", gutenberg_mirror_dir]
    result = run_cli(tmp_path, ["corpus", "search", "--author", "austen", *mirror],
                     ["corpus", "add", "1342", "--library", "local", *mirror],
                     ["corpus", "list"], ["corpus", "list", "--library", "local"], ["corpus", "show", "local"],
                     ["corpus", "remove", "1342", "--library", "local"])
    assert "Pride and Prejudice" in result.stdout


def test_runs_needs_no_torch(trained_run: Path, tmp_path: Path) -> None:
    result = run_cli(tmp_path, ["runs", trained_run.parent], ["runs", trained_run.parent, "--json"])
    listed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["name"] for r in listed] == [trained_run.name] and listed[0]["steps"] > 0
