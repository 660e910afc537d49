// Chat view: stream a reply with per-token telemetry, colour it, chart it, steer it, guard it.

import { eventsOf, streamChat, tokenReadoutsOf } from "./api.js";
import { legend } from "./colors.js";
import {
  attachTooltip, markerSpan, paintToken, renderEvents, timelineChart, tokenSpan, updateTimeline,
} from "./tokens.js";

const $ = (id) => document.getElementById(id);

const EXAMPLE_POLICY = (emotion) => JSON.stringify({
  name: "custom",
  shadow: false,
  units: "z",
  rules: [{ name: `${emotion}-flag`, when: { emotion, stat: "value", above: 1.5 }, action: "flag" }],
}, null, 1);

export function initChat(info, banner) {
  const state = {
    history: [], // OpenAI messages of this conversation
    tokens: [], // the reply being shown: [{index, text, readouts}]
    events: [],
    steer: new Map(), // emotion -> alpha
    controller: null,
  };
  const units = info.units;
  const colourSelect = $("colour-emotion");
  const steerAdd = $("steer-add");
  const transcript = $("transcript");
  const chart = timelineChart($("chat-timeline"), units);

  for (const e of info.emotions) {
    colourSelect.add(new Option(e, e));
    steerAdd.add(new Option(e, e));
  }
  const preferred = ["desperate", "calm", "happy", "afraid", "angry"].filter((e) => info.emotions.includes(e));
  colourSelect.value = preferred[0] || info.emotions[0] || "";
  const timelineChoice = new Set((preferred.length ? preferred : info.emotions).slice(0, 3));
  const checks = $("timeline-emotions");
  for (const e of info.emotions) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = e;
    box.checked = timelineChoice.has(e);
    box.addEventListener("change", () => {
      if (box.checked) timelineChoice.add(e); else timelineChoice.delete(e);
      redrawTimeline();
    });
    label.append(box, ` ${e}`);
    checks.appendChild(label);
  }
  const layers = info.steerLayers.length ? info.steerLayers : info.layers;
  $("steer-layers").textContent = layers.length ? `(layers ${layers.join(", ")}; α ${info.alphaMin} to ${info.alphaMax})` : "";

  const guardSelect = $("guardrail-select");
  guardSelect.add(new Option("server default", "__default"));
  guardSelect.add(new Option("none", "__none"));
  for (const name of info.guardrails) guardSelect.add(new Option(name, name));
  guardSelect.add(new Option("custom policy (JSON)…", "__custom"));
  $("policy-json").value = EXAMPLE_POLICY(colourSelect.value || "calm");
  guardSelect.addEventListener("change", () => { $("policy-box").hidden = guardSelect.value !== "__custom"; });

  legend($("chat-legend"), units, colourSelect.value);
  colourSelect.addEventListener("change", () => {
    legend($("chat-legend"), units, colourSelect.value);
    for (const span of transcript.querySelectorAll(".tok")) paintToken(span, colourSelect.value, units);
  });
  attachTooltip(transcript, $("tooltip"), () => units);

  function addSlider(emotion, value = 0) {
    if (state.steer.has(emotion)) return;
    state.steer.set(emotion, value);
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
    input.min = info.alphaMin;
    input.max = info.alphaMax;
    input.step = (info.alphaMax - info.alphaMin) / 100;
    input.value = value;
    const out = document.createElement("output");
    out.htmlFor = id;
    out.textContent = Number(value).toFixed(3);
    input.addEventListener("input", () => {
      state.steer.set(emotion, Number(input.value));
      out.textContent = Number(input.value).toFixed(3);
    });
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `remove ${emotion} steering`);
    remove.addEventListener("click", () => { state.steer.delete(emotion); row.remove(); steerAdd.focus(); });
    row.append(label, input, out, remove);
    $("sliders").appendChild(row);
  }
  $("steer-add-btn").addEventListener("click", () => addSlider(steerAdd.value));

  function redrawTimeline() {
    updateTimeline(chart, state.tokens, [...timelineChoice], state.events, units);
  }

  function guardrailField() {
    const choice = guardSelect.value;
    if (choice === "__default") return undefined;
    if (choice === "__none") return null;
    if (choice === "__custom") return JSON.parse($("policy-json").value);
    return choice;
  }

  function requestBody(text) {
    const ext = { telemetry: "tokens", emotions: info.emotions, units };
    const steer = Object.fromEntries([...state.steer].filter(([, a]) => a !== 0));
    if (Object.keys(steer).length) ext.steer = steer;
    const guardrail = guardrailField();
    if (guardrail !== undefined) ext.guardrail = guardrail;
    return {
      model: info.model || undefined,
      messages: [...state.history, { role: "user", content: text }],
      max_tokens: Number($("max-tokens").value) || 64,
      temperature: Number($("temperature").value) || 0,
      user: "dashboard",
      stream_options: { include_usage: true },
      affectlens: ext,
    };
  }

  async function send(text) {
    let body;
    try { body = requestBody(text); } catch (err) { banner(`error: the custom policy is not valid JSON (${err.message})`); return; }
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
    state.tokens = [];
    state.events = [];
    renderEvents($("chat-events"), []);
    redrawTimeline();
    state.controller = new AbortController();
    $("send").disabled = true;
    $("stop").disabled = false;
    let full = "";
    let finish = "";
    let pendingText = "";
    const seen = new Set();
    const addEvents = (events) => {
      for (const e of events) {
        const key = `${e.rule}|${e.action}|${e.token_index}`;
        if (seen.has(key)) continue;
        seen.add(key);
        state.events.push(e);
        const anchor = reply.querySelector(`.tok[data-index="${e.token_index}"]`);
        const mark = markerSpan(e);
        if (anchor) anchor.after(mark); else reply.appendChild(mark);
      }
      renderEvents($("chat-events"), state.events);
    };
    try {
      await streamChat(body, (chunk) => {
        const choice = (chunk.choices || [])[0];
        const delta = choice && choice.delta ? choice.delta.content || "" : "";
        const ext = chunk.affectlens;
        const readouts = tokenReadoutsOf(ext);
        if (readouts.length) {
          readouts.forEach((r, k) => {
            const token = { index: r.index ?? state.tokens.length, text: (k === 0 ? pendingText + delta : ""), readouts: r.readouts };
            pendingText = "";
            state.tokens.push(token);
            reply.appendChild(tokenSpan(token, colourSelect.value, units));
          });
        } else if (delta) {
          pendingText += delta; // text without readouts yet: attach to the next token
        }
        full += delta;
        if (ext) addEvents(eventsOf(ext));
        if (choice && choice.finish_reason) finish = choice.finish_reason;
        if (chunk.usage) meta.textContent = `${chunk.usage.completion_tokens} tokens`;
        redrawTimeline();
      }, state.controller.signal);
      if (pendingText) reply.appendChild(document.createTextNode(pendingText));
      state.history.push({ role: "user", content: text }, { role: "assistant", content: full });
    } catch (err) {
      if (err.name === "AbortError") finish = "cancelled";
      else banner(`error: ${err.message}`);
    } finally {
      reply.setAttribute("aria-busy", "false");
      meta.textContent = [meta.textContent, finish && `finish: ${finish}`,
        body.affectlens.steer && `steer ${JSON.stringify(body.affectlens.steer)}`].filter(Boolean).join(" · ");
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
    state.history = []; state.tokens = []; state.events = [];
    transcript.innerHTML = ""; renderEvents($("chat-events"), []); redrawTimeline(); input.focus();
  });
  renderEvents($("chat-events"), []);
}
