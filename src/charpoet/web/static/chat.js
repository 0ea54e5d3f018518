// The Chat view: a conversation with the picked run, kept on the server by id.
//
// The id lives in this tab's sessionStorage (one per run), so a reload shows the same dialog;
// when the server no longer knows it (404: expired or restarted) a new conversation starts.
// The server's CONV answer is the truth: after each done, undo and reset the transcript is
// drawn again from its turns.

import { ApiError, getJSON, postEvents, postJSON } from "./api.js";
import { el } from "./highlight.js";
import { clearError, enterSubmits, InputError, readNumber, showError, showNotice, unescape } from "./ui.js";

const $ = (id) => document.getElementById(id);
const STOPS = {
  stop: "a stop string", max_length: "the length limit", sentences: "the sentence limit", blank_line: "a blank line",
};
let getRun = () => null;
let controller = null;
let turns = []; // the server's turns of the shown conversation
let loadedFor = null; // the run whose conversation is shown

const key = (run) => `charpoet.chat.${run}`;
const storedId = (run) => sessionStorage.getItem(key(run));

function setState(state, message = "") {
  const status = $("chat-status");
  status.dataset.state = state;
  status.textContent = message;
  const busy = state === "answering";
  $("chat-send").disabled = busy || !getRun();
  $("chat-stop").disabled = !busy;
  $("chat-undo").disabled = busy || !turns.length;
  $("chat-reset").disabled = busy || !turns.length;
}

function message(who, text, extra = {}) {
  return el("div", { class: `msg ${who}`, "data-testid": `${who}-msg`, ...extra },
    el("span", { class: "who" }, who === "user" ? "You" : getRun() || "run"),
    el("p", { class: "text" }, text));
}

function renderTurns(list) {
  turns = list;
  $("transcript").replaceChildren(...list.map((t) => {
    const answer = message("bot", t.answer || "…");
    if (t.stop) answer.append(el("span", { class: "why" }, `ended at ${STOPS[t.stop] || t.stop}`));
    return el("li", { class: "turn", "data-testid": "turn" }, message("user", t.user), answer);
  }));
  $("chat-empty").hidden = list.length > 0;
  scrollToEnd();
}

function scrollToEnd() {
  const transcript = $("transcript");
  transcript.scrollTop = transcript.scrollHeight;
}

function options() {
  return {
    temperature: readNumber("chat-temperature", "Temperature"),
    top_k: readNumber("chat-top-k", "Top-k", { integer: true }),
    top_p: readNumber("chat-top-p", "Top-p"),
    max_length: readNumber("chat-max-length", "Max length", { integer: true }),
    sentences: readNumber("chat-sentences", "Sentences", { integer: true }),
    seed: readNumber("chat-seed", "Seed", { integer: true, optional: true }),
    user_prefix: unescape($("chat-user-prefix").value),
    bot_prefix: unescape($("chat-bot-prefix").value),
  };
}

/** Show the conversation this tab has with `run` (none: an empty dialog). */
export async function loadConversation(run) {
  if (controller) controller.abort();
  loadedFor = run;
  renderTurns([]);
  setState("idle");
  const id = run && storedId(run);
  if (!id) return;
  try {
    const conv = await getJSON(`/api/chat/${encodeURIComponent(id)}`);
    if (loadedFor === run) renderTurns(conv.turns);
  } catch (err) {
    if (err.status === 404) sessionStorage.removeItem(key(run));
    else showError(err.message);
  }
  if (loadedFor === run) setState("idle");
}

let stoppedAt = -Infinity;

/** Run ``request``; when the server still holds an answer that was just stopped (409 or 429 for a
 * moment, until it notices), try again a few times instead of showing an error. */
async function afterStop(request) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await request();
    } catch (err) {
      const busy = err.status === 409 || err.status === 429;
      if (!busy || attempt >= 10 || performance.now() - stoppedAt > 3000) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

async function streamTurn(body, run, answerNode) {
  let conv = null;
  await postEvents("/api/chat", body, {
    signal: controller.signal,
    onEvent(name, data) {
      if (name === "start") sessionStorage.setItem(key(run), data.conversation);
      else if (name === "token") answerNode.appendData(data.text);
      else if (name === "done") conv = data;
    },
    onChunk: scrollToEnd,
  });
  if (!conv) throw new ApiError("the answer ended early; try again");
  return conv;
}

export async function send() {
  const run = getRun();
  const text = $("chat-input").value;
  if (controller || !run || !text.trim()) return;
  clearError();
  let body;
  try {
    body = { ...options(), text };
  } catch (err) {
    if (err instanceof InputError) return showError(err.message);
    throw err;
  }
  controller = new AbortController();
  const ctl = controller;
  const answer = document.createTextNode("");
  const pending = el("li", { class: "turn pending", "data-testid": "pending-turn" },
    message("user", text), message("bot", ""));
  pending.querySelector(".bot .text").append(answer);
  $("transcript").append(pending);
  $("chat-empty").hidden = true;
  $("chat-input").value = "";
  setState("answering", "Answering…");
  scrollToEnd();
  try {
    let conv;
    const id = storedId(run);
    try {
      conv = await afterStop(() => streamTurn(id ? { ...body, conversation: id } : { ...body, run }, run, answer));
    } catch (err) {
      if (!(id && err.status === 404)) throw err;
      sessionStorage.removeItem(key(run)); // expired, or the server restarted: start afresh
      showNotice("The earlier conversation had ended on the server; this is a new one.");
      renderTurns([]);
      $("transcript").append(pending);
      conv = await streamTurn({ ...body, run }, run, answer);
    }
    controller = null;
    if (loadedFor === run) renderTurns(conv.turns);
    setState("idle");
  } catch (err) {
    controller = null;
    pending.remove(); // the server keeps the conversation as it was
    if (!$("chat-input").value) $("chat-input").value = text;
    $("chat-empty").hidden = turns.length > 0;
    if (ctl.signal.aborted) {
      setState("idle", "Stopped; the conversation is as it was.");
    } else {
      setState("idle");
      showError(err.message || String(err));
    }
  }
}

/** Stop the answer being written; false if there is none. */
export function stopAnswer() {
  if (!controller) return false;
  controller.abort();
  stoppedAt = performance.now();
  return true;
}

async function edit(path, what) {
  const run = getRun();
  const id = run && storedId(run);
  if (controller || !id) return;
  clearError();
  try {
    const conv = await afterStop(() => postJSON(path, { conversation: id }));
    renderTurns(conv.turns);
    setState("idle", what(conv));
  } catch (err) {
    if (err.status === 404) {
      sessionStorage.removeItem(key(run));
      renderTurns([]);
      setState("idle");
      showNotice("The conversation had ended on the server; say something to start a new one.");
    } else {
      showError(err.message);
    }
  }
}

export function initChat(currentRun) {
  getRun = currentRun;
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  enterSubmits($("chat-input"), send);
  $("chat-stop").addEventListener("click", stopAnswer);
  $("chat-undo").addEventListener("click", () => edit("/api/chat/undo",
    (conv) => (conv.undone ? "Forgot the last exchange." : "Nothing to undo.")));
  $("chat-reset").addEventListener("click", () => edit("/api/chat/reset", () => "Started afresh."));
  setState("idle");
}
