// The exported site's page: the Write view of `charpoet serve`, generating in this browser.
//
// It loads the model (generate.js), then Write streams the text token by token into one text node
// after the prompt, yielding to the browser every frame so it paints; Stop (or Esc) ends it. At
// the end the text is handed to `highlight` (the attribution hook below) and the state shows
// "done" (data-state on #write-status and #output, as on the served page).

import { renderText } from "./static/highlight.js";
import { clearError, InputError, showError, showNotice } from "./static/ui.js";
import { beginOutput, readSettings, showAnalysis, wireWriteForm } from "./static/writeview.js";
import { GenerationError, loadModel, randomSeed } from "./generate.js";

const $ = (id) => document.getElementById(id);
let model = null;
let controller = null; // the running generation's AbortController

function setState(state, message = "") {
  $("write-status").dataset.state = state;
  $("write-status").textContent = message;
  $("output").dataset.state = state;
  $("output").setAttribute("aria-busy", String(state === "writing"));
  $("write").disabled = state === "writing" || !model;
  $("stop").disabled = state !== "writing";
}

function options() {
  const { top_k: topK, top_p: topP, seed, ...rest } = readSettings();
  return { ...rest, topK, topP, seed: seed ?? randomSeed() };
}

// --- attribution hook ----------------------------------------------------------------------------
// When the export carries the attribution index, site.json's "attribution" is {base, min_len}:
// the folder of its files (sources.json, corpus.bin, index.bin) and the shortest copy to mark,
// and static/attribution.js is copied with the other shared modules. `highlight` then returns
// the ATT object of the server's /api/attribute ({text, spans, legend, metrics, min_len}) that
// highlight.js draws; without them it returns null and the text stays plain.
let attributionIndex = null; // loaded once, at the first highlight
async function highlight(text) {
  const spec = model.site.attribution;
  if (!spec || !text) return null;
  const { attribute, loadIndex } = await import("./static/attribution.js");
  attributionIndex ??= await loadIndex(spec.base ?? "attribution/");
  return attribute(attributionIndex, text, spec.min_len ?? 20);
}

const nextFrame = () => new Promise((resolve) => setTimeout(resolve, 0));

export async function write() {
  if (controller || !model) return;
  clearError();
  let opts;
  try {
    opts = options();
  } catch (err) {
    if (err instanceof InputError) return showError(err.message);
    throw err;
  }
  const ctl = new AbortController();
  controller = ctl;
  const output = $("output");
  const shownPrompt = opts.prompt === "\n" ? "" : opts.prompt;
  const generated = beginOutput(opts.prompt);
  output.dataset.seed = String(opts.seed);
  setState("writing", "Writing…");
  let painted = performance.now();
  try {
    for await (const piece of model.stream(opts.prompt, { ...opts, signal: ctl.signal })) {
      generated.appendData(piece);
      if (performance.now() - painted > 16) { // let the browser paint (and see Stop) once a frame
        await nextFrame();
        painted = performance.now();
      }
    }
    const stopped = ctl.signal.aborted;
    const text = generated.data;
    let att = null;
    try {
      att = await highlight(text);
    } catch (err) {
      showNotice(`No highlighting: ${err.message || err}`);
    }
    if (att) {
      renderText(output, att, shownPrompt);
      showAnalysis(att);
    }
    const count = `${Array.from(text).length.toLocaleString("en")} characters written`;
    setState(stopped ? "stopped" : "done", stopped ? `Stopped: ${count}.` : `${count}.`);
  } catch (err) {
    setState("error", "");
    showError(err instanceof GenerationError ? err.message : `generation failed: ${err.message || err}`);
  } finally {
    controller = null;
    setState($("write-status").dataset.state, $("write-status").textContent);
  }
}

/** Stop the running generation; false if none runs. */
export function stopWriting() {
  if (!controller) return false;
  controller.abort();
  return true;
}

async function init() {
  wireWriteForm(write, stopWriting);
  $("error-close").addEventListener("click", clearError);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !stopWriting()) clearError();
  });
  setState("idle");
  document.body.dataset.model = "loading";
  try {
    const started = performance.now();
    model = await loadModel("site.json");
    const s = model.site;
    $("run-info").textContent = `${s.run}: ${s.num_layers}×${s.rnn_size} ${s.cell.toUpperCase()}, ` +
      `vocabulary ${s.vocab_size.toLocaleString("en")}, in this browser (loaded in ${Math.round(performance.now() - started)} ms)`;
    document.body.dataset.model = "ready";
    setState("idle");
  } catch (err) {
    document.body.dataset.model = "error";
    $("run-info").textContent = "The model could not be loaded.";
    showError(`loading the model failed: ${err.message || err}`);
  }
}

init();
