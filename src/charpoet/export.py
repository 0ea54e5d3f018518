"""Exporting a run: one generation step as a standalone ONNX model, or a static site around it.

    info = export_onnx("runs/books", "model.onnx")   # best weights; weights="last" for the last
    site = export_web("runs/books", "site/")         # index.html + model.onnx + onnxruntime-web

The model takes ``tokens`` (B,) int64 and the state, ``h`` (L, B, H) and for an LSTM ``c``
(L, B, H), float32, and returns ``logits`` (B, V) and the new state, ``h_out`` (and ``c_out``):
the step ``charpoet.stepper.Stepper.step`` takes, for any batch size B. It is one file (weights
inside), and its metadata holds the charpoet version (``charpoet_version``), the run's config
(``charpoet_config``, JSON) and vocabulary (``charpoet_vocab``, JSON, as ``vocab.json``), so an
onnxruntime program in any language can encode a prompt, step and decode with nothing else.

Needs the ``onnx`` package (``pip install 'charpoet[export]'``); onnxruntime runs the result.

The static site (``export_web``) writes and streams text entirely in the browser, with
onnxruntime-web on WebAssembly (one thread, so no special HTTP headers), from any static host::

    DIR/index.html        the Write view of the served page (its markup, taken from static/index.html)
    DIR/site.js           the page: settings, streaming, Stop             (web/site/ in the package)
    DIR/generate.js       generation: encode, step, sample (web/site/)
    DIR/site.json         what the page loads: the run's name, model shape, files
    DIR/model.onnx        ``step_onnx`` of the run;  DIR/vocab.json: the run's vocabulary
    DIR/static/           the served page's own style.css, favicon and JS modules, copied as files
    DIR/ort/              onnxruntime-web's ES module and WebAssembly (``ORT_WEB_VERSION``)

onnxruntime-web comes from npm, pinned in the repository's ``web/package.json`` (``make install``
runs ``npm ci --prefix web``); ``CHARPOET_ORT_WEB`` may name another copy of its ``dist/`` folder.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from charpoet.corpus.cache import atomic_write_bytes
from charpoet.errors import CharpoetError, CheckpointError, ConfigError
from charpoet.model import RNNLM

OPSET = 17
FORMATS = ("onnx", "web")
ORT_WEB_VERSION = "1.30.0"  # the version pinned in web/package.json
# onnxruntime-web's files for the CPU (WebAssembly) backend: its ES module, and the Emscripten module
# and binary it loads; built with threads, they run on one without SharedArrayBuffer (numThreads = 1)
ORT_WEB_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
SHARED_ASSETS = ("style.css", "favicon.svg", "ui.js", "highlight.js", "charts.js", "writeview.js", "attribution.js")  # from web/static
ATTRIBUTION_DIR = "attribution"  # the site's sources and their index (charpoet.site_index)
SITE_FILES = ("site.js", "generate.js")  # the site's own, from web/site


@dataclass(frozen=True)
class ExportInfo:
    path: Path
    bytes: int
    cell: str
    num_layers: int
    rnn_size: int
    vocab_size: int


class StepModule(nn.Module):
    """One step of a ``RNNLM`` written with plain tensor operations (what ONNX expresses directly):
    ``(tokens, h[, c]) -> (logits, h_out[, c_out])``; gates in PyTorch's order (LSTM i f g o, GRU r z n)."""

    def __init__(self, model: RNNLM):
        super().__init__()
        cfg = model.config
        self.lstm = cfg.cell == "lstm"
        self.num_layers = cfg.num_layers
        self.embedding = nn.Parameter(model.embedding.weight.detach().clone())  # (V, E)
        for i, rnn in enumerate(model.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                self.register_buffer(f"{name}_{i}", getattr(rnn, f"{name}_l0").detach().clone())
        self.norms = None
        if model.norms is not None:
            self.norms = nn.ModuleList(nn.LayerNorm(cfg.rnn_size) for _ in range(cfg.num_layers))
            self.norms.load_state_dict(model.norms.state_dict())
        self.head = nn.Linear(cfg.rnn_size, cfg.vocab_size)
        self.head.load_state_dict(model.head.state_dict())

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor | None = None) -> tuple[Tensor, ...]:
        x = self.embedding[tokens]  # (B, E)
        hs, cs = [], []
        for i in range(self.num_layers):
            w_ih, w_hh = getattr(self, f"weight_ih_{i}"), getattr(self, f"weight_hh_{i}")
            b_ih, b_hh = getattr(self, f"bias_ih_{i}"), getattr(self, f"bias_hh_{i}")
            gi = x @ w_ih.t() + b_ih  # (B, G*H)
            gh = h[i] @ w_hh.t() + b_hh
            if self.lstm:
                assert c is not None
                i_gate, f_gate, g_gate, o_gate = (gi + gh).chunk(4, dim=1)
                c_new = torch.sigmoid(f_gate) * c[i] + torch.sigmoid(i_gate) * torch.tanh(g_gate)
                h_new = torch.sigmoid(o_gate) * torch.tanh(c_new)
                cs.append(c_new)
            else:
                r_i, z_i, n_i = gi.chunk(3, dim=1)
                r_h, z_h, n_h = gh.chunk(3, dim=1)
                r = torch.sigmoid(r_i + r_h)
                z = torch.sigmoid(z_i + z_h)
                n = torch.tanh(n_i + r * n_h)
                h_new = (1 - z) * n + z * h[i]
            hs.append(h_new)
            x = self.norms[i](h_new) if self.norms is not None else h_new
        logits = self.head(x)  # (B, V)
        if self.lstm:
            return logits, torch.stack(hs), torch.stack(cs)
        return logits, torch.stack(hs)


