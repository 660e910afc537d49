// The server's public API, as the page uses it: JSON calls, an SSE reader for streamed chat
// completions, and small normalisers so each view reads one shape.

let apiKey = sessionStorage.getItem("affectlens-api-key") || "";
const keyListeners = [];

export function setApiKey(key) {
  apiKey = key;
  sessionStorage.setItem("affectlens-api-key", key);
}
export function onAuthNeeded(listener) { keyListeners.push(listener); }

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function headers(extra = {}) {
  const h = { ...extra };
  if (apiKey) h.Authorization = `Bearer ${apiKey}`;
  return h;
}

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch (_) { /* not JSON: keep the status line */ }
  if (response.status === 401) keyListeners.forEach((f) => f());
  return new ApiError(response.status, message);
}

export async function getJSON(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") query.set(k, String(v));
  }
  const url = query.toString() ? `${path}?${query}` : path;
  const response = await fetch(url, { headers: headers() });
  if (!response.ok) throw await failure(response);
  return response.json();
}

// POST a streaming chat completion; calls onChunk(parsed JSON) for each `data:` event.
export async function streamChat(body, onChunk, signal) {
  const response = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(400, chunk.error.message || "stream error");
      onChunk(chunk);
    }
  }
}

// --- normalisers -----------------------------------------------------------------------------

const num = (x) => (typeof x === "number" && Number.isFinite(x) ? x : null);

// GET /v1/affectlens/emotions -> {model, emotions, layers, steerLayers, units, unitChoices,
// alphaMin, alphaMax, guardrails, defaultGuardrail}
export function normaliseInfo(raw) {
  const units = raw.units ?? "z";
  const unitChoices = Array.isArray(units) ? units : [units];
  let alphaMin = null;
  let alphaMax = null;
  const range = raw.alpha_range ?? raw.alpha ?? null;
  if (Array.isArray(range)) [alphaMin, alphaMax] = range;
  else if (range && typeof range === "object") { alphaMin = range.min; alphaMax = range.max; }
  alphaMax = num(alphaMax) ?? num(raw.max_alpha) ?? 1.0;
  alphaMin = num(alphaMin) ?? -alphaMax;
  const guardrails = raw.guardrails ?? raw.policies ?? [];
  return {
    model: raw.model ?? raw.model_id ?? "",
    emotions: raw.emotions ?? [],
    layers: raw.layers ?? [],
    steerLayers: raw.steer_layers ?? raw.default_layers ?? raw.steering_layers ?? raw.layers ?? [],
    readoutLayers: raw.readout_layers ?? null,
    units: unitChoices[0],
    unitChoices,
    alphaMin,
    alphaMax,
    guardrails: guardrails.map((g) => (typeof g === "string" ? g : g.name)),
    defaultGuardrail: raw.default_guardrail ?? null,
    raw,
  };
}

// Events in any chunk or record: a list under guardrail_events / events / guardrail.events.
export function eventsOf(obj) {
  if (!obj) return [];
  const list = obj.guardrail_events ?? obj.events ?? (obj.guardrail && obj.guardrail.events) ?? [];
  return Array.isArray(list) ? list : [];
}

// Token records from a streamed chunk's `affectlens` field: [{index, readouts}] (text comes from
// the delta).
export function tokenReadoutsOf(ext) {
  if (!ext) return [];
  if (Array.isArray(ext.tokens)) return ext.tokens.map((t) => ({ index: t.index ?? t.token_index, readouts: t.readouts ?? t.emotions }));
  const readouts = ext.readouts ?? ext.token_readouts ?? (ext.token && ext.token.readouts);
  if (readouts) return [{ index: ext.token_index ?? ext.index ?? (ext.token && ext.token.index), readouts }];
  return [];
}

// A record of the audit store (list row or detail) -> one shape for the views.
export function normaliseRecord(r) {
  const usage = r.usage ?? {};
  const created = r.created ?? r.created_at ?? r.time ?? r.timestamp;
  const time = typeof created === "number" ? new Date(created < 1e12 ? created * 1000 : created) : new Date(created);
  let latency = num(r.latency_s) ?? num(r.latency);
  if (latency === null && num(r.latency_ms) !== null) latency = r.latency_ms / 1000;
  const telemetry = r.telemetry ?? r.affectlens ?? {};
  const summary = r.summary ?? telemetry.summary ?? {};
  const events = eventsOf(r).length ? eventsOf(r) : eventsOf(telemetry);
  let tokens = r.tokens ?? r.trace ?? telemetry.tokens ?? null;
  if (tokens && !Array.isArray(tokens) && Array.isArray(tokens.tokens)) tokens = tokens.tokens;
  if (!tokens && Array.isArray(r.token_readouts)) {
    tokens = r.token_readouts.map((readouts, i) => ({ index: i, text: (r.token_texts || [])[i] ?? "", readouts }));
  }
  return {
    id: r.id ?? r.request_id,
    time,
    user: r.user ?? "",
    model: r.model ?? "",
    promptTokens: usage.prompt_tokens ?? r.prompt_tokens ?? null,
    completionTokens: usage.completion_tokens ?? r.completion_tokens ?? null,
    latency,
    finish: r.finish_reason ?? "",
    steering: r.steering ?? (r.settings && r.settings.steering) ?? r.steer ?? null,
    sampling: r.sampling ?? (r.settings && r.settings.sampling) ?? null,
    summary,
    events,
    eventCount: events.length || (r.guardrail_event_count ?? r.guardrail_firings ?? 0),
    fired: events.length > 0 || Boolean(r.guardrail_fired),
    messages: r.messages ?? (r.request && r.request.messages) ?? null,
    prompt: r.prompt ?? null,
    text: r.text ?? r.completion ?? r.output ?? "",
    tokens: (tokens || []).map((t, i) => ({ index: t.index ?? i, text: t.text ?? "", readouts: t.readouts ?? t.emotions ?? {} })),
    raw: r,
  };
}

export function recordsOf(page) {
  const rows = Array.isArray(page) ? page : (page.data ?? page.requests ?? page.items ?? []);
  return {
    rows: rows.map(normaliseRecord),
    total: Array.isArray(page) ? null : (page.total ?? null),
    hasMore: Array.isArray(page) ? null : (page.has_more ?? null),
  };
}
