// The Write view: stream a sample from the picked run, then show what it copies.
//
// While the text streams it grows in one text node after the prompt; at the `done` event the
// output is redrawn with the copies marked, and the summary, legend and novelty curve appear.
// Stop (or Esc) aborts the request; the server then stops computing.

import { postEvents, postJSON } from "./api.js";
import { renderText } from "./highlight.js";
import { clearError, InputError, showError, showNotice } from "./ui.js";
import { beginOutput, readSettings, showAnalysis, wireWriteForm } from "./writeview.js";

const $ = (id) => document.getElementById(id);
let controller = null; // the running generation's AbortController
let getRun = () => null;

function setState(state, message = "") {
  const status = $("write-status");
  status.dataset.state = state;
  status.textContent = message;
  $("output").dataset.state = state;
  $("output").setAttribute("aria-busy", String(state === "writing"));
  const writing = state === "writing";
  $("write").disabled = writing || !getRun();
  $("stop").disabled = !writing;
}

function options() {
  return { run: getRun(), ...readSettings() };
}

/** Highlight text that was cut short by Stop (the server only attributes finished samples). */
async function attributePartial(run, prompt, text) {
  if (!text) return;
  try {
    const att = await postJSON("/api/attribute", { run, text });
    if (controller) return; // a new generation began meanwhile
    renderText($("output"), att, prompt === "\n" ? "" : prompt);
    showAnalysis(att);
  } catch {
    // the text stays as it is, unmarked
  }
}

export async function write() {
  if (controller || !getRun()) return;
  clearError();
  let body;
  try {
    body = options();
  } catch (err) {
    if (err instanceof InputError) return showError(err.message);
    throw err;
  }
  const ctl = new AbortController();
  controller = ctl;
  const output = $("output");
  const before = [...output.childNodes]; // shown again if the server refuses at once
  const analysed = !$("analysis").hidden;
  const generated = beginOutput(body.prompt);
  setState("writing", "Writing…");
  let pending = "", done = null;
  try {
    await postEvents("/api/generate", body, {
      signal: ctl.signal,
      onEvent(name, data) {
        if (name === "token") pending += data.texts[0];
        else if (name === "done") done = data;
      },
      onChunk() { // one DOM update per network read
        if (pending) generated.appendData(pending);
        pending = "";
      },
    });
    if (pending) generated.appendData(pending);
    if (!done) throw new Error("the stream ended early; try again");
    const att = done.samples[0];
    renderText(output, att, body.prompt === "\n" ? "" : body.prompt);
    showAnalysis(att);
    if (done.attribution_error) showNotice(`No highlighting: ${done.attribution_error}`);
    controller = null;
    setState("done", `${Array.from(att.text).length.toLocaleString("en")} characters written.`);
  } catch (err) {
    controller = null;
    if (ctl.signal.aborted) {
      setState("stopped", "Stopped.");
      attributePartial(body.run, body.prompt, generated.data);
    } else {
      if (!generated.data) {
        output.replaceChildren(...before);
        $("analysis").hidden = !analysed;
      }
      setState("error", "");
      showError(err.message || String(err));
    }
  } finally {
    if (controller === ctl) controller = null;
    if ($("write-status").dataset.state === "writing") setState("idle");
  }
}

/** Stop the running generation; false if none runs. */
export function stopWriting() {
  if (!controller) return false;
  controller.abort();
  return true;
}

export function initWrite(currentRun) {
  getRun = currentRun;
  wireWriteForm(write, stopWriting);
  setState("idle");
}

/** The picked run changed (or the runs arrived): Write is possible once there is a run. */
export function runChanged() {
  if (!controller) setState($("write-status").dataset.state, $("write-status").textContent);
}