def export_onnx(run_dir: str | Path, output: str | Path, weights: str = "best", force: bool = False) -> ExportInfo:
    """Write ``run_dir``'s model as one ONNX step to ``output`` (atomically); see the module docstring."""
    from charpoet import __version__

    output = Path(output).expanduser()
    _check_output(output, force)
    from charpoet.sample import load

    lm = load(run_dir, weights=weights, device="cpu")  # checks the run, its config, vocabulary and weights
    config, tokenizer, model = lm.config, lm.tokenizer, lm.model
    meta = {"charpoet_version": __version__, "charpoet_config": json.dumps(config.to_dict()),
            "charpoet_vocab": json.dumps(tokenizer.to_dict(), ensure_ascii=False)}
    data = step_onnx(model, meta)
    m = config.model
    atomic_write_bytes(output, data)
    return ExportInfo(output, len(data), m.cell, m.num_layers, m.rnn_size, m.vocab_size)


def step_onnx(model: RNNLM, metadata: dict[str, str] | None = None) -> bytes:
    """``model``'s generation step as a serialized ONNX model (see the module docstring), with
    ``metadata`` in its metadata properties."""
    try:
        import onnx
    except ImportError:
        raise CharpoetError("exporting to ONNX needs the onnx package: pip install 'charpoet[export]'") from None
    from charpoet import __version__

    step = StepModule(model.cpu().eval()).eval()
    m = model.config
    B = 2  # any batch: the axis is dynamic
    tokens = torch.zeros(B, dtype=torch.int64)
    state = tuple(torch.zeros(m.num_layers, B, m.rnn_size) for _ in range(model.state_size))
    names = ["h", "c"][: model.state_size]
    outs = ["logits"] + [f"{n}_out" for n in names]
    dynamic = {"tokens": {0: "batch"}, "logits": {0: "batch"}}
    dynamic.update({n: {1: "batch"} for n in names + [f"{n}_out" for n in names]})
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, still in torch 2.13
        torch.onnx.export(step, (tokens, *state), buffer, dynamo=False, opset_version=OPSET,
                          input_names=["tokens", *names], output_names=outs, dynamic_axes=dynamic)
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.producer_version = "charpoet", __version__
    return proto.SerializeToString()


@dataclass(frozen=True)
class WebExportInfo:
    path: Path
    bytes: int  # the whole site
    model_bytes: int
    cell: str
    num_layers: int
    rnn_size: int
    vocab_size: int


