// What the served page's Write view (write.js) and the exported site's page (site.js) share:
// reading the sampling settings, wiring the form and keys, and drawing the copy analysis.

import { lineChart } from "./charts.js";
import { copySummary, el, noveltyPoints, renderLegend } from "./highlight.js";
import { enterSubmits, readNumber } from "./ui.js";

const $ = (id) => document.getElementById(id);

/** The prompt and sampling settings as the API names them; seed null when empty. Throws
 * InputError (ui.js) naming a bad field. */
export function readSettings() {
  const raw = $("prompt").value;
  return {
    prompt: raw === "" ? "\n" : raw, // nothing typed: start at the beginning of a line
    temperature: readNumber("temperature", "Temperature"),
    top_k: readNumber("top-k", "Top-k", { integer: true }),
    top_p: readNumber("top-p", "Top-p"),
    length: readNumber("length", "Length", { integer: true }),
    seed: readNumber("seed", "Seed", { integer: true, optional: true }),
  };
}

/** Clear the output for a new text: the prompt (none for a bare newline), then an empty text node
 * that the tokens are appended to, which is returned; the copy analysis is hidden until the end. */
export function beginOutput(prompt) {
  const generated = document.createTextNode("");
  $("output").replaceChildren(
    ...(prompt === "\n" ? [] : [el("span", { class: "prompt", "data-testid": "prompt-echo" }, prompt)]),
    el("span", { class: "generated" }, generated),
  );
  $("analysis").hidden = true;
  return generated;
}

/** Write on submit, Enter in the prompt (Shift+Enter: a new line) or in a setting; Stop stops. */
export function wireWriteForm(write, stop) {
  $("write-form").addEventListener("submit", (event) => {
    event.preventDefault();
    write();
  });
  enterSubmits($("prompt"), write);
  $("settings").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target.tagName === "INPUT") {
      event.preventDefault();
      write();
    }
  });
  $("stop").addEventListener("click", stop);
}

/** The copy rate, legend and novelty curve of an attribution; hidden for a run without sources. */
export function showAnalysis(att) {
  const analysis = $("analysis");
  if (!att || !att.metrics) {
    analysis.hidden = true;
    return;
  }
  $("copy-stats").textContent = copySummary(att);
  renderLegend($("legend"), att);
  $("legend").hidden = !att.legend.length;
  lineChart($("novelty-chart"), {
    series: [{ name: "novel share", points: noveltyPoints(att) }],
    xLabel: "substring length (characters)", yLabel: "share novel", xMin: 1, xMax: 50, yMin: 0, yMax: 1, height: 190,
  });
  analysis.hidden = false;
}
