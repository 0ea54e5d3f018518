// Small inline SVG line charts, drawn in one replaceChildren (so a redraw never flickers).
//
//   lineChart(svg, {series: [{name, points: [[x, y], ...], dots}], xLabel, yLabel, yMin, yMax, height})
//
// A chart is drawn at its element's width in CSS pixels (so its text keeps its size on a phone)
// and drawn again when that width changes. Colours come from CSS (.series-0, .series-1, ...), so
// the dark theme recolours them.

const NS = "http://www.w3.org/2000/svg";
const M = { left: 54, right: 14, top: 14, bottom: 42 };
const drawn = new WeakMap(); // svg -> {width, spec}
const resized = typeof ResizeObserver === "function" ? new ResizeObserver((entries) => {
  for (const { target } of entries) {
    const last = drawn.get(target);
    if (last && target.clientWidth > 0 && Math.abs(target.clientWidth - last.width) > 1) draw(target, last.spec);
  }
}) : null;

function svgEl(tag, attrs = {}, text = null) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) || 10 * mag;
  const ticks = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

function format(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 10000) return `${+(v / 1000).toPrecision(3)}k`;
  if (a >= 100) return String(Math.round(v));
  return String(+v.toPrecision(3));
}

/** [lo, hi] of `values`, unless given; a lone value gets room around it, and the data a margin. */
function extent(values, lo, hi, margin = 0) {
  let min = lo ?? Math.min(...values), max = hi ?? Math.max(...values);
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (max === min) {
    const pad = Math.abs(max) * 0.1 || 1;
    return lo !== undefined && hi === undefined ? [min, max + pad] : [min - pad, max + pad];
  }
  const pad = (max - min) * margin;
  return [lo ?? min - pad, hi ?? max + pad];
}

export function lineChart(svg, spec) {
  if (!drawn.has(svg) && resized) resized.observe(svg);
  draw(svg, spec);
}

function draw(svg, spec) {
  const { series, xLabel, yLabel, xMin, xMax, yMin, yMax, empty = "nothing to draw yet", height = 240 } = spec;
  const W = Math.max(240, Math.round(svg.clientWidth || 480)), H = height;
  drawn.set(svg, { width: W, spec });
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const all = series.flatMap((s) => s.points);
  const nodes = [];
  const pw = W - M.left - M.right, ph = H - M.top - M.bottom;
  // axis labels
  nodes.push(svgEl("text", { class: "axis-label", x: M.left + pw / 2, y: H - 6, "text-anchor": "middle" }, xLabel));
  nodes.push(svgEl("text", {
    class: "axis-label", x: 0, y: 0, "text-anchor": "middle",
    transform: `translate(13 ${M.top + ph / 2}) rotate(-90)`,
  }, yLabel));
  if (!all.length) {
    nodes.push(svgEl("rect", { class: "frame", x: M.left, y: M.top, width: pw, height: ph }));
    nodes.push(svgEl("text", { class: "empty", x: M.left + pw / 2, y: M.top + ph / 2, "text-anchor": "middle" }, empty));
    svg.replaceChildren(...nodes);
    return;
  }
  const [x0, x1] = extent(all.map((p) => p[0]), xMin, xMax);
  const [y0, y1] = extent(all.map((p) => p[1]), yMin, yMax, 0.05);
  const sx = (x) => M.left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y) => M.top + ph - ((y - y0) / (y1 - y0)) * ph;
  // grid and ticks
  for (const t of niceTicks(y0, y1, 4)) {
    const y = sy(t).toFixed(1);
    nodes.push(svgEl("line", { class: "grid", x1: M.left, x2: M.left + pw, y1: y, y2: y }));
    nodes.push(svgEl("text", { class: "tick", x: M.left - 6, y, "text-anchor": "end", "dominant-baseline": "middle" },
      format(t)));
  }
  for (const t of niceTicks(x0, x1, 5)) {
    const x = sx(t).toFixed(1);
    nodes.push(svgEl("line", { class: "grid", x1: x, x2: x, y1: M.top, y2: M.top + ph }));
    nodes.push(svgEl("text", { class: "tick", x, y: M.top + ph + 15, "text-anchor": "middle" }, format(t)));
  }
  nodes.push(svgEl("rect", { class: "frame", x: M.left, y: M.top, width: pw, height: ph }));
  // the lines, one path each (callers leave out missing values)
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const d = s.points.map(([x, y], k) => `${k ? "L" : "M"}${sx(x).toFixed(1)} ${sy(y).toFixed(1)}`).join("");
    nodes.push(svgEl("path", { class: `line series-${i}`, d, "data-series": s.name }));
    if (s.dots || s.points.length === 1) {
      for (const [x, y] of s.points) {
        nodes.push(svgEl("circle", { class: `dot series-${i}`, cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: 3 }));
      }
    }
  });
  // the key, top right
  if (series.length > 1) {
    nodes.push(svgEl("rect", {
      class: "key-bg", x: M.left + pw - 134, y: M.top + 2, width: 130, height: 16 * series.length + 4, rx: 3,
    }));
    series.forEach((s, i) => {
      const y = M.top + 12 + i * 16;
      const x = M.left + pw - 8;
      nodes.push(svgEl("line", { class: `line series-${i}`, x1: x - 120, x2: x - 100, y1: y, y2: y }));
      nodes.push(svgEl("text", { class: "key", x: x - 94, y, "dominant-baseline": "middle" }, s.name));
    });
  }
  svg.replaceChildren(...nodes);
}
