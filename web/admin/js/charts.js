// Charts drawn as inline SVG (no chart library): bars over time, horizontal bars, a ring.
// Each chart is an image with a title and description for screen readers; the numbers are
// also given as text or a table next to it.

const NS = "http://www.w3.org/2000/svg";
let uid = 0;

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function svgRoot(width, height, title, desc) {
  const id = `chart-${++uid}`;
  return s(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart",
      "aria-labelledby": `${id}-t ${id}-d`, preserveAspectRatio: "xMidYMid meet" },
    s("title", { id: `${id}-t` }, title),
    s("desc", { id: `${id}-d` }, desc),
  );
}

/**
 * The drawing width in SVG units: the space the chart will have on this screen (up to
 * ``max``), so one SVG unit stays about one CSS pixel and labels keep their size on a phone
 * instead of shrinking with a wide picture (issue 14: 4 px labels at 375 px).
 */
function fitWidth(max) {
  const room = (document.documentElement.clientWidth || max) - 64; // page and card padding
  return Math.round(Math.min(max, Math.max(260, room)));
}

function niceMax(value, integer = false) {
  if (integer && value < 4) return 4; // counts: ticks at 0, 2 and 4 rather than 0, 0.5, 1
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

/** Vertical bars: points = [{label, value}], e.g. calls per day. */
export function barChart(points, { title, desc, format = String, integer = false }) {
  const W = fitWidth(900), H = 260, left = 44, right = 12, top = 12, bottom = 36;
  const plotW = W - left - right, plotH = H - top - bottom;
  const max = niceMax(Math.max(0, ...points.map((p) => p.value)), integer);
  const svg = svgRoot(W, H, title, desc);
  for (const frac of [0, 0.5, 1]) {
    const y = top + plotH * (1 - frac);
    svg.append(
      s("line", { x1: left, x2: W - right, y1: y, y2: y, class: "grid" }),
      s("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "axis" }, format(max * frac)),
    );
  }
  const n = Math.max(points.length, 1);
  const slot = plotW / n;
  const barW = Math.max(2, slot * 0.7);
  const labelEvery = Math.ceil(n / Math.max(3, Math.min(8, Math.floor(plotW / 70))));
  points.forEach((p, i) => {
    const hBar = (p.value / max) * plotH;
    const x = left + i * slot + (slot - barW) / 2;
    svg.append(
      s("rect", { x, y: top + plotH - hBar, width: barW, height: Math.max(hBar, p.value ? 1 : 0), class: "bar", rx: 2 },
        s("title", {}, `${p.label}: ${format(p.value)}`)),
    );
    if ((n - 1 - i) % labelEvery === 0) { // counted back from the last day, which is labelled
      svg.append(s("text", { x: x + barW / 2, y: H - bottom + 18, "text-anchor": "middle", class: "axis" }, p.label));
    }
  });
  return svg;
}

/** Horizontal bars with a dashed reference line: e.g. median and p95 latency vs a target. */
export function hBarChart(items, { title, desc, format = String, reference = null, referenceLabel = "" }) {
  const W = fitWidth(480), rowH = 34, left = 110, right = 70, top = 10;
  const H = top * 2 + rowH * items.length + (reference ? 18 : 0);
  const max = niceMax(Math.max(reference || 0, ...items.map((i) => i.value || 0)));
  const plotW = W - left - right;
  const svg = svgRoot(W, H, title, desc);
  items.forEach((item, i) => {
    const y = top + i * rowH;
    const w = ((item.value || 0) / max) * plotW;
    svg.append(
      s("text", { x: left - 8, y: y + rowH / 2 + 4, "text-anchor": "end", class: "label" }, item.label),
      s("rect", { x: left, y: y + 6, width: Math.max(w, 1), height: rowH - 12, class: item.className || "bar", rx: 3 }),
      s("text", { x: left + w + 6, y: y + rowH / 2 + 4, class: "value" }, item.value == null ? "—" : format(item.value)),
    );
  });
  if (reference) {
    const x = left + (reference / max) * plotW;
    svg.append(
      s("line", { x1: x, x2: x, y1: top, y2: top + rowH * items.length, class: "reference" }),
      s("text", { x, y: H - 4, "text-anchor": "middle", class: "axis" }, referenceLabel),
    );
  }
  return svg;
}

/** A ring showing a share (0..1), its percentage in the middle. */
export function ring(rate, { title, desc, text }) {
  const size = 160, r = 62, c = 2 * Math.PI * r;
  const svg = svgRoot(size, size, title, desc);
  svg.classList.add("ring");
  const share = Math.min(Math.max(rate || 0, 0), 1);
  svg.append(
    s("circle", { cx: size / 2, cy: size / 2, r, class: "ring-track" }),
    s("circle", { cx: size / 2, cy: size / 2, r, class: "ring-value",
      "stroke-dasharray": `${share * c} ${c}`, transform: `rotate(-90 ${size / 2} ${size / 2})` }),
    s("text", { x: size / 2, y: size / 2 + 8, "text-anchor": "middle", class: "ring-text" }, text),
  );
  return svg;
}
