"""The exported static site in a browser: load time, chars/s, and size.

    python benchmarks/browser.py                 # a 2 x 256 char LSTM (embedding 64) on tiny shakespeare
    python benchmarks/browser.py --run runs/demo

Trains a run of that shape briefly (unless ``--run`` is given), exports it with ``charpoet export
--format web`` (onnxruntime-web, WebAssembly, one thread; with its attribution index), serves the
site from 127.0.0.1 with Python's static HTTP server and opens it in headless Chromium (Debian's,
through Playwright). It prints the site's size, the time from opening the page to a loaded model,
the first highlighting's index load, and chars/s of the in-browser generation (one stream, T = 0.8,
``--length`` characters, best of ``--rounds``), beside the library's own chars/s for the same run
and length in this process.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_description  # noqa: E402

DEFAULT_TEXT = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, help="an existing run (default: train a 2x256 one for 12 s)")
    p.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    p.add_argument("--length", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    print(cpu_description(), flush=True)
    from playwright.sync_api import sync_playwright

    import charpoet

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "run"
            print(f"training a 2 x 256 char LSTM (embedding 64) on {args.text.name} for 12 s ...", flush=True)
            subprocess.run([sys.executable, "-m", "charpoet", "train", "--text-path", str(args.text), "--checkpoint-path",
                            str(run), "--rnn-size", "256", "--num-layers", "2", "--embedding-size", "64",
                            "--max-minutes", "0.2", "--stats-every", "off", "--no-tensorboard"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        site = Path(tmp) / "site"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "charpoet", "export", str(run), "--format", "web", str(site)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        exported = time.perf_counter() - started
        sizes = {part: sum(f.stat().st_size for f in (site / part).rglob("*") if f.is_file())
                 for part in ("ort", "attribution")}
        total = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
        model = (site / "model.onnx").stat().st_size
        lm = charpoet.load(run)
        m = lm.config.model
        print(f"run: {m.cell} {m.num_layers}x{m.rnn_size} emb{m.embedding_size}, vocabulary {m.vocab_size}; "
              f"export {exported:.1f} s", flush=True)
        print(f"site: {total / 1e6:.1f} MB (onnxruntime-web {sizes['ort'] / 1e6:.1f} MB, model {model / 1e6:.2f} MB, "
              f"attribution {sizes['attribution'] / 1e6:.1f} MB)", flush=True)
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page()
                page.goto(url)
                timing = page.evaluate("""async ([length, rounds]) => {
                    const { loadModel } = await import("./generate.js");
                    const t0 = performance.now();
                    const model = await loadModel("site.json");
                    const loaded = performance.now() - t0;
                    const rates = [];
                    for (let r = 0; r < rounds; r++) {
                        const start = performance.now();
                        let n = 0;
                        for await (const piece of model.stream("ROMEO:", { length, temperature: 0.8, seed: r + 1 })) n++;
                        rates.push(n / ((performance.now() - start) / 1000));
                    }
                    const { attribute, loadIndex } = await import("./static/attribution.js");
                    const a0 = performance.now();
                    const index = await loadIndex("attribution/");
                    const indexed = performance.now() - a0;
                    const text = "ROMEO: ".repeat(10) + "x".repeat(length);
                    const h0 = performance.now();
                    attribute(index, text, 20);
                    return { loaded, rates, indexed, highlight: performance.now() - h0 };
                }""", [args.length, args.rounds])
                browser.close()
        finally:
            server.shutdown()
        best = max(timing["rates"])
        lm.generate("ROMEO:", length=50, temperature=0.8, seed=1)  # the stepper and the kernels, once
        library = 0.0
        for r in range(args.rounds):
            start = time.perf_counter()
            lm.generate("ROMEO:", length=args.length, temperature=0.8, seed=r + 1)
            library = max(library, args.length / (time.perf_counter() - start))
        print(f"model load in the page: {timing['loaded']:.0f} ms; attribution index load: {timing['indexed']:.0f} ms; "
              f"highlighting {args.length + 70:,} chars: {timing['highlight']:.0f} ms", flush=True)
        print(f"in the browser (WASM, 1 thread): {best:,.0f} chars/s (rounds: "
              f"{', '.join(f'{r:,.0f}' for r in timing['rates'])}); the library in Python: {library:,.0f} chars/s "
              f"(best of {args.rounds})",
              flush=True)


if __name__ == "__main__":
    main()
