// The server's JSON API and its text/event-stream answers (POST, so fetch and not EventSource).
//
//   const runs = await getJSON("/api/runs");
//   await postEvents("/api/generate", body, {signal, onEvent: (name, data) => ..., onChunk: () => ...});
//
// Every error the server sends is {"error": "one line"}; it becomes an ApiError with that
// message and the HTTP status. An `error` event in a stream becomes an ApiError as well.

export class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

async function request(url, options) {
  try {
    return await fetch(url, options);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError("the server cannot be reached: is charpoet serve still running?");
  }
}

async function readJSON(resp) {
  let data = null;
  try {
    data = await resp.json();
  } catch {
    // not JSON: said below
  }
  if (!resp.ok) {
    const message = data && typeof data.error === "string" ? data.error : `${resp.status} ${resp.statusText}`;
    throw new ApiError(message, resp.status);
  }
  if (data === null) throw new ApiError("the server's answer is not JSON", resp.status);
  return data;
}

export async function getJSON(url, signal) {
  return readJSON(await request(url, { headers: { Accept: "application/json" }, signal }));
}

export async function postJSON(url, body, signal) {
  return readJSON(await request(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
    signal,
  }));
}

/** A run's URL part: "books/verne" keeps its slash, the rest is escaped. */
export function runPath(name) {
  return name.split("/").map(encodeURIComponent).join("/");
}

/** One event block ("event: x\ndata: {...}") as {event, data}; null for a comment or keep-alive. */
function parseBlock(block) {
  let event = "message";
  const data = [];
  for (const raw of block.split("\n")) {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  return { event, data: JSON.parse(data.join("\n")) };
}

/**
 * POST `body` to `url` and call onEvent(name, data) for each event of the answer, then
 * onChunk() once per piece read from the network (so a page redraws once per piece, not per
 * token). Resolves when the stream ends; rejects with ApiError for an error status or an
 * `error` event, and with an AbortError when `signal` aborts.
 */
export async function postEvents(url, body, { signal, onEvent, onChunk = () => {} }) {
  const resp = await request(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
    signal,
  });
  if (!resp.ok || !resp.body) return readJSON(resp).then(() => {
    throw new ApiError("the server sent no stream", resp.status);
  });
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        const ev = parseBlock(block);
        if (!ev) continue;
        if (ev.event === "error") throw new ApiError(ev.data.error || "the stream failed", resp.status);
        onEvent(ev.event, ev.data);
      }
      onChunk();
    }
  } catch (err) {
    reader.cancel().catch(() => {});
    throw err;
  }
}
