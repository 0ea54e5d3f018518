// Source attribution in the browser: the Python rule (charpoet/attribution.py), span for span.
//
//   const index = await loadIndex("attribution/");     // sources.json, corpus.bin, index.bin
//   const att = attribute(index, text, 20);            // the server's ATT object (attribution_json)
//
// At each character of the text, the longest prefix of the rest that occurs verbatim in a source
// is found by binary search over the suffix array of the sources' UTF-8 bytes (each followed by
// 0xFF, which UTF-8 never holds, so no match crosses two sources). With at least minLen
// characters it is a span, credited to the first source (library order) containing it, at that
// source's first occurrence, with the number of other sources containing it; the scan goes on
// after it, else one character further. Offsets count code points, as Python's str does.

const BLOCK = 4096; // bytes between character-count checkpoints
const NOVELTY_MAX_LEN = 50;
const FILES = ["sources.json", "corpus.bin", "index.bin"];

// render.py's palette: the fixed list, then evenly spaced HLS hues.
const BASE_PALETTE = [
  "#80b1d3", "#fdb462", "#b3de69", "#fb8072", "#bebada", "#ffed6f",
  "#9edae5", "#fccde5", "#bc80bd", "#ccebc5", "#e5c494", "#66c2a5",
];

/**
 * The index files, fetched from the folder `base` (a URL, relative to the page), or given as an object
 * {"sources.json", "corpus.bin", "index.bin"} of ArrayBuffers, typed arrays or strings.
 * `fetchFn` (default: the global fetch) lets other environments supply the files.
 */
export async function loadIndex(base, fetchFn = globalThis.fetch) {
  if (typeof base !== "string" && !(base instanceof URL)) return indexFromFiles(base);
  const files = {};
  await Promise.all(FILES.map(async (name) => {
    const folder = String(base).endsWith("/") ? String(base) : `${base}/`;
    const url = new URL(name, new URL(folder, globalThis.location?.href ?? "file:///"));
    const response = await fetchFn(String(url));
    if (!response.ok) throw new Error(`attribution index: ${name} could not be loaded (${response.status})`);
    files[name] = await response.arrayBuffer();
  }));
  return indexFromFiles(files);
}

function bytesOf(data) {
  if (typeof data === "string") return new TextEncoder().encode(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError("attribution index: a file must be an ArrayBuffer, a typed array or a string");
}

/** The index from its files' contents (see loadIndex). */
export function indexFromFiles(files) {
  const meta = JSON.parse(new TextDecoder().decode(bytesOf(files["sources.json"])));
  if (meta.format !== "charpoet.site-attribution/1") throw new Error(`attribution index: unknown format ${meta.format}`);
  const corpus = bytesOf(files["corpus.bin"]);
  const raw = bytesOf(files["index.bin"]);
  const n = meta.corpus.bytes;
  if (corpus.length !== n || raw.length !== 4 * n) throw new Error("attribution index: files do not match sources.json");
  let sa;
  const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
  if (littleEndian && raw.byteOffset % 4 === 0) {
    sa = new Int32Array(raw.buffer, raw.byteOffset, n);
  } else {
    sa = new Int32Array(n);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let j = 0; j < n; j++) sa[j] = view.getInt32(4 * j, true);
  }
  const blocks = Math.ceil(n / BLOCK);
  const blockChars = new Float64Array(blocks + 1); // characters (separators too) before each block
  for (let b = 0; b < blocks; b++) {
    let count = 0;
    for (let p = b * BLOCK, end = Math.min(n, p + BLOCK); p < end; p++) if ((corpus[p] & 0xc0) !== 0x80) count++;
    blockChars[b + 1] = blockChars[b] + count;
  }
  return { sources: meta.sources, starts: Int32Array.from(meta.starts), corpus, sa, n, blockChars,
           fingerprint: meta.fingerprint, seen: new Int32Array(meta.sources.length), stamp: 0 };
}

// --- lookup ---------------------------------------------------------------------------------

