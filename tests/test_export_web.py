"""``charpoet export --format web``: the static site's files, its bad input, and the site itself in
headless Chromium (Playwright, as in test_serve_browser.py), served by a plain static HTTP server.

In the browser the greedy text must be exactly Python's, and a seeded sample the same twice.
Without Playwright or /usr/bin/chromium the browser test is skipped, but with ``CI=true`` it fails;
so does the whole module without onnxruntime-web (``make install`` or ``npm ci --prefix web``).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import charpoet
from charpoet.cli import app
from charpoet.errors import CharpoetError
from charpoet.export import ORT_WEB_FILES, ORT_WEB_VERSION, SHARED_ASSETS, export_web, ort_web_files

pytest.importorskip("onnx")
TIMEOUT_MS = 60_000
PRIME = "ROMEO:"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        ort_web_files()
    except CharpoetError as exc:
        _unavailable(str(exc))
    out = tmp_path_factory.mktemp("site") / "site"
    result = CliRunner().invoke(app, ["export", str(trained_run), "--format", "web", str(out)])
    assert result.exit_code == 0, result.output
    assert "MB" in result.output and str(out) in result.output
    return out


def test_the_pinned_onnxruntime_web_is_the_one_the_export_expects():
    package = json.loads((Path(__file__).parents[1] / "web" / "package.json").read_text())
    assert package["dependencies"] == {"onnxruntime-web": ORT_WEB_VERSION}  # one exact version
    lock = json.loads((Path(__file__).parents[1] / "web" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/onnxruntime-web"]["version"] == ORT_WEB_VERSION


def test_the_site_holds_the_page_the_shared_assets_the_model_and_onnxruntime_web(site, trained_run):
    names = {str(p.relative_to(site)) for p in site.rglob("*") if p.is_file()}
    assert names == {"index.html", "site.js", "generate.js", "site.json", "model.onnx", "vocab.json",
                     *(f"static/{f}" for f in SHARED_ASSETS), *(f"ort/{f}" for f in ORT_WEB_FILES),
                     *(f"attribution/{f}" for f in ("sources.json", "corpus.bin", "index.bin"))}
    static = Path(charpoet.__file__).parent / "web" / "static"
    for name in SHARED_ASSETS:  # the served page's files themselves, not copies of their code
        assert (site / "static" / name).read_bytes() == (static / name).read_bytes()
    page = (site / "index.html").read_text()
    assert 'id="view-write"' in page and 'data-testid="top-p"' in page and 'src="site.js"' in page
    assert "/static/" not in page  # relative links: the site works from any path of any host
    lm = charpoet.load(trained_run)
    assert json.loads((site / "vocab.json").read_text()) == lm.tokenizer.to_dict()
    info = json.loads((site / "site.json").read_text())
    assert info["cell"] == lm.config.model.cell and info["rnn_size"] == lm.config.model.rnn_size
    assert info["onnxruntime_web"] == ORT_WEB_VERSION
    assert info["attribution"] == {"base": "attribution/", "min_len": 20}  # a small library: carried by default
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(site / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["tokens", "h", "c"]


def test_bad_input_is_one_line_exit_2_and_leaves_the_run_and_the_directory_alone(site, trained_run, tmp_path):
    runner = CliRunner()
    before = {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()}
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for args, words in [
        (["export", str(trained_run), "--format", "web", str(full)], "give --force"),
        (["export", str(trained_run), "--format", "web", str(a_file)], "is a file"),
        (["export", str(trained_run), "--format", "html", str(tmp_path / "x")], "--format"),
        (["export", str(trained_run), "--format", "web"], "needs a directory"),
        (["export", str(tmp_path / "missing"), "--format", "web", str(tmp_path / "y")], "does not exist"),
        (["export", str(trained_run), "--format", "web", str(trained_run / "site")], "the run"),
    ]:
        bad = runner.invoke(app, args)
        assert bad.exit_code == 2 and words in bad.output, (args, bad.output)
        assert len(bad.output.strip().splitlines()) == 1
    assert {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()} == before  # the run untouched
    assert [p.name for p in full.iterdir()] == ["keep.txt"] and not (tmp_path / "y").exists()
    again = runner.invoke(app, ["export", str(trained_run), "--format", "web", str(full), "--force"])
    assert again.exit_code == 0 and (full / "index.html").is_file() and (full / "keep.txt").read_text() == "mine"


def test_without_onnxruntime_web_the_export_says_how_to_get_it(trained_run, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARPOET_ORT_WEB", str(tmp_path / "nowhere"))
    with pytest.raises(CharpoetError, match="npm ci --prefix web") as err:
        export_web(trained_run, tmp_path / "site")
    assert "\n" not in str(err.value) and not (tmp_path / "site").exists()


# --- in the browser ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """The site from a plain static server (no special headers) on a free loopback port."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def page(served: str, browser: Any) -> Iterator[Any]:
    page = browser.new_page()  # the session's Chromium (tests/conftest.py), a fresh page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(served)
    page.wait_for_function("document.body.dataset.model !== 'loading' && document.body.dataset.model",
                           timeout=TIMEOUT_MS)
    assert page.evaluate("document.body.dataset.model") == "ready", (page.inner_text("#error-text"), errors)
    yield page
    page.close()
    assert not errors, errors


