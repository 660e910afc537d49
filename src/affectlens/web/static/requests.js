// Requests view: the audit store's table with its API's filters, paged; a row opens its trace.

import { getJSON } from "./api.js";
import { legend, limitFor } from "./colors.js";
import {
  appendToken, attachTooltip, paintToken, placeMarker, renderEvents, timelineChart, tokenSpan, updateTimeline,
} from "./tokens.js";

const $ = (id) => document.getElementById(id);
const PAGE = 20;
const when = (epoch) => new Date(epoch * 1000).toLocaleString();

function steeringText(s) {
  if (!s) return "none";
  const alphas = Object.entries(s.alphas).map(([k, v]) => `${k} ${v >= 0 ? "+" : ""}${v}`).join(", ");
  return `${alphas} at layer${s.layers.length > 1 ? "s" : ""} ${s.layers.join(", ")} (${s.positions} positions)`;
}

export function initRequests(info, banner) {
  let offset = 0;
  let current = null;
  let asked = 0; // the latest listing asked for: an older answer arriving late is dropped
  const chart = timelineChart($("detail-timeline"), info.default_units);
  const emotionFilter = $("f-emotion");
  const detailEmotion = $("detail-emotion");
  for (const e of info.emotions) {
    emotionFilter.add(new Option(e, e));
    detailEmotion.add(new Option(e, e));
  }
  detailEmotion.value = info.emotions.includes("desperate") ? "desperate" : info.emotions[0] || "";
  const rule = $("f-guardrail");
  attachTooltip($("detail-tokens"), $("tooltip"), () => info.default_units);

  function filters() {
    const params = { limit: PAGE, offset };
    params.user = $("f-user").value.trim();
    if (emotionFilter.value && $("f-above").value !== "") {
      params.emotion = emotionFilter.value;
      params.above = $("f-above").value;
    }
    const fired = $("f-fired").value;
    params.guardrail = fired === "rule" ? rule.value.trim() : fired;
    return params;
  }

  async function load() {
    const status = $("requests-status");
    const mine = ++asked;
    status.textContent = "Loading…";
    let page;
    try { page = await getJSON("/v1/affectlens/requests", filters()); } catch (err) {
      if (mine !== asked) return;
      status.textContent = err.status === 404
        ? `This server keeps no audit store (${err.message}).` : `Cannot list requests: ${err.message}`;
      return;
    }
    if (mine !== asked) return;
    const body = $("requests-table").querySelector("tbody");
    body.innerHTML = "";
    for (const r of page.data) {
      const tr = document.createElement("tr");
      tr.tabIndex = 0;
      tr.dataset.id = r.id;
      const cells = [
        when(r.created), `${r.id.slice(0, r.id.indexOf("-") + 9)}…`, r.user ?? "–", `${r.prompt_tokens ?? "?"} + ${r.completion_tokens ?? "?"}`,
        `${(r.latency_ms / 1000).toFixed(2)} s`, r.finish_reason, r.steering ? steeringText(r.steering) : "",
        r.guardrail_events.length ? `${r.guardrail_events.length} (${[...new Set(r.guardrail_events.map((e) => e.rule))].join(", ")})` : "",
      ];
      for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
      tr.children[1].title = r.id;
      tr.addEventListener("click", () => open(r.id));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(r.id); } });
      body.appendChild(tr);
    }
    const end = offset + page.data.length;
    status.textContent = page.total
      ? `Requests ${offset + 1}–${end} of ${page.total}, newest first. Enter or click a row to open it.`
      : "No requests match.";
    $("page-prev").disabled = offset === 0;
    $("page-next").disabled = end >= page.total;
  }

  function paint() {
    if (!current) return;
    const emotion = detailEmotion.value;
    const tokens = current.tokens || [];
    const top = limitFor(info.default_units, tokens.map((t) => t.readouts[emotion]));
    legend($("detail-legend"), info.default_units, emotion, top);
    for (const span of $("detail-tokens").querySelectorAll(".tok")) paintToken(span, emotion, info.default_units, top);
    const chosen = [emotion, ...["calm", "desperate", "afraid"].filter((e) => e !== emotion && info.emotions.includes(e))].slice(0, 3);
    updateTimeline(chart, tokens, chosen, current.guardrail_events, info.default_units);
  }

  async function open(id) {
    try { current = await getJSON(`/v1/affectlens/requests/${encodeURIComponent(id)}`); } catch (err) {
      banner(`Cannot open request ${id}: ${err.message}`);
      return;
    }
    banner(null);
    $("detail-id").textContent = current.id;
    $("detail-meta").innerHTML = "";
    const items = {
      time: when(current.created), user: current.user ?? "–", model: current.model,
      finish: current.finish_reason,
      latency: `${current.latency_ms.toFixed(0)} ms (first token ${current.ttft_ms === null ? "–" : `${current.ttft_ms.toFixed(0)} ms`})`,
      tokens: `${current.prompt_tokens ?? "?"} prompt + ${current.completion_tokens ?? "?"} completion`,
      sampling: Object.entries(current.sampling).map(([k, v]) => `${k} ${JSON.stringify(v)}`).join(", "),
      steering: steeringText(current.steering),
      guardrail: current.policy ?? "none",
    };
    for (const [k, v] of Object.entries(items)) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v;
      $("detail-meta").append(dt, dd);
    }
    $("detail-prompt").textContent = current.messages
      ? current.messages.map((m) => `${m.role}: ${m.content}`).join("\n") : current.prompt || "";
    const box = $("detail-tokens");
    box.innerHTML = "";
    if (current.tokens) {
      for (const t of current.tokens) appendToken(box, tokenSpan(t, detailEmotion.value, info.default_units, 1));
      for (const e of current.guardrail_events) placeMarker(box, e);
    } else {
      box.textContent = current.text;
      const note = document.createElement("p");
      note.className = "muted";
      note.textContent = "No per-token trace was kept for this request (it did not ask for telemetry \"tokens\" and the server runs without --audit-traces).";
      box.appendChild(note);
    }
    renderEvents($("detail-events"), current.guardrail_events);
    $("request-detail").hidden = false;
    paint();
    $("request-detail").focus();
  }

  detailEmotion.addEventListener("change", paint);
  $("f-fired").addEventListener("change", () => { rule.hidden = $("f-fired").value !== "rule"; });
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); offset = 0; load(); });
  $("page-prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
  $("page-next").addEventListener("click", () => { offset += PAGE; load(); });
  return { show: load, hide() {} };
}
