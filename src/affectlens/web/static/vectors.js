// Vectors view: what the server holds, and the validation report beside the artifact.

import { getJSON } from "./api.js";
import { diverging } from "./colors.js";

const $ = (id) => document.getElementById(id);
const fmt = (v, d = 3) => (typeof v === "number" ? v.toFixed(d) : "–");

export function initVectors(info) {
  let loaded = false;
  function meta() {
    const dl = $("vectors-meta");
    dl.innerHTML = "";
    const items = {
      model: info.model || "–",
      emotions: String(info.emotions.length),
      layers: info.layers.join(", "),
      "steering layers": info.steerLayers.join(", "),
      units: info.unitChoices.join(", "),
      "alpha range": `${info.alphaMin} to ${info.alphaMax}`,
      guardrails: info.guardrails.join(", ") || "none loaded",
    };
    for (const [k, v] of Object.entries(items)) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v;
      dl.append(dt, dd);
    }
    const ul = $("vectors-emotions");
    ul.innerHTML = "";
    for (const e of info.emotions) { const li = document.createElement("li"); li.textContent = e; ul.appendChild(li); }
  }

  async function validation() {
    const body = $("validation-body");
    let v;
    try { v = await getJSON("/v1/affectlens/validation"); } catch (err) {
      body.textContent = err.status === 404 ? `No validation report beside the artifact. ${err.message}` : `error: ${err.message}`;
      return;
    }
    body.classList.remove("muted");
    body.innerHTML = "";
    const dl = document.createElement("dl");
    dl.className = "meta";
    const items = {
      report: v.path, created: v.created, layer: v.layer, "held-out stories": v.held_out_n,
      "top-1 accuracy": `${fmt(v.top1)} (chance ${fmt(v.chance_top1)})`,
      "top-5 accuracy": `${fmt(v.top5)} (chance ${fmt(v.chance_top5)})`,
      "explained variance PC1–5": (v.explained_variance || []).map((x) => fmt(x, 2)).join(", "),
    };
    for (const [name, c] of Object.entries(v.correlations || {})) items[`${name} Pearson r`] = `${fmt(c.pearson_r)} (n=${c.n ?? "?"})`;
    for (const [k, val] of Object.entries(items)) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = val ?? "–";
      dl.append(dt, dd);
    }
    body.appendChild(dl);
    if (!(v.pca || []).length) return;
    $("pca-box").hidden = false;
    const valence = v.valence || {};
    const points = v.pca.map((p) => ({ x: p.x, y: p.y, emotion: p.emotion }));
    const labels = {
      id: "pointLabels",
      afterDatasetsDraw(chart) {
        const { ctx } = chart;
        ctx.save();
        ctx.font = "10px system-ui, sans-serif";
        ctx.fillStyle = "#222";
        chart.getDatasetMeta(0).data.forEach((el, i) => ctx.fillText(points[i].emotion, el.x + 4, el.y - 4));
        ctx.restore();
      },
    };
    new window.Chart($("chart-pca"), {
      type: "scatter",
      data: { datasets: [{ label: "emotions", data: points, pointRadius: 4,
        backgroundColor: points.map((p) => (p.emotion in valence ? diverging(valence[p.emotion] - 5, 4) : "#888")) }] },
      plugins: [labels],
      options: {
        animation: false, maintainAspectRatio: false,
        scales: {
          x: { title: { display: true, text: `PC1${v.flipped && v.flipped.pc1 ? " (flipped)" : ""}` } },
          y: { title: { display: true, text: `PC2${v.flipped && v.flipped.pc2 ? " (flipped)" : ""}` } },
        },
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: (c) => `${c.raw.emotion}: (${fmt(c.raw.x, 2)}, ${fmt(c.raw.y, 2)})` } },
        },
      },
    });
  }

  return { show() { if (!loaded) { loaded = true; meta(); validation(); } }, hide() {} };
}
