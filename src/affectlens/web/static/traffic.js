// Traffic view: requests per minute, each emotion's distribution across requests and guardrail
// firings per minute by rule, from the server's /v1/affectlens/traffic, polled while open.

import { getJSON } from "./api.js";
import { categorical } from "./colors.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 3000;
const SHOWN_EMOTIONS = 12;

function quantile(sorted, q) {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

const clock = (minute) => new Date(minute * 1000).toTimeString().slice(0, 5);

export function initTraffic(info) {
  let timer = null;
  const base = { animation: false, maintainAspectRatio: false };
  const legendBottom = { position: "bottom", labels: { boxWidth: 12 } };
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
      datasets: { bar: { grouped: false } },
      scales: {
        x: { type: "linear", grace: "5%", title: { display: true, text: `each request's max readout (${info.default_units})` } },
        y: { type: "category" },
      },
      plugins: { legend: legendBottom },
    },
  });
  const guard = new window.Chart($("chart-guard"), {
    type: "bar",
    data: { labels: [], datasets: [] },
    options: { ...base, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "firings / min" } } }, plugins: { legend: legendBottom } },
  });

  async function refresh() {
    const minutes = Number($("traffic-minutes").value);
    let t;
    try { t = await getJSON("/v1/affectlens/traffic", { minutes }); } catch (err) {
      $("traffic-status").textContent = err.status === 404
        ? `This server keeps no audit store (${err.message}).` : `Cannot read traffic: ${err.message}`;
      return;
    }
    const labels = t.buckets.map((b) => clock(b.minute));
    rpm.data.labels = labels;
    rpm.data.datasets[0].data = t.buckets.map((b) => b.requests);
    rpm.update("none");

    const rules = [...new Set(t.buckets.flatMap((b) => Object.keys(b.guardrail)))].sort();
    guard.data.labels = labels;
    guard.data.datasets = rules.map((rule, i) => ({
      label: rule, data: t.buckets.map((b) => b.guardrail[rule] || 0), backgroundColor: categorical(i),
    }));
    guard.update("none");

    // The emotions with the highest median, each as its 10-90 and 25-75 percentile bands.
    const stats = Object.entries(t.emotions).filter(([, v]) => v.length)
      .map(([emotion, values]) => ({ emotion, s: [...values].sort((a, b) => a - b) }))
      .sort((a, b) => quantile(b.s, 0.5) - quantile(a.s, 0.5))
      .slice(0, SHOWN_EMOTIONS);
    dist.data.labels = stats.map((x) => `${x.emotion} (n=${x.s.length})`);
    // a box plot drawn with bars: 10-90 whiskers thin, 25-75 box wide, the median on top
    dist.data.datasets = [
      { type: "scatter", label: "median", order: 0, data: stats.map((x, i) => ({ x: quantile(x.s, 0.5), y: dist.data.labels[i] })), backgroundColor: "#E69F00", borderColor: "#000", borderWidth: 1, pointRadius: 7, pointStyle: "rectRot" },
      { label: "25th–75th percentile", order: 1, barPercentage: 0.7, data: stats.map((x) => [quantile(x.s, 0.25), quantile(x.s, 0.75)]), backgroundColor: "#542788" },
      { label: "10th–90th percentile", order: 2, barPercentage: 0.2, data: stats.map((x) => [quantile(x.s, 0.1), quantile(x.s, 0.9)]), backgroundColor: "#8073ac" },
    ];
    dist.update("none");

    const total = t.buckets.reduce((n, b) => n + b.requests, 0);
    const fired = t.buckets.reduce((n, b) => n + Object.values(b.guardrail).reduce((a, c) => a + c, 0), 0);
    const ranked = Object.keys(t.emotions).length > SHOWN_EMOTIONS ? `; the ${SHOWN_EMOTIONS} emotions with the highest median are shown` : "";
    $("traffic-status").textContent = `${total} request${total === 1 ? "" : "s"} and ${fired} guardrail firing${fired === 1 ? "" : "s"} in the last ${t.minutes} min${ranked} · updated ${new Date().toLocaleTimeString()}`;
    $("view-traffic").dataset.updated = String(Date.now());
  }

  return {
    show() { refresh(); timer = setInterval(refresh, POLL_MS); },
    hide() { clearInterval(timer); timer = null; },
  };
}
