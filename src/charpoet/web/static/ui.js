// What every view shares: the error line, the notice line, and reading the settings' inputs.

const $ = (id) => document.getElementById(id);

/** Show the server's (or our own) one-line error until dismissed or the next action. */
export function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

export function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

let noticeTimer = null;

/** A passing remark (not an error), gone after a while. */
export function showNotice(message, ms = 8000) {
  const notice = $("notice");
  notice.textContent = message;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { notice.hidden = true; }, ms);
}

export class InputError extends Error {}

/** The number in an input: null when empty and `optional`, else an InputError naming it. */
export function readNumber(id, label, { integer = false, optional = false } = {}) {
  const input = $(id);
  const text = input.value.trim();
  if (text === "" && optional) return null;
  const value = Number(text);
  if (text === "" || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    input.focus();
    throw new InputError(`${label} must be ${integer ? "a whole number" : "a number"}${text ? `, not "${text}"` : ""}`);
  }
  return value;
}

/** "\n", "\t", "\r" and "\\" typed in a one-line input, as the characters they name (like the CLI). */
export function unescape(text) {
  return text.replace(/\\([ntr\\])/g, (_, c) => ({ n: "\n", t: "\t", r: "\r", "\\": "\\" })[c]);
}

/** Enter does `action`, Shift+Enter is a new line (and nothing while an IME composes). */
export function enterSubmits(textarea, action) {
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !event.altKey && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      action();
    }
  });
}