/**
 * Binary search of the query bytes q[qs, qe) among the suffixes: the first suffix row >= the
 * query (`atEnd` = -1: lower bound; +1: past every suffix that starts with the query), and the
 * longest common prefix of the query with a suffix next to that row (the longest match).
 * lcp with the rows between two bounds is at least the smaller of the bounds' lcps.
 */
function search(index, q, qs, qe, atEnd) {
  const { corpus, sa, n } = index;
  let lo = 0, hi = n, lcpLo = 0, lcpHi = 0;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = sa[mid];
    let k = Math.min(lcpLo, lcpHi);
    let sign = atEnd;
    while (qs + k < qe) {
      const cb = c + k < n ? corpus[c + k] : -1;
      const qb = q[qs + k];
      if (qb !== cb) { sign = qb > cb ? 1 : -1; break; }
      k++;
    }
    if (sign > 0) { lo = mid + 1; lcpLo = k; } else { hi = mid; lcpHi = k; }
  }
  return { row: lo, match: Math.max(lcpLo, lcpHi) };
}

function charsBefore(index, pos) {
  const block = Math.floor(pos / BLOCK);
  let count = index.blockChars[block];
  for (let p = block * BLOCK; p < pos; p++) if ((index.corpus[p] & 0xc0) !== 0x80) count++;
  return count;
}

/** The source of passage q[qs, qe): [first source containing it, char offset there, other sources]. */
function credit(index, q, qs, qe, memo) {
  const a = search(index, q, qs, qe, -1).row;
  const b = search(index, q, qs, qe, 1).row;
  if (b - a > 256) { // a common passage: credit each one once per text
    const key = `${a}:${b}`;
    if (!memo.has(key)) memo.set(key, scan(index, a, b));
    return memo.get(key);
  }
  return scan(index, a, b);
}

/** [source, offset, also_in] of the suffix rows [a, b): all occurrences of one passage. */
function scan(index, a, b) {
  const { sa, starts, seen } = index;
  const stamp = ++index.stamp;
  let source = Infinity, first = Infinity, distinct = 0;
  for (let r = a; r < b; r++) {
    const p = sa[r];
    let lo = 0, hi = starts.length - 1; // the last start <= p
    while (hi - lo > 1) { const mid = (lo + hi) >>> 1; if (starts[mid] <= p) lo = mid; else hi = mid; }
    if (seen[lo] !== stamp) { seen[lo] = stamp; distinct++; }
    if (lo < source || (lo === source && p < first)) { source = lo; first = p; }
  }
  return [source, charsBefore(index, first) - charsBefore(index, starts[source]), distinct - 1];
}

/**
 * Greedy verbatim spans of `text` (at least `minLen` characters) and metrics, in the shape of the
 * server's attribution_json: {text, min_len, spans, metrics, legend, prefix}.
 */
export function attribute(index, text, minLen = 20, prefix = "") {
  if (!Number.isInteger(minLen) || minLen < 1) throw new RangeError(`--min-quote must be >= 1, got ${minLen}`);
  const q = new TextEncoder().encode(text);
  const qlen = q.length;
  const pos = []; // byte offset of each character, then qlen
  for (let p = 0; p < qlen; p++) if ((q[p] & 0xc0) !== 0x80) pos.push(p);
  const m = pos.length;
  pos.push(qlen);
  // Characters fully inside a match of `bytes` bytes from character i.
  const charsIn = (i, bytes) => {
    let k = i;
    while (k < m && pos[k + 1] <= pos[i] + bytes) k++;
    return k - i;
  };
  // Match lengths capped at NOVELTY_MAX_LEN characters, enough for the novelty curve.
  const capped = new Int32Array(m);
  for (let i = 0; i < m; i++) {
    capped[i] = charsIn(i, search(index, q, pos[i], pos[Math.min(m, i + NOVELTY_MAX_LEN)], -1).match);
  }
  const spans = [], memo = new Map();
  for (let i = 0; i < m;) {
    let length = capped[i];
    if (length === NOVELTY_MAX_LEN && i + length < m) length = charsIn(i, search(index, q, pos[i], qlen, -1).match);
    if (length >= minLen) {
      const [source, offset, alsoIn] = credit(index, q, pos[i], pos[i + length], memo);
      spans.push({ start: i, end: i + length, source, source_offset: offset, also_in: alsoIn });
      i += length;
    } else {
      i += 1;
    }
  }
  const novelty = {};
  for (let length = 1; length <= NOVELTY_MAX_LEN; length++) {
    const count = m - length + 1;
    if (count <= 0) { novelty[String(length)] = null; continue; }
    let fresh = 0;
    for (let i = 0; i < count; i++) if (capped[i] < length) fresh++;
    novelty[String(length)] = fresh / count;
  }
  return toJson(index, text, minLen, spans, novelty, m, prefix);
}