def write(page: Any, prompt: str, **settings: Any) -> str:
    page.fill("#prompt", prompt)
    for name, value in settings.items():
        page.fill(f"#{name}", str(value))
    page.click("#write")
    page.wait_for_function("['done', 'error'].includes(document.getElementById('write-status').dataset.state)",
                           timeout=TIMEOUT_MS)
    assert page.evaluate("document.getElementById('write-status').dataset.state") == "done", page.inner_text("#error-text")
    return page.evaluate("""() => {  // the written text, plain or highlighted, without the prompt
        const output = document.getElementById("output");
        const prompt = output.querySelector("[data-testid=prompt-echo]");
        return output.textContent.slice(prompt ? prompt.textContent.length : 0);
    }""")


@pytest.mark.slow
def test_the_site_writes_pythons_greedy_text_and_repeats_a_seeded_sample(page, trained_run):
    expected = charpoet.load(trained_run).generate(PRIME, length=200, temperature=0)[0]
    assert write(page, PRIME, temperature=0, length=200, seed=1) == expected
    assert page.inner_text("[data-testid=prompt-echo]") == PRIME
    first = write(page, PRIME, temperature=0.9, **{"top-k": 10, "top-p": 0.9}, length=150, seed=7)
    assert len(first) == 150 and first != expected[:150]
    assert write(page, PRIME, temperature=0.9, **{"top-k": 10, "top-p": 0.9}, length=150, seed=7) == first
    assert write(page, PRIME, temperature=0.9, **{"top-k": 10, "top-p": 0.9}, length=150, seed=8) != first


@pytest.mark.slow
def test_the_sites_sampler_draws_what_pythons_draws_for_the_same_uniform_numbers(page):
    import numpy as np

    from charpoet.sampling import _draw, filtered_weights

    rng = np.random.default_rng(0)
    cases = []
    for t, k, p in [(0.0, 0, 1.0), (1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8), (0.5, 3, 0.6), (2.0, 40, 0.95)]:
        logits = (rng.standard_normal(30) * 3).astype(np.float32)
        logits[7] = logits[3]  # a tie
        cases += [(logits, t, k, p, float(u)) for u in rng.random(8)]
    expected = [int(_draw(filtered_weights(x[None], t, k, p), np.array([u]))[0]) for x, t, k, p, u in cases]
    got = page.evaluate("""async (cases) => {
        const { pick } = await import("./generate.js");
        return cases.map(([x, t, k, p, u]) => pick(Float32Array.from(x), { temperature: t, topK: k, topP: p }, u));
    }""", [[x.tolist(), t, k, p, u] for x, t, k, p, u in cases])
    assert got == expected


@pytest.mark.slow
def test_the_text_streams_and_stop_ends_it(page):
    page.fill("#prompt", PRIME)
    page.fill("#length", "1000000")
    page.click("#write")
    page.wait_for_function("""document.getElementById('write-status').dataset.state === 'writing'
        && document.querySelector('#output .generated').textContent.length > 0""", timeout=TIMEOUT_MS)  # text shown while writing
    page.click("#stop")
    page.wait_for_function("document.getElementById('write-status').dataset.state === 'stopped'", timeout=TIMEOUT_MS)
    written = page.evaluate("""() => {  // plain, or highlighted once stopped
        const output = document.getElementById("output");
        const prompt = output.querySelector("[data-testid=prompt-echo]");
        return output.textContent.length - (prompt ? prompt.textContent.length : 0);
    }""")
    assert 0 < written < 1_000_000 and "Stopped" in page.inner_text("#write-status")
    assert page.is_enabled("#write") and not page.is_enabled("#stop")


def test_attribution_is_carried_by_choice_and_refused_by_default_for_a_large_library(trained_run, tmp_path,
                                                                                    monkeypatch):
    import charpoet.site_index as site_index
    from charpoet.errors import ConfigError

    without = export_web(trained_run, tmp_path / "plain", attribution=False)
    assert not (without.path / "attribution").exists()
    assert json.loads((without.path / "site.json").read_text())["attribution"] is None
    monkeypatch.setattr(site_index, "MAX_SITE_LIBRARY_BYTES", 10)  # as if the sources were over 20 MB
    with pytest.raises(ConfigError, match="--with-attribution"):
        export_web(trained_run, tmp_path / "big")
    assert not (tmp_path / "big").exists()
    carried = export_web(trained_run, tmp_path / "big", attribution=True, min_quote=12)
    assert json.loads((carried.path / "site.json").read_text())["attribution"]["min_len"] == 12


@pytest.mark.slow
def test_the_sites_highlighting_is_pythons_attribution(page, trained_run):
    from charpoet.attribution import index_for_run
    from charpoet.web.service import attribution_json

    texts = ["The cat sat on the mat.\nA dog ran in the fog.\nxyz JULIET: it is the east, and the sun is here.",
             "ROMEO: what light through yonder window breaks? The cat sat in the fog. éà 🎉 A dog ran",
             "no copies here at all, qq"]
    index = index_for_run(trained_run)
    for min_len in (5, 12, 20):
        expected = [attribution_json(index.attribute(t, min_len)) for t in texts]
        got = page.evaluate("""async ([texts, minLen]) => {
            const { attribute, loadIndex } = await import("./static/attribution.js");
            const index = await loadIndex("attribution/");
            return texts.map((t) => attribute(index, t, minLen));
        }""", [texts, min_len])
        assert got == expected
    # and the page highlights what it writes
    write(page, PRIME, temperature=0, length=200, seed=1)
    page.wait_for_function("document.querySelectorAll('#output mark[data-testid=copy]').length > 0", timeout=TIMEOUT_MS)
