// Attributions (the server's ATT objects) as DOM: the text with its verbatim copies marked in
// the legend's colours, the legend, and a one-line summary. Model text only ever goes into
// text nodes (textContent), never into markup.
//
//   renderText(container, att, prompt)   // prompt (bold) + text with <mark>s, title = source info
//   renderLegend(ol, att); copySummary(att)

/** An element with attributes and children (strings become text nodes). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export const percent = (x) => `${(100 * x).toFixed(1)}%`;

function legendByNumber(att) {
  return new Map((att.legend || []).map((entry) => [entry.number, entry]));
}

/** Hover text of a span, as the HTML renderer writes it: "[n] Title — offset 1234 (also in …)". */
export function spanNote(span, entry) {
  const title = span.source_title || (entry && entry.title) || span.source;
  let note = `[${span.number}] ${title} — offset ${span.source_offset.toLocaleString("en")}`;
  if (span.also_in) note += ` (also in ${span.also_in} other source${span.also_in === 1 ? "" : "s"})`;
  return note;
}

/**
 * Fill `container` with the prompt (if any) and the attribution's text, its spans marked.
 * Span offsets count Unicode code points (Python's str), so the text is cut as code points.
 */
export function renderText(container, att, prompt = "") {
  const legend = legendByNumber(att);
  const chars = Array.from(att.text);
  const nodes = [];
  if (prompt) nodes.push(el("span", { class: "prompt", "data-testid": "prompt-echo" }, prompt));
  let pos = 0;
  for (const span of att.spans || []) {
    if (span.start > pos) nodes.push(chars.slice(pos, span.start).join(""));
    const entry = legend.get(span.number);
    nodes.push(el("mark", {
      class: pos > 0 && span.start === pos ? "copy joined" : "copy",  // joined: no free text since the last span
      "data-testid": "copy",
      "data-number": span.number,
      "data-source": span.source,
      title: spanNote(span, entry),
      style: { backgroundColor: entry ? entry.colour : "#ffed6f" },
    }, chars.slice(span.start, span.end).join("")));
    pos = Math.max(pos, span.end);
  }
  if (pos < chars.length) nodes.push(chars.slice(pos).join(""));
  container.replaceChildren(...nodes);
}

/** The legend: one item per cited source, its number on its colour, then its title. */
export function renderLegend(ol, att) {
  ol.replaceChildren(...(att.legend || []).map((entry) => el("li", { "data-testid": "legend-item" },
    el("span", { class: "swatch", style: { backgroundColor: entry.colour }, "aria-hidden": "true" }, String(entry.number)),
    el("span", { class: "visually-hidden" }, `${entry.number}: `),
    el("span", { class: "legend-title", title: entry.source }, entry.title || entry.source),
  )));
}

/** "12.3% copied · 3 spans · longest 42 characters, from [1] Title"; or that there are none. */
export function copySummary(att) {
  const m = att.metrics;
  if (!m) return "";
  if (!att.spans.length) {
    return `No verbatim copies of ${att.min_len}+ characters: ${m.chars.toLocaleString("en")} characters, all new.`;
  }
  const n = att.spans.length;
  const count = (n) => n.toLocaleString("en");
  let line = `${percent(m.copy_rate)} copied (${count(m.copied_chars)} of ${count(m.chars)} characters)`;
  line += ` · ${n} span${n === 1 ? "" : "s"} of ${att.min_len}+`;
  if (m.longest) {
    const entry = (att.legend || []).find((e) => e.source === m.longest.source);
    line += ` · longest ${m.longest.length} characters`;
    if (entry) line += `, from [${entry.number}] ${entry.title}`;
  }
  return line;
}

/** The novelty curve's points: [length, share] for lengths 1..50, nulls left out. */
export function noveltyPoints(att) {
  const novelty = (att.metrics && att.metrics.novelty) || {};
  return Object.entries(novelty)
    .map(([k, v]) => [Number(k), v])
    .filter(([k, v]) => Number.isFinite(k) && typeof v === "number" && Number.isFinite(v))
    .sort((a, b) => a[0] - b[0]);
}
