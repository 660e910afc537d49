// Requests view: the audit store's table with its filters, paged; a row opens its trace.

import { getJSON, normaliseRecord, recordsOf } from "./api.js";
import { legend } from "./colors.js";
import { attachTooltip, markerSpan, paintToken, renderEvents, timelineChart, tokenSpan, updateTimeline } from "./tokens.js";

const $ = (id) => document.getElementById(id);
const PAGE = 20;

export function initRequests(info, banner) {
  let offset = 0;
  let current = null;
  const chart = timelineChart($("detail-timeline"), info.units);
  const emotionFilter = $("f-emotion");
  const detailEmotion = $("detail-emotion");
  for (const e of info.emotions) {
    emotionFilter.add(new Option(e, e));
    detailEmotion.add(new Option(e, e));
  }
  detailEmotion.value = info.emotions.includes("desperate") ? "desperate" : info.emotions[0] || "";
  attachTooltip($("detail-tokens"), $("tooltip"), () => info.units);

  function filters() {
    const params = { limit: PAGE, offset };
    const user = $("f-user").value.trim();
    if (user) params.user = user;
    if (emotionFilter.value && $("f-above").value !== "") {
      params.emotion = emotionFilter.value;
      params.above = $("f-above").value;
    }
    if ($("f-fired").checked) params.guardrail_fired = "true";
    return params;
  }

  async function load() {
    let page;
    try { page = await getJSON("/v1/affectlens/requests", filters()); } catch (err) { banner(`error: ${err.message}`); return; }
    banner(null);
    const { rows, total, hasMore } = recordsOf(page);
    const body = $("requests-table").querySelector("tbody");
    body.innerHTML = "";
    for (const r of rows) {
      const tr = document.createElement("tr");
      tr.tabIndex = 0;
      tr.dataset.id = r.id;
      const cells = [
        r.time.toLocaleString(), String(r.id).slice(0, 12), r.user, r.model,
        `${r.promptTokens ?? "?"} + ${r.completionTokens ?? "?"}`,
        r.latency === null ? "–" : `${r.latency.toFixed(2)} s`, r.finish,
        r.fired ? `${r.eventCount || "yes"} event(s)` : "",
      ];
      for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
      tr.addEventListener("click", () => open(r.id));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(r.id); } });
      body.appendChild(tr);
    }
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 8; td.textContent = "No requests match."; tr.appendChild(td); body.appendChild(tr);
    }
    const end = offset + rows.length;
    $("page-info").textContent = rows.length ? `${offset + 1}–${end}${total !== null ? ` of ${total}` : ""}` : "";
    $("page-prev").disabled = offset === 0;
    $("page-next").disabled = hasMore === null ? (total !== null ? end >= total : rows.length < PAGE) : !hasMore;
  }

  function paint() {
    if (!current) return;
    legend($("detail-legend"), info.units, detailEmotion.value);
    for (const span of $("detail-tokens").querySelectorAll(".tok")) paintToken(span, detailEmotion.value, info.units);
    const chosen = [detailEmotion.value, ...["calm", "desperate"].filter((e) => e !== detailEmotion.value && info.emotions.includes(e))];
    updateTimeline(chart, current.tokens, chosen, current.events, info.units);
  }

  async function open(id) {
    let raw;
    try { raw = await getJSON(`/v1/affectlens/requests/${encodeURIComponent(id)}`); } catch (err) { banner(`error: ${err.message}`); return; }
    current = normaliseRecord(raw.data && !raw.id ? raw.data : raw);
    $("detail-id").textContent = current.id;
    const meta = $("detail-meta");
    meta.innerHTML = "";
    const items = {
      time: current.time.toLocaleString(), user: current.user || "–", model: current.model,
      finish: current.finish, latency: current.latency === null ? "–" : `${current.latency.toFixed(3)} s`,
      tokens: `${current.promptTokens ?? "?"} prompt + ${current.completionTokens ?? "?"} completion`,
      sampling: current.sampling ? JSON.stringify(current.sampling) : "–",
      steering: current.steering ? JSON.stringify(current.steering) : "none",
    };
    for (const [k, v] of Object.entries(items)) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v;
      meta.append(dt, dd);
    }
    const prompt = $("detail-prompt");
    prompt.textContent = current.messages ? current.messages.map((m) => `${m.role}: ${m.content}`).join("\n") : current.prompt || "";
    const box = $("detail-tokens");
    box.innerHTML = "";
    if (current.tokens.length) {
      for (const t of current.tokens) box.appendChild(tokenSpan(t, detailEmotion.value, info.units));
      for (const e of current.events) {
        const anchor = box.querySelector(`.tok[data-index="${e.token_index}"]`);
        if (anchor) anchor.after(markerSpan(e)); else box.appendChild(markerSpan(e));
      }
    } else {
      box.textContent = current.text || "(no per-token trace was recorded for this request)";
    }
    renderEvents($("detail-events"), current.events);
    $("request-detail").hidden = false;
    paint();
    $("request-detail").focus();
  }

  detailEmotion.addEventListener("change", paint);
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); offset = 0; load(); });
  $("page-prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
  $("page-next").addEventListener("click", () => { offset += PAGE; load(); });
  return { show: load, hide() {} };
}
