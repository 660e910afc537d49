// Vectors view: what the server holds, and the validation report beside its artifact.

import { getJSON } from "./api.js";
import { diverging } from "./colors.js";

const $ = (id) => document.getElementById(id);
const fmt = (v, d = 3) => (typeof v === "number" ? v.toFixed(d) : "–");

function definitions(dl, items) {
  dl.innerHTML = "";
  for (const [k, v] of Object.entries(items)) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v ?? "–";
    dl.append(dt, dd);
  }
}

function pcaChart(v) {
  $("pca-box").hidden = false;
  const valence = v.valence || {};
  const points = v.pca.map((p) => ({ x: p.x, y: p.y, emotion: p.emotion }));
  const labels = {
    id: "pointLabels",
    afterDatasetsDraw(chart) {
      const { ctx } = chart;
      ctx.save();
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillStyle = "#222";
      chart.getDatasetMeta(0).data.forEach((el, i) => ctx.fillText(points[i].emotion, el.x + 5, el.y - 4));
      ctx.restore();
    },
  };
  const known = Object.keys(valence).length > 0;
  $("pca-note").textContent = known
    ? "Points coloured by human valence norms (purple: unpleasant, orange: pleasant; grey: no norm)."
    : "No valence norms were given to the validation run, so points are uncoloured.";
  new window.Chart($("chart-pca"), {
    type: "scatter",
    data: {
      datasets: [{
        label: "emotions", data: points, pointRadius: 5, borderColor: "#333", borderWidth: 1,
        backgroundColor: points.map((p) => (p.emotion in valence ? diverging(valence[p.emotion] - 5, 4) : "#999")),
      }],
    },
    plugins: [labels],
    options: {
      animation: false, maintainAspectRatio: false,
      layout: { padding: { right: 60 } },
      scales: {
        x: { title: { display: true, text: `PC1${v.flipped?.pc1 ? " (sign flipped to match valence)" : ""}` } },
        y: { title: { display: true, text: `PC2${v.flipped?.pc2 ? " (sign flipped to match arousal)" : ""}` } },
      },
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { label: (c) => `${c.raw.emotion}: (${fmt(c.raw.x, 2)}, ${fmt(c.raw.y, 2)})` } },
      },
    },
  });
}

export function initVectors(info) {
  let loaded = false;

  async function validation() {
    const body = $("validation-body");
    let v;
    try { v = await getJSON("/v1/affectlens/validation"); } catch (err) {
      body.textContent = `Cannot read the validation report: ${err.message}`;
      return;
    }
    if (!v.found) { body.textContent = v.message; return; }
    body.classList.remove("muted");
    body.innerHTML = "";
    const dl = document.createElement("dl");
    dl.className = "meta";
    const items = {
      report: v.path, created: v.created, layer: v.layer, "held-out stories": v.held_out_n,
      "top-1 accuracy": `${fmt(v.top1)} (chance ${fmt(v.chance_top1)})`,
      "top-5 accuracy": `${fmt(v.top5)} (chance ${fmt(v.chance_top5)})`,
      "explained variance, PC1–5": (v.explained_variance || []).map((x) => fmt(x, 2)).join(", "),
    };
    for (const [name, c] of Object.entries(v.correlations || {})) {
      items[`${name.replace("_", " ~ ")} Pearson r`] = `${fmt(c.pearson_r)} (n = ${c.n ?? "?"})`;
    }
    definitions(dl, items);
    body.appendChild(dl);
    if ((v.pca || []).length) pcaChart(v);
  }

  function show() {
    if (loaded) return;
    loaded = true;
    definitions($("vectors-meta"), {
      model: info.model,
      emotions: String(info.emotions.length),
      layers: info.layers.join(", "),
      "recommended layer": String(info.default_layer),
      units: `${info.units.join(", ")} (default ${info.default_units})`,
      "steering α": `−${info.max_alpha} to +${info.max_alpha}, a fraction of the layer's residual norm`,
      "guardrail policies": info.policies.length
        ? `${info.policies.join(", ")}${info.default_policy ? ` (default ${info.default_policy})` : ""}`
        : "none loaded",
    });
    const ul = $("vectors-emotions");
    ul.innerHTML = "";
    for (const e of info.emotions) { const li = document.createElement("li"); li.textContent = e; ul.appendChild(li); }
    validation();
  }

  return { show, hide() {} };
}