function toJson(index, text, minLen, spans, novelty, chars, prefix) {
  const { sources } = index;
  const order = []; // cited sources, in order of first appearance
  const number = new Map();
  for (const s of spans) if (!number.has(s.source)) { order.push(s.source); number.set(s.source, order.length); }
  const colours = palette(order.length);
  const legend = order.map((src, k) => ({ number: k + 1, source: sources[src].name,
    title: sources[src].title || sources[src].name, colour: colours[k] }));
  let copied = 0, longest = null;
  const shares = new Map();
  for (const s of spans) {
    const length = s.end - s.start;
    copied += length;
    if (longest === null || length > longest.end - longest.start) longest = s;
    shares.set(s.source, (shares.get(s.source) ?? 0) + length);
  }
  const sourceShares = {};
  for (const src of [...shares.keys()].sort((a, b) => a - b)) sourceShares[sources[src].name] = shares.get(src) / chars;
  return {
    text,
    min_len: minLen,
    spans: spans.map((s) => ({ start: s.start, end: s.end, source: sources[s.source].name,
      source_title: sources[s.source].title, source_offset: s.source_offset, also_in: s.also_in,
      number: number.get(s.source) })),
    metrics: {
      chars,
      copied_chars: copied,
      copy_rate: chars ? copied / chars : 0.0,
      longest: longest === null ? null : { length: longest.end - longest.start, start: longest.start,
        source: sources[longest.source].name },
      source_shares: sourceShares,
      novelty,
    },
    legend,
    prefix,
  };
}

// --- colours: render.palette and Python's colorsys.hls_to_rgb and round(), bit for bit ----------

function pyMod1(x) {
  let r = x % 1.0;
  if (r !== 0 && r < 0) r += 1.0;
  return r;
}

function hlsValue(m1, m2, hue) {
  hue = pyMod1(hue);
  if (hue < 1.0 / 6.0) return m1 + (m2 - m1) * hue * 6.0;
  if (hue < 0.5) return m2;
  if (hue < 2.0 / 3.0) return m1 + (m2 - m1) * (2.0 / 3.0 - hue) * 6.0;
  return m1;
}

function hlsToRgb(h, l, s) {
  if (s === 0.0) return [l, l, l];
  const m2 = l <= 0.5 ? l * (1.0 + s) : l + s - l * s;
  const m1 = 2.0 * l - m2;
  return [hlsValue(m1, m2, h + 1.0 / 3.0), hlsValue(m1, m2, h), hlsValue(m1, m2, h - 1.0 / 3.0)];
}

function roundHalfEven(x) {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

const hex2 = (v) => roundHalfEven(v * 255).toString(16).padStart(2, "0");

/** `n` background colours as #rrggbb, as charpoet.render.palette gives them. */
export function palette(n) {
  const colours = BASE_PALETTE.slice(0, n);
  const extra = n - colours.length;
  for (let i = 0; i < extra; i++) {
    const lightness = i % 2 === 0 ? 0.80 : 0.70;
    const [r, g, b] = hlsToRgb((i + 0.5) / extra, lightness, 0.65);
    colours.push(`#${hex2(r)}${hex2(g)}${hex2(b)}`);
  }
  return colours;
}
