// dynoform dashboard: the live log tail and the metrics charts. No framework, no build step.
// Text from the server goes in with textContent only, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#5b3cc4", "#1a7f37", "#c62828", "#0a6ebd", "#9a6700", "#7b1fa2", "#00838f"];
const MAX_LOG_LINES = 1000;

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// --- logs ----------------------------------------------------------------------------------
function tailLogs(pre) {
  const state = document.getElementById("log-state");
  const source = new EventSource(pre.dataset.url);
  let stick = true;
  pre.addEventListener("scroll", () => {
    stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  });
  source.onopen = () => { pre.textContent = ""; state.textContent = "live"; };
  source.onerror = () => {  // CLOSED: refused (at most 8 streams at once), no more retries
    state.textContent = source.readyState === EventSource.CLOSED
      ? "not live: the server refused the stream (too many open?); reload to retry"
      : "reconnecting…";
  };
  source.onmessage = (event) => {
    const line = JSON.parse(event.data);
    pre.appendChild(el("span", { class: line.source }, line.text + "\n"));
    while (pre.childNodes.length > MAX_LOG_LINES) pre.removeChild(pre.firstChild);
    if (stick) pre.scrollTop = pre.scrollHeight;
  };
}

// --- charts --------------------------------------------------------------------------------
// series: [{label, values: [number|null per point]}]; labels: one time label per point.
function chart(title, unit, labels, series) {
  const box = el("div", { class: "chart-box" });
  box.appendChild(el("h3", { class: "muted" }, title));
  const width = 360, height = 140, left = 44, bottom = 16;
  const svg = el("svg:svg", { class: "chart", viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": title });
  const all = series.flatMap((s) => s.values.filter((v) => v !== null));
  const top = Math.max(1, ...all);
  const x = (i) => left + (i * (width - left - 4)) / Math.max(1, labels.length - 1);
  const y = (v) => 4 + (1 - v / top) * (height - bottom - 8);
  svg.appendChild(el("svg:line", { class: "axis", x1: left, x2: width, y1: y(0), y2: y(0) }));
  svg.appendChild(el("svg:text", { x: 2, y: 12 }, `${round(top)} ${unit}`));
  svg.appendChild(el("svg:text", { x: 2, y: y(0) }, `0`));
  if (labels.length) {
    svg.appendChild(el("svg:text", { x: left, y: height - 2 }, labels[0]));
    svg.appendChild(el("svg:text", { x: width - 30, y: height - 2 }, labels[labels.length - 1]));
  }
  const legend = el("div", { class: "legend" });
  series.forEach((s, n) => {
    const color = COLORS[n % COLORS.length];
    let path = "", pen = "M";
    s.values.forEach((v, i) => {
      if (v === null) { pen = "M"; return; }
      path += `${pen}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L";
    });
    if (path) svg.appendChild(el("svg:path", { class: "line", d: path, stroke: color }));
    s.values.forEach((v, i) => { // a minute alone between gaps is a dot, not an empty path
      const alone = (j) => j < 0 || j >= s.values.length || s.values[j] === null;
      if (v !== null && alone(i - 1) && alone(i + 1)) {
        svg.appendChild(el("svg:circle", { cx: x(i), cy: y(v), r: 2.5, fill: color }));
      }
    });
    const item = el("span");
    item.appendChild(el("i", { class: `swatch-${n % COLORS.length}` }));
    item.lastChild.style.background = color; // a CSSOM property, not an inline style attribute
    item.appendChild(document.createTextNode(s.label));
    legend.appendChild(item);
  });
  box.appendChild(svg);
  box.appendChild(legend);
  return box;
}

function round(v) { return v >= 10 ? Math.round(v) : Math.round(v * 10) / 10; }

function summary(data) {
  const r = data.router || {};
  const ms = (v) => (v === null || v === undefined ? "–" : `${round(v)} ms`);
  const text = `${r.requests ?? 0} requests, p50 ${ms(r.p50_ms)}, p95 ${ms(r.p95_ms)}, ` +
    `p99 ${ms(r.p99_ms)}, ${r.errors_5xx ?? 0} 5xx`;
  return el("p", { id: "metrics-summary" }, text);
}

function drawMetrics(box, data) {
  box.textContent = "";
  if (!data.available) {
    box.appendChild(el("p", { class: "muted" }, data.reason || "metrics not available"));
    return;
  }
  box.appendChild(summary(data));
  const points = data.points || [];
  const labels = points.map((p) => (p.at || "").slice(11, 16));
  const pick = (key) => points.map((p) => (p[key] === undefined ? null : p[key]));
  box.appendChild(chart("Response time", "ms", labels, [
    { label: "p50", values: pick("p50_ms") },
    { label: "p95", values: pick("p95_ms") },
    { label: "p99", values: pick("p99_ms") },
  ]));
  box.appendChild(chart("Throughput", "req/min", labels, [
    { label: "requests", values: pick("requests") },
    { label: "5xx", values: points.map((p) => (p.responses || {})["5xx"] ?? null) },
  ]));
  const names = (data.dynos || []).map((d) => d.name);
  box.appendChild(chart("Memory per dyno", "MB", labels, names.map((name) => ({
    label: name,
    values: points.map((p) => ((p.dynos || {})[name] || {}).memory_mb ?? null),
  }))));
}

function loadMetrics(box) {
  fetch(box.dataset.url, { credentials: "same-origin" })
    .then((response) => response.json())
    .then((data) => drawMetrics(box, data))
    .catch((error) => { box.textContent = `metrics: ${error}`; });
}

document.addEventListener("DOMContentLoaded", () => {
  const pre = document.getElementById("logs");
  if (pre) tailLogs(pre);
  const metrics = document.getElementById("metrics");
  if (metrics) {
    loadMetrics(metrics);
    setInterval(() => loadMetrics(metrics), 60000);
  }
});
