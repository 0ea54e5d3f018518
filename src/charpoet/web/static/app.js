// charpoet's page: pick a run, then Write (stream a sample, see its copies), Chat, or watch
// Training. Plain ES modules, no build step, nothing loaded from elsewhere.
//
//   app.js       runs, tabs, keys          write.js, chat.js, training.js   the three views
//   api.js       fetch + event streams     highlight.js, charts.js          drawing
//   ui.js        error line, inputs

import { getJSON } from "./api.js";
import { initChat, loadConversation, stopAnswer } from "./chat.js";
import { el } from "./highlight.js";
import { trainingRun, trainingVisible } from "./training.js";
import { clearError, showError } from "./ui.js";
import { initWrite, runChanged, stopWriting } from "./write.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["write", "chat", "training"];
const RUN_KEY = "charpoet.run";
let runs = [];
let view = "write";

const currentRun = () => {
  const select = $("run");
  return select.disabled || !select.value ? null : select.value;
};

function describe(run) {
  if (run.error) return `cannot be used: ${run.error}`;
  const parts = [run.corpus, run.architecture];
  if (typeof run.steps === "number") parts.push(`${run.steps.toLocaleString("en")} steps`);
  if (typeof run.best_val_bpc === "number") parts.push(`best ${run.best_val_bpc.toFixed(3)} bits per character`);
  else if (typeof run.best_val_loss === "number") parts.push(`best validation loss ${run.best_val_loss.toFixed(3)}`);
  return parts.filter(Boolean).join(" · ");
}

function pickRun(name) {
  const run = runs.find((r) => r.name === name);
  $("run-info").textContent = run ? describe(run) : "";
  if (name) localStorage.setItem(RUN_KEY, name);
  runChanged();
  loadConversation(name);
  trainingRun(name);
}

/** List the runs (again: runs appear and train while the page is open), keeping the pick. */
async function loadRuns() {
  const select = $("run");
  const before = currentRun();
  try {
    runs = (await getJSON("/api/runs")).runs;
  } catch (err) {
    if (before) return; // keep the list we have
    select.replaceChildren(el("option", {}, "no runs"));
    showError(`The runs cannot be listed: ${err.message}`);
    return;
  }
  if (!runs.length) {
    select.replaceChildren(el("option", {}, "no runs"));
    select.disabled = true;
    $("run-info").textContent = "No runs here yet: train one with charpoet train; it will appear here.";
    if (before) pickRun(null);
    return;
  }
  select.replaceChildren(...runs.map((r) => el("option", { value: r.name, disabled: Boolean(r.error) },
    r.error ? `${r.name} (cannot be used)` : r.name)));
  const usable = runs.filter((r) => !r.error);
  const wanted = before || localStorage.getItem(RUN_KEY);
  const first = usable.find((r) => r.name === wanted) || usable[0];
  select.disabled = !first;
  if (first) select.value = first.name;
  const name = first ? first.name : null;
  if (name !== before) pickRun(name);
  else $("run-info").textContent = describe(first);
}

function showView(name, focus = false) {
  if (!VIEWS.includes(name)) name = "write";
  view = name;
  for (const v of VIEWS) {
    const tab = $(`tab-${v}`);
    const on = v === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`view-${v}`).hidden = !on;
    if (on && focus) tab.focus();
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  trainingVisible(name === "training");
}

function initTabs() {
  const tabs = VIEWS.map((v) => $(`tab-${v}`));
  for (const tab of tabs) {
    tab.addEventListener("click", () => showView(tab.dataset.view));
    tab.addEventListener("keydown", (event) => { // arrows move between tabs (WAI-ARIA tabs)
      const i = tabs.indexOf(tab);
      const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
      if (to === undefined) return;
      event.preventDefault();
      showView(tabs[(to + tabs.length) % tabs.length].dataset.view, true);
    });
  }
  window.addEventListener("hashchange", () => showView(location.hash.slice(1)));
  document.addEventListener("visibilitychange", () => trainingVisible(view === "training"));
}

function init() {
  initWrite(currentRun);
  initChat(currentRun);
  initTabs();
  $("error-close").addEventListener("click", clearError);
  $("run").addEventListener("change", () => pickRun(currentRun()));
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    if (stopWriting() || stopAnswer()) event.preventDefault();
    else if (!$("error").hidden) clearError();
  });
  showView(location.hash.slice(1) || "write");
  loadRuns();
  setInterval(() => { if (document.visibilityState === "visible") loadRuns(); }, 60000);
}

init();
