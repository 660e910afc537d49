// Traffic view: requests per minute, each emotion's distribution across requests and guardrail
// firings per minute by rule, from the audit store, polled while the view is open.

import { getJSON, recordsOf } from "./api.js";
import { categorical } from "./colors.js";

const $ = (id) => document.getElementById(id);
const MINUTES = 30;
const POLL_MS = 3000;

function quantile(sorted, q) {
  if (!sorted.length) return null;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function minuteLabels(now) {
  const start = Math.floor(now / 60000) - MINUTES + 1;
  return Array.from({ length: MINUTES }, (_, i) => start + i);
}

const label = (minute) => new Date(minute * 60000).toTimeString().slice(0, 5);

export function initTraffic(info, banner) {
  let timer = null;
  const base = { animation: false, maintainAspectRatio: false };
  const rpm = new window.Chart($("chart-rpm"), {
    type: "bar",
    data: { labels: [], datasets: [{ label: "requests", data: [], backgroundColor: categorical(0) }] },
    options: { ...base, plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "requests / min" } } } },
  });
  const dist = new window.Chart($("chart-dist"), {
    type: "bar",
    data: { labels: [], datasets: [] },
    options: {
      ...base,
      indexAxis: "y",
      scales: { x: { title: { display: true, text: `per-request mean readout (${info.units})` } } },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
    },
  });
  const guard = new window.Chart($("chart-guard"), {
    type: "bar",
    data: { labels: [], datasets: [] },
    options: { ...base, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "firings / min" } } }, plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } } },
  });
  $("dist-units").textContent = `(${info.units})`;

  async function refresh() {
    let page;
    try {
      page = await getJSON("/v1/affectlens/requests", { limit: 500, since: Math.floor(Date.now() / 1000) - MINUTES * 60 });
    } catch (err) {
      $("traffic-status").textContent = `error: ${err.message}`;
      return;
    }
    const { rows } = recordsOf(page);
    const now = Date.now();
    const minutes = minuteLabels(now);
    const index = new Map(minutes.map((m, i) => [m, i]));
    const counts = minutes.map(() => 0);
    const byRule = new Map();
    const means = new Map();
    for (const r of rows) {
      const m = Math.floor(r.time.getTime() / 60000);
      if (index.has(m)) counts[index.get(m)] += 1;
      for (const e of r.events) {
        if (!byRule.has(e.rule)) byRule.set(e.rule, minutes.map(() => 0));
        if (index.has(m)) byRule.get(e.rule)[index.get(m)] += 1;
      }
      for (const [emotion, s] of Object.entries(r.summary || {})) {
        const mean = typeof s === "number" ? s : s && s.mean;
        if (typeof mean !== "number") continue;
        if (!means.has(emotion)) means.set(emotion, []);
        means.get(emotion).push(mean);
      }
    }
    rpm.data.labels = minutes.map(label);
    rpm.data.datasets[0].data = counts;
    rpm.update("none");

    const emotions = [...means.keys()].sort();
    const stats = emotions.map((e) => means.get(e).sort((a, b) => a - b));
    dist.data.labels = emotions.map((e, i) => `${e} (n=${stats[i].length})`);
    dist.data.datasets = [
      { label: "10th–90th percentile", data: stats.map((s) => [quantile(s, 0.1), quantile(s, 0.9)]), backgroundColor: "#b2abd2" },
      { label: "25th–75th percentile", data: stats.map((s) => [quantile(s, 0.25), quantile(s, 0.75)]), backgroundColor: "#542788" },
      { type: "scatter", label: "median", data: stats.map((s, i) => ({ x: quantile(s, 0.5), y: dist.data.labels[i] })), backgroundColor: "#E69F00", pointRadius: 5, pointStyle: "rectRot" },
    ];
    dist.options.datasets = { bar: { grouped: false } };
    dist.update("none");

    guard.data.labels = minutes.map(label);
    guard.data.datasets = [...byRule].map(([rule, data], i) => ({ label: rule, data, backgroundColor: categorical(i) }));
    guard.update("none");
    const fired = rows.filter((r) => r.fired).length;
    $("traffic-status").textContent = `${rows.length} requests in the last ${MINUTES} min, ${fired} with guardrail events · updated ${new Date().toLocaleTimeString()}`;
    banner(null);
  }

  return {
    show() { refresh(); timer = setInterval(refresh, POLL_MS); },
    hide() { clearInterval(timer); timer = null; },
  };
}
