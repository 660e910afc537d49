// Chat view: stream a reply with per-token telemetry, colour it, chart it, steer it, guard it.

import { streamChat } from "./api.js";
import { legend, limitFor } from "./colors.js";
import {
  appendToken, attachTooltip, paintToken, placeMarker, renderEvents, timelineChart, tokenSpan, updateTimeline,
} from "./tokens.js";

const $ = (id) => document.getElementById(id);
const PREFERRED = ["desperate", "calm", "afraid", "happy", "angry"];

const examplePolicy = (emotion, units) => JSON.stringify({
  name: "custom",
  units,
  rules: [{ name: `${emotion}-high`, when: { emotion, stat: "value", above: 1.5 }, action: "flag" }],
}, null, 1);

export function initChat(info, banner) {
  const state = {
    history: [], // this conversation's OpenAI messages
    tokens: [], // the latest reply: [{index, text, readouts}]
    events: [], // its guardrail events
    steer: new Map(), // emotion -> alpha
    controller: null,
    reply: null, // the latest reply's element
  };
  const colourSelect = $("colour-emotion");
  const steerAdd = $("steer-add");
  const transcript = $("transcript");
  // Always the server's default units, so the audit store's records read in the same units.
  const units = () => info.default_units;
  const chart = timelineChart($("chat-timeline"), units());

  for (const e of info.emotions) {
    colourSelect.add(new Option(e, e));
    steerAdd.add(new Option(e, e));
  }
  const preferred = PREFERRED.filter((e) => info.emotions.includes(e));
  colourSelect.value = preferred[0] || info.emotions[0] || "";
  steerAdd.value = preferred.find((e) => e !== colourSelect.value) || info.emotions[0] || "";

  // Timeline emotions: checkboxes, the usual suspects ticked and listed first.
  const shown = new Set((preferred.length ? preferred : info.emotions).slice(0, 3));
  const checks = $("timeline-emotions");
  for (const e of [...preferred, ...info.emotions.filter((x) => !preferred.includes(x))]) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = e;
    box.checked = shown.has(e);
    box.addEventListener("change", () => {
      if (box.checked) shown.add(e); else shown.delete(e);
      redraw();
    });
    label.append(box, ` ${e}`);
    checks.appendChild(label);
  }

  // Steering layer: the artifact's recommended layer unless the user picks another.
  const layerSelect = $("steer-layer");
  for (const layer of info.layers) {
    layerSelect.add(new Option(layer === info.default_layer ? `${layer} (recommended)` : String(layer), layer));
  }
  layerSelect.value = String(info.default_layer);
  $("steer-range").textContent = `α from −${info.max_alpha} to +${info.max_alpha} (fraction of the layer's residual norm)`;

  // Guardrails: a request that names none gets the server's default, so "none" is offered only
  // when the server has no default.
  const guardSelect = $("guardrail-select");
  if (info.default_policy === null) guardSelect.add(new Option("none", "__none"));
  for (const name of info.policies) {
    guardSelect.add(new Option(name === info.default_policy ? `${name} (server default)` : name, name));
  }
  guardSelect.add(new Option("custom policy (JSON)…", "__custom"));
  guardSelect.value = info.default_policy ?? "__none";
  $("policy-json").value = examplePolicy(colourSelect.value || "calm", units());
  guardSelect.addEventListener("change", () => { $("policy-box").hidden = guardSelect.value !== "__custom"; });

  function limit() {
    return limitFor(units(), state.tokens.map((t) => t.readouts[colourSelect.value]));
  }
  function repaint() {
    const top = limit();
    legend($("chat-legend"), units(), colourSelect.value, top);
    if (state.reply) {
      for (const span of state.reply.querySelectorAll(".tok")) paintToken(span, colourSelect.value, units(), top);
    }
  }
  function redraw() {
    updateTimeline(chart, state.tokens, [...shown], state.events, units());
  }
  colourSelect.addEventListener("change", repaint);
  repaint();
  attachTooltip(transcript, $("tooltip"), units);

  function addSlider(emotion) {
    if (!emotion || state.steer.has(emotion)) return;
    state.steer.set(emotion, 0);
    const row = document.createElement("div");
    row.className = "slider-row";
    row.dataset.emotion = emotion;
    const id = `steer-${emotion}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = emotion;
    const input = document.createElement("input");
    input.type = "range";
    input.id = id;
    input.min = -info.max_alpha;
    input.max = info.max_alpha;
    input.step = info.max_alpha / 100;
    input.value = 0;
    const out = document.createElement("output");
    out.htmlFor = id;
    out.textContent = "0.00";
    input.addEventListener("input", () => {
      state.steer.set(emotion, Number(input.value));
      out.textContent = Number(input.value).toFixed(2);
    });
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `stop steering ${emotion}`);
    remove.addEventListener("click", () => { state.steer.delete(emotion); row.remove(); steerAdd.focus(); });
    row.append(label, input, out, remove);
    $("sliders").appendChild(row);
    input.focus();
  }
  $("steer-add-btn").addEventListener("click", () => addSlider(steerAdd.value));

  function requestBody(text) {
    const ext = { telemetry: "tokens", units: units() };
    const steer = Object.fromEntries([...state.steer].filter(([, a]) => a !== 0));
    if (Object.keys(steer).length) {
      ext.steer = steer;
      ext.layers = [Number(layerSelect.value)];
    }
    const choice = guardSelect.value;
    if (choice === "__custom") ext.guardrail = JSON.parse($("policy-json").value);
    else if (choice !== "__none") ext.guardrail = choice;
    return {
      model: info.model,
      messages: [...state.history, { role: "user", content: text }],
      max_tokens: Number($("max-tokens").value) || 64,
      temperature: Number($("temperature").value) || 0,
      user: $("chat-user").value.trim() || undefined,
      affectlens: ext,
    };
  }

  async function send(text) {
    let body;
    try { body = requestBody(text); } catch (err) {
      banner(`The custom policy is not valid JSON: ${err.message}`);
      return;
    }
    banner(null);
    const userBubble = document.createElement("div");
    userBubble.className = "msg user";
    userBubble.textContent = text;
    const reply = document.createElement("div");
    reply.className = "msg assistant tokens";
    reply.setAttribute("aria-busy", "true");
    const meta = document.createElement("div");
    meta.className = "msg-meta muted";
    transcript.append(userBubble, reply, meta);
    if (state.reply) state.reply.classList.add("past");
    state.reply = reply;
    state.tokens = [];
    state.events = [];
    renderEvents($("chat-events"), []);
    redraw();
    state.controller = new AbortController();
    $("send").disabled = true;
    $("stop").disabled = false;
    let finish = "";
    let id = "";
    let full = "";
    const seen = new Set();
    const addEvent = (e) => {
      const key = `${e.rule}|${e.action}|${e.token_index}`;
      if (seen.has(key)) return;
      seen.add(key);
      state.events.push(e);
      placeMarker(reply, e);
      renderEvents($("chat-events"), state.events);
    };
    try {
      await streamChat(body, (chunk) => {
        id = chunk.id || id;
        const choice = (chunk.choices || [])[0];
        const text = choice && choice.delta ? choice.delta.content || "" : "";
        const ext = chunk.affectlens || {};
        full += text;
        if (ext.readouts) {
          const token = { index: ext.token_index, text, readouts: ext.readouts };
          state.tokens.push(token);
          appendToken(reply, tokenSpan(token, colourSelect.value, units(), limit()));
        } else if (text) {
          reply.appendChild(document.createTextNode(text));
        }
        if (ext.guardrail) addEvent(ext.guardrail);
        for (const e of ext.guardrail_events || []) addEvent(e);
        if (ext.finish_reason) finish = ext.finish_reason;
        else if (choice && choice.finish_reason) finish = choice.finish_reason;
        redraw();
      }, state.controller.signal);
      state.history.push({ role: "user", content: text }, { role: "assistant", content: full });
    } catch (err) {
      if (err.name === "AbortError") finish = "cancelled";
      else banner(`The chat request failed: ${err.message}`);
    } finally {
      reply.setAttribute("aria-busy", "false");
      reply.dataset.done = "true";
      reply.dataset.requestId = id;
      repaint();
      const steer = body.affectlens.steer;
      meta.textContent = [
        `${state.tokens.length} tokens`,
        finish && `finish: ${finish}`,
        steer && `steered ${Object.entries(steer).map(([k, v]) => `${k} ${v >= 0 ? "+" : ""}${v}`).join(", ")} at layer ${body.affectlens.layers[0]}`,
        typeof body.affectlens.guardrail === "string" && `guardrail ${body.affectlens.guardrail}`,
      ].filter(Boolean).join(" · ");
      $("send").disabled = false;
      $("stop").disabled = true;
      state.controller = null;
      transcript.scrollTop = transcript.scrollHeight;
    }
  }

  const input = $("chat-input");
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || state.controller) return;
    input.value = "";
    send(text);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("chat-form").requestSubmit(); }
  });
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("clear").addEventListener("click", () => {
    state.history = []; state.tokens = []; state.events = []; state.reply = null;
    transcript.innerHTML = ""; renderEvents($("chat-events"), []); redraw(); input.focus();
  });
  renderEvents($("chat-events"), []);
}
