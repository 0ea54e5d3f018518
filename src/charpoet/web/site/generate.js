// Generation in the browser: a run's ONNX step (`charpoet export --format web`) on onnxruntime-web.
//
//   const model = await loadModel("site.json");          // the step, the vocabulary, the shape
//   for await (const piece of model.stream(prompt, { length: 200, temperature: 0.8, topK: 0, topP: 1, seed: 1 }))
//     output.append(piece);                              // one token's text at a time
//
// The prompt is fed token by token through the step (batch 1), then each new token is drawn from
// the last logits as charpoet.sampling draws it: logits minus their maximum, divided by the
// temperature (0 = argmax, the first maximum, as numpy), top-k (ties with the k-th kept), top-p
// (the smallest most-likely set reaching p), <unk> never drawn, in float64, one uniform number
// per token by inverse CDF. Greedy text is Python's; the uniforms come from a seeded sfc32 here
// (numpy's PCG64 in Python), so a seed repeats its text in the browser but not in Python.

import * as ort from "./ort/ort.wasm.min.mjs";

ort.env.wasm.numThreads = 1; // no SharedArrayBuffer needed: any static host, no special headers
ort.env.wasm.proxy = false;
ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;

export class GenerationError extends Error {}

/** A tokenizer from vocab.json ({kind: "char", chars} or {kind: "word", tokens}), as tokenizer.py's. */
export function tokenizer(vocab) {
  if (vocab.kind === "char") {
    const index = new Map(vocab.chars.map((c, i) => [c, i]));
    return {
      pieces: (text) => Array.from(text),
      encode(text) {
        const pieces = Array.from(text);
        const unknown = [...new Set(pieces.filter((c) => !index.has(c)))].sort();
        if (unknown.length) {
          throw new GenerationError(`characters not in the model's vocabulary: ${unknown.slice(0, 10).map((c) => JSON.stringify(c)).join(", ")}`);
        }
        return pieces.map((c) => index.get(c));
      },
      text: (id) => vocab.chars[id],
      size: vocab.chars.length,
      unk: null,
    };
  }
  if (vocab.kind === "word") {
    // tokenizer._WORD_PIECES; Python's \w is letters, digits and numbers of any script, and _
    const pieces = /[\p{L}\p{N}_]+(?:['\u2019][\p{L}\p{N}_]+)*|\n|[^\S\n]+|[^\p{L}\p{N}_\s]/gu;
    const index = new Map(vocab.tokens.map((t, i) => [t, i]));
    return {
      pieces: (text) => text.match(pieces) || [],
      encode: (text) => (text.match(pieces) || []).map((p) => index.get(p) ?? 0),
      text: (id) => vocab.tokens[id],
      size: vocab.tokens.length,
      unk: 0,
    };
  }
  throw new GenerationError(`unknown vocabulary kind ${JSON.stringify(vocab.kind)}`);
}

/** sfc32 seeded through splitmix32 from any integer seed (its low 64 bits); next() is in [0, 1) with 53 bits. */
export function seededRandom(seed) {
  const bits = BigInt.asUintN(64, BigInt(seed));
  let s = Number(bits & 0xffffffffn) ^ 0x9e3779b9, t = Number(bits >> 32n);
  const mix = () => { // splitmix32
    s = (s + 0x9e3779b9) | 0;
    let z = s ^ t;
    t = Math.imul(t ^ (t >>> 15), 0x85ebca6b) ^ z;
    z = Math.imul(z ^ (z >>> 16), 0x21f0d9b5);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    return (z ^ (z >>> 15)) >>> 0;
  };
  let a = mix(), b = mix(), c = mix(), d = mix();
  const u32 = () => {
    const r = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + r) | 0;
    return r >>> 0;
  };
  for (let i = 0; i < 12; i++) u32();
  return { next: () => ((u32() >>> 5) * 67108864 + (u32() >>> 6)) / 9007199254740992 };
}

/** A fresh random seed (what an empty Seed field means). */
export function randomSeed() {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/** The next token from float32 logits (V,): charpoet.sampling's filtered_weights and _draw. */
export function pick(logits, { temperature = 0.8, topK = 0, topP = 1 } = {}, uniform = 0, unk = null) {
  const V = logits.length;
  const x = Float64Array.from(logits);
  if (unk !== null) x[unk] = -Infinity;
  let best = 0;
  for (let i = 1; i < V; i++) if (x[i] > x[best]) best = i; // the first maximum
  if (!Number.isFinite(x[best]) || x.some(Number.isNaN)) {
    throw new GenerationError("the model's outputs are not finite numbers (NaN or inf): its weights are damaged");
  }
  if (temperature === 0) return best;
  const top = x[best];
  for (let i = 0; i < V; i++) x[i] = (x[i] - top) / temperature;
  const order = Array.from(x.keys()).sort((i, j) => x[j] - x[i] || i - j); // most likely first, ties by index
  if (topK > 0 && topK < V) {
    const kth = x[order[topK - 1]];
    for (let i = 0; i < V; i++) if (x[i] < kth) x[i] = -Infinity;
  }
  const w = x.map(Math.exp);
  if (topP < 1) {
    let total = 0;
    for (let i = 0; i < V; i++) total += w[i];
    let before = 0;
    for (const i of order) {
      const share = w[i] / total;
      if (before >= topP) w[i] = 0;
      before += share;
    }
  }
  const cumulative = new Float64Array(V);
  let sum = 0, last = 0;
  for (let i = 0; i < V; i++) {
    sum += w[i];
    cumulative[i] = sum;
    if (w[i] > 0) last = i;
  }
  const target = uniform * sum;
  let chosen = 0;
  for (let i = 0; i < V; i++) if (cumulative[i] <= target) chosen++;
  return Math.min(chosen, last);
}

/** The site's model: fetches site.json, the vocabulary and model.onnx relative to `manifestUrl`. */
export async function loadModel(manifestUrl = "site.json") {
  const base = new URL(manifestUrl, document.baseURI);
  const fetchOk = async (name) => {
    const response = await fetch(new URL(name, base));
    if (!response.ok) throw new GenerationError(`${name}: ${response.status} ${response.statusText}`);
    return response;
  };
  const site = await (await fetchOk(base.href)).json();
  const vocab = await (await fetchOk(site.vocab)).json();
  const bytes = new Uint8Array(await (await fetchOk(site.model)).arrayBuffer());
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  return new Model(session, tokenizer(vocab), site);
}

export class Model {
  constructor(session, tok, site) {
    this.session = session;
    this.tokenizer = tok;
    this.site = site;
    this.lstm = site.cell === "lstm";
  }

  /** The zero state for batch 1: {h[, c]} as (L, 1, H) float32 tensors. */
  initState() {
    const { num_layers: L, rnn_size: H } = this.site;
    const zeros = () => new ort.Tensor("float32", new Float32Array(L * H), [L, 1, H]);
    return this.lstm ? { h: zeros(), c: zeros() } : { h: zeros() };
  }

  /** One step: token id and state -> {logits (V,) Float32Array, state}. */
  async step(token, state) {
    const out = await this.session.run({ tokens: new ort.Tensor("int64", BigInt64Array.of(BigInt(token)), [1]), ...state });
    const next = this.lstm ? { h: out.h_out, c: out.c_out } : { h: out.h_out };
    return { logits: out.logits.data, state: next };
  }

  /**
   * Yield the text of each new token: `length` tokens after `prompt` (which must not be empty).
   * Options: temperature, topK, topP, seed (null = random), signal (an AbortSignal that stops it).
   */
  async *stream(prompt, { length = 500, temperature = 0.8, topK = 0, topP = 1, seed = null, signal = null } = {}) {
    if (!prompt) throw new GenerationError("the prompt is empty; give at least one character");
    if (!(temperature >= 0)) throw new GenerationError(`Temperature must be >= 0, not ${temperature}`);
    if (!(topK >= 0)) throw new GenerationError(`Top-k must be >= 0, not ${topK}`);
    if (!(topP > 0 && topP <= 1)) throw new GenerationError(`Top-p must be in (0, 1], not ${topP}`);
    if (!(length >= 0)) throw new GenerationError(`Length must be >= 0, not ${length}`);
    const ids = this.tokenizer.encode(prompt);
    const random = seededRandom(seed ?? randomSeed());
    let state = this.initState(), logits = null;
    for (const id of ids) ({ logits, state } = await this.step(id, state)); // the prime, token by token
    for (let n = 0; n < length; n++) {
      if (signal && signal.aborted) return;
      const token = pick(logits, { temperature, topK, topP }, random.next(), this.tokenizer.unk);
      yield this.tokenizer.text(token);
      if (n + 1 < length) ({ logits, state } = await this.step(token, state));
    }
  }
}
