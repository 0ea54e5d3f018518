// The Training view: the picked run's loss and bits-per-character curves and its latest samples,
// polled every few seconds while the run trains (its metrics changed lately), slowly otherwise.
// Only what changed is redrawn, each part in one step, so polling never flickers.

import { getJSON, runPath } from "./api.js";
import { lineChart } from "./charts.js";
import { copySummary, el, renderLegend, renderText } from "./highlight.js";
import { showError } from "./ui.js";

const $ = (id) => document.getElementById(id);
const FAST_MS = 3000, SLOW_MS = 30000;
let run = null, visible = false, timer = null, generation = 0;
let metricsSig = "", samplesSig = "";

const num = (v) => typeof v === "number" && Number.isFinite(v);
const fixed = (v, d = 3) => (num(v) ? v.toFixed(d) : "–");

function ago(seconds) {
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function drawMetrics(data) {
  const records = data.records;
  const train = records.filter((r) => r.kind === "train" && num(r.step) && num(r.loss));
  const evals = records.filter((r) => r.kind === "eval" && num(r.step));
  const point = (field) => (r) => (num(r[field]) ? [r.step, r[field]] : null);
  const steps = records.filter((r) => num(r.step)).map((r) => r.step);
  const xMax = steps.length ? Math.max(...steps) : undefined; // both charts share the step axis
  lineChart($("loss-chart"), {
    series: [
      { name: "training loss", points: train.map(point("loss")).filter(Boolean) },
      { name: "validation loss", points: evals.map(point("val_loss")).filter(Boolean), dots: true },
    ],
    xLabel: "step", yLabel: "loss", xMin: 0, xMax, yMin: 0, empty: "no losses logged yet",
  });
  lineChart($("bpc-chart"), {
    series: [{ name: "validation bpc", points: evals.map(point("val_bpc")).filter(Boolean), dots: true }],
    xLabel: "step", yLabel: "bits per character", xMin: 0, xMax, empty: "no evaluations yet",
  });
  const last = train[train.length - 1], lastEval = evals[evals.length - 1];
  const stats = $("train-stats");
  const parts = [];
  if (last) {
    parts.push(`step ${last.step.toLocaleString("en")}`);
    if (num(last.epoch)) parts.push(`epoch ${last.epoch.toFixed(2)}`);
    parts.push(`training loss ${fixed(last.loss)}`);
    if (num(last.chars_per_sec)) parts.push(`${Math.round(last.chars_per_sec).toLocaleString("en")} chars/s`);
  }
  if (lastEval) parts.push(`validation ${fixed(lastEval.val_loss)} (${fixed(lastEval.val_bpc)} bpc)`);
  const newest = records.reduce((t, r) => (num(r.time) && r.time > t ? r.time : t), 0);
  const badge = el("span", { class: `badge ${data.training ? "live" : ""}`, "data-testid": "training-badge" },
    data.training ? "training" : "not training");
  stats.replaceChildren(badge, " ",
    parts.length ? parts.join(" · ") : "No metrics yet.",
    newest ? ` · updated ${ago(newest)}` : "");
}

function drawSamples(samples) {
  $("samples-empty").hidden = samples.length > 0;
  $("samples").replaceChildren(...samples.slice().reverse().map((s) => {
    const att = s.attribution;
    const text = el("div", { class: "text sample-text" });
    renderText(text, att);
    const legend = el("ol", { class: "legend" });
    renderLegend(legend, att);
    const head = [];
    if (num(s.step)) head.push(`step ${s.step.toLocaleString("en")}`);
    if (num(s.temperature)) head.push(`temperature ${s.temperature}`);
    if (num(s.time) && s.time > 0) head.push(ago(s.time));
    return el("li", { class: "sample", "data-testid": "sample" },
      el("p", { class: "sample-head" }, el("strong", {}, head.join(" · ")), " — ", copySummary(att)),
      text, att.legend.length ? legend : null);
  }));
}

async function refresh() {
  clearTimeout(timer);
  timer = null;
  if (!run || !visible) return;
  const mine = ++generation, name = run;
  let training = false;
  try {
    const [metrics, samples] = await Promise.all([
      getJSON(`/api/runs/${runPath(name)}/metrics`),
      getJSON(`/api/runs/${runPath(name)}/samples?limit=6`),
    ]);
    if (mine !== generation) return; // the run changed meanwhile
    training = metrics.training;
    const records = metrics.records;
    const sig = `${metrics.training}|${records.length}|${JSON.stringify(records[records.length - 1] || null)}`;
    if (sig !== metricsSig || !$("loss-chart").hasChildNodes()) {
      metricsSig = sig;
      drawMetrics(metrics);
    }
    const ssig = samples.samples.map((s) => `${s.step}/${s.temperature}/${s.time}/${s.attribution.text.length}`).join(",");
    if ((ssig || "none") !== samplesSig) {
      samplesSig = ssig || "none";
      drawSamples(samples.samples);
    }
  } catch (err) {
    if (mine !== generation) return;
    showError(`Training view: ${err.message}`);
  }
  if (mine === generation && visible && run === name) {
    timer = setTimeout(refresh, training ? FAST_MS : SLOW_MS);
  }
}

/** Show `name`'s training (null: none). */
export function trainingRun(name) {
  if (name === run) return;
  run = name;
  metricsSig = samplesSig = "";
  generation++;
  $("loss-chart").replaceChildren();
  $("bpc-chart").replaceChildren();
  $("samples").replaceChildren();
  $("train-stats").textContent = "";
  refresh();
}

/** The view is shown (poll) or hidden (stop polling). */
export function trainingVisible(shown) {
  visible = shown && document.visibilityState === "visible";
  if (visible) refresh();
  else {
    clearTimeout(timer);
    timer = null;
    generation++;
  }
}