def export_web(run_dir: str | Path, directory: str | Path, weights: str = "best", force: bool = False,
               name: str | None = None, attribution: bool | None = None, min_quote: int = 20) -> WebExportInfo:
    """Write a static site that generates from ``run_dir``'s model in the browser to ``directory``
    (see the module docstring). Everything is read and checked before anything is written, so a
    bad run, a missing onnxruntime-web or a refused directory leaves ``directory`` untouched.

    ``attribution``: carry the run's sources and their index so the page highlights verbatim
    copies of ``min_quote`` or more characters (True), or not (False); None: when the sources are
    at most ``MAX_SITE_LIBRARY_BYTES``, and a ``ConfigError`` saying how to choose when larger."""
    from charpoet import __version__
    from charpoet.sample import load

    directory = Path(directory).expanduser()
    _check_site_dir(directory, Path(run_dir), force)
    ort_files = ort_web_files()
    web = Path(__file__).parent / "web"
    page = _site_page((web / "site" / "index.html").read_text(encoding="utf-8"),
                      (web / "static" / "index.html").read_text(encoding="utf-8"))
    lm = load(run_dir, weights=weights, device="cpu")  # checks the run, its config, vocabulary and weights
    config, tokenizer = lm.config, lm.tokenizer
    vocab = json.dumps(tokenizer.to_dict(), ensure_ascii=False)
    model = step_onnx(lm.model, {"charpoet_version": __version__, "charpoet_vocab": vocab,
                                 "charpoet_config": json.dumps(config.to_dict())})
    index_files = _site_attribution(Path(run_dir), attribution, min_quote)
    m = config.model
    site = {"charpoet_version": __version__, "run": name or Path(run_dir).resolve().name, "weights": weights,
            "step": lm.meta.get("step"), "model": "model.onnx", "vocab": "vocab.json",
            "cell": m.cell, "num_layers": m.num_layers, "rnn_size": m.rnn_size, "vocab_size": m.vocab_size,
            "onnxruntime_web": ORT_WEB_VERSION,
            "attribution": {"base": f"{ATTRIBUTION_DIR}/", "min_len": min_quote} if index_files else None}

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.html").write_text(page, encoding="utf-8")
    for file in SITE_FILES:
        shutil.copyfile(web / "site" / file, directory / file)
    for sub, sources in (("static", [web / "static" / f for f in SHARED_ASSETS]), ("ort", ort_files)):
        (directory / sub).mkdir(exist_ok=True)
        for source in sources:
            shutil.copyfile(source, directory / sub / source.name)
    if index_files:
        (directory / ATTRIBUTION_DIR).mkdir(exist_ok=True)
        for file_name, data in index_files.items():
            (directory / ATTRIBUTION_DIR / file_name).write_bytes(data)
    (directory / "model.onnx").write_bytes(model)
    (directory / "vocab.json").write_text(vocab, encoding="utf-8")
    (directory / "site.json").write_text(json.dumps(site, indent=1) + "\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    return WebExportInfo(directory, size, len(model), m.cell, m.num_layers, m.rnn_size, m.vocab_size)


def _site_attribution(run: Path, wanted: bool | None, min_quote: int) -> dict[str, bytes] | None:
    """The site's attribution files (``charpoet.site_index``), or None for a site without them."""
    from charpoet.attribution import check_min_quote
    from charpoet.checkpoint import RunDir
    from charpoet.site_index import MAX_SITE_LIBRARY_BYTES, build_site_index, library_bytes

    check_min_quote(min_quote)
    if wanted is False:
        return None
    if not RunDir(run).has_library():
        if wanted:
            raise CheckpointError(f"{run} holds no sources (sources.json): there is nothing to highlight; "
                                  "give --no-attribution")
        return None
    library = RunDir(run).read_library()
    size = library_bytes(library)
    if wanted is None and size > MAX_SITE_LIBRARY_BYTES:
        raise ConfigError(f"the run's sources are {size / 1e6:.1f} MB, more than the {MAX_SITE_LIBRARY_BYTES >> 20} MB "
                          f"a site carries by default (about 5 bytes each, with their index): give "
                          f"--with-attribution to carry them anyway, or --no-attribution")
    return build_site_index(library)


def ort_web_files() -> list[Path]:
    """onnxruntime-web's files for the site (``ORT_WEB_FILES``), from ``$CHARPOET_ORT_WEB`` or the
    repository's ``web/node_modules``; ``CharpoetError`` saying how to get them if they are missing."""
    found = os.environ.get("CHARPOET_ORT_WEB")
    package = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "onnxruntime-web"
    dist = Path(found).expanduser() if found else package / "dist"
    how = ("install it with `make install` (or `npm ci --prefix web` in the charpoet repository), "
           "or set CHARPOET_ORT_WEB to its dist/ folder")
    missing = [f for f in ORT_WEB_FILES if not (dist / f).is_file()]
    if missing:
        raise CharpoetError(f"onnxruntime-web {ORT_WEB_VERSION} not found ({dist / missing[0]} is missing): {how}")
    if not found:
        try:
            version = json.loads((package / "package.json").read_text(encoding="utf-8"))["version"]
        except (OSError, ValueError, KeyError):
            version = None
        if version != ORT_WEB_VERSION:
            raise CharpoetError(f"onnxruntime-web {version} is installed in {package}, not the pinned "
                                f"{ORT_WEB_VERSION}: {how}")
    return [dist / f for f in ORT_WEB_FILES]


def _site_page(template: str, served: str) -> str:
    """The site's index.html: ``template`` with the served page's Write view put in its place."""
    start = served.find('<section id="view-write"')
    end = served.find("</section>", start)
    if start < 0 or end < 0 or "<!-- WRITE VIEW -->" not in template:
        raise CharpoetError("the web page's Write view was not found in charpoet's files; reinstall charpoet")
    return template.replace("<!-- WRITE VIEW -->", served[start:end + len("</section>")])


def _check_site_dir(directory: Path, run: Path, force: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: is a file, not a directory; give a directory for the site")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise ConfigError(f"{directory}: the directory is not empty; give --force to write the site into it")
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise ConfigError(f"{directory}: {existing} is not writable")
    target, run = directory.resolve(), run.expanduser().resolve()
    if target == run or run in target.parents or target in run.parents:
        raise ConfigError(f"{directory}: the site may not be written into, above or over the run {run}")


def _check_output(output: Path, force: bool) -> None:
    if output.is_dir():
        raise ConfigError(f"-o {output}: is a directory; give a file name such as model.onnx")
    if not output.parent.is_dir():
        raise ConfigError(f"-o {output}: the directory {output.parent} does not exist")
    if not os.access(output.parent, os.W_OK):
        raise ConfigError(f"-o {output}: the directory {output.parent} is not writable")
    if output.exists() and not force:
        raise ConfigError(f"-o {output}: the file exists; give --force to replace it")
    from charpoet.checkpoint import CONFIG, RUN_FILES

    if output.name in RUN_FILES and (output.parent / CONFIG).is_file():
        raise ConfigError(f"-o {output}: that is a file of the run in {output.parent}; choose another name")
