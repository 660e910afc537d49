// Token heatmaps, the top-five tooltip, guardrail markers and emotion timelines, shared by the
// Chat view (live) and the Requests view (from the audit store).

import { categorical, diverging, textOn } from "./colors.js";

export const fmt = (v, digits = 2) =>
  (typeof v !== "number" ? "–" : (v >= 0 ? "+" : "−") + Math.abs(v).toFixed(digits));

const SYMBOL = { flag: "⚑", stop: "■", steer_on: "▲", steer_off: "▽" };
const WHAT = {
  flag: "flagged the reply",
  stop: "stopped the reply",
  steer_on: "started steering",
  steer_off: "stopped steering",
};

// One line saying what a guardrail event was and what it did.
export function describeEvent(e) {
  const values = e.values ? Object.entries(e.values).map(([k, v]) => `${k} ${fmt(v)}`).join(", ") : "";
  const steer = e.detail && e.detail.steer
    ? ` (${Object.entries(e.detail.steer).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")})` : "";
  return `${e.rule} ${WHAT[e.action] || e.action}${steer}${e.shadow ? " [shadow: not applied]" : ""}` +
    ` at token ${e.token_index}${values ? `; ${values}` : ""}`;
}

// One token <span>: coloured by `emotion`, its readouts kept for the tooltip. A reply's tokens
// are one stop in the tab order (the first token); arrow keys move between them.
export function tokenSpan(token, emotion, units, limit) {
  const span = document.createElement("span");
  span.className = "tok";
  span.tabIndex = -1;
  span.dataset.index = token.index;
  span.textContent = token.text;
  span._readouts = token.readouts || {};
  paintToken(span, emotion, units, limit);
  return span;
}

// Append a token span to `box`, the first one taking the box's place in the tab order.
export function appendToken(box, span) {
  if (!box.querySelector(".tok")) span.tabIndex = 0;
  box.appendChild(span);
}

export function paintToken(span, emotion, units, limit) {
  const value = span._readouts[emotion];
  if (typeof value !== "number") {
    span.style.background = "";
    span.style.color = "";
    span.removeAttribute("aria-label");
    return;
  }
  span.style.background = diverging(value, limit);
  span.style.color = textOn(value, limit);
  span.dataset.value = value;
  span.setAttribute("aria-label", `${span.textContent}: ${emotion} ${fmt(value)} ${units}`);
}

// The in-text marker of a guardrail event, placed after the token where it fired.
export function markerSpan(event) {
  const mark = document.createElement("mark");
  mark.className = `guard-marker action-${event.action}`;
  mark.tabIndex = 0;
  mark.textContent = `${SYMBOL[event.action] || "◆"} ${event.rule}`;
  mark.title = describeEvent(event);
  mark.setAttribute("aria-label", `guardrail: ${describeEvent(event)}`);
  mark.dataset.tokenIndex = event.token_index;
  mark.dataset.rule = event.rule;
  mark.dataset.action = event.action;
  return mark;
}

export function placeMarker(box, event) {
  const anchor = box.querySelector(`.tok[data-index="${event.token_index}"]`);
  const mark = markerSpan(event);
  if (anchor) anchor.after(mark); else box.appendChild(mark);
}

export function renderEvents(container, events) {
  container.innerHTML = "";
  if (!events.length) { container.textContent = "No guardrail events."; return; }
  const list = document.createElement("ul");
  for (const e of events) {
    const li = document.createElement("li");
    li.className = `action-${e.action}`;
    li.textContent = `${SYMBOL[e.action] || "◆"} ${describeEvent(e)}`;
    list.appendChild(li);
  }
  container.appendChild(list);
}

// Show the top five emotions of a hovered or focused token of `root` in `tooltip`.
export function attachTooltip(root, tooltip, unitsOf) {
  const show = (span) => {
    const entries = Object.entries(span._readouts || {}).sort((a, b) => b[1] - a[1]).slice(0, 5);
    if (!entries.length) return;
    tooltip.innerHTML = "";
    const head = document.createElement("div");
    head.textContent = `token ${span.dataset.index} ${JSON.stringify(span.textContent)}: top ${entries.length} (${unitsOf()})`;
    const list = document.createElement("ol");
    for (const [name, value] of entries) {
      const li = document.createElement("li");
      li.textContent = `${name} ${fmt(value)}`;
      list.appendChild(li);
    }
    tooltip.append(head, list);
    tooltip.hidden = false;
    const box = span.getBoundingClientRect();
    const left = Math.min(window.innerWidth - tooltip.offsetWidth - 8, Math.max(8, box.left));
    tooltip.style.left = `${left + window.scrollX}px`;
    tooltip.style.top = `${box.bottom + window.scrollY + 6}px`;
  };
  const hide = () => { tooltip.hidden = true; };
  const isToken = (el) => el.classList && el.classList.contains("tok");
  root.addEventListener("mouseover", (e) => { if (isToken(e.target)) show(e.target); });
  root.addEventListener("mouseout", (e) => { if (isToken(e.target)) hide(); });
  root.addEventListener("focusin", (e) => { if (isToken(e.target)) show(e.target); });
  root.addEventListener("focusout", hide);
  root.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { hide(); return; }
    if (!isToken(e.target)) return;
    const all = [...e.target.parentElement.querySelectorAll(".tok")];
    const at = all.indexOf(e.target);
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: all.length - 1 }[e.key];
    if (to === undefined || !all[to]) return;
    e.preventDefault();
    e.target.tabIndex = -1;
    all[to].tabIndex = 0;
    all[to].focus();
  });
}

// Chart.js plugin: a dashed vertical line and label at each guardrail event's token.
const eventLines = {
  id: "guardrailLines",
  afterDatasetsDraw(chart) {
    const events = chart.options.plugins.guardrailLines?.events || [];
    const { ctx, chartArea, scales } = chart;
    ctx.save();
    events.forEach((e, n) => {
      const x = scales.x.getPixelForValue(e.token_index);
      if (x < chartArea.left || x > chartArea.right) return;
      ctx.strokeStyle = e.action === "stop" ? "#D55E00" : "#000";
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(x, chartArea.top);
      ctx.lineTo(x, chartArea.bottom);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillText(`${SYMBOL[e.action] || "◆"} ${e.rule}`, x + 3, chartArea.top + 11 + 12 * (n % 3));
    });
    ctx.restore();
  },
};

export function timelineChart(canvas, units) {
  return new window.Chart(canvas, {
    type: "line",
    data: { datasets: [] },
    plugins: [eventLines],
    options: {
      animation: false,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      scales: {
        x: { type: "linear", title: { display: true, text: "reply token" }, ticks: { precision: 0 } },
        y: { title: { display: true, text: `readout (${units})` } },
      },
      plugins: { guardrailLines: { events: [] }, legend: { position: "bottom", labels: { boxWidth: 12 } } },
      elements: { point: { radius: 0 }, line: { borderWidth: 2 } },
    },
  });
}

// Redraw a timeline from tokens [{index, readouts}] for the chosen emotions.
export function updateTimeline(chart, tokens, emotions, events, units) {
  chart.data.datasets = emotions.map((name, i) => ({
    label: name,
    borderColor: categorical(i),
    backgroundColor: categorical(i),
    borderDash: [[], [6, 3], [2, 2], [8, 3, 2, 3]][i % 4],
    data: tokens.filter((t) => typeof t.readouts?.[name] === "number")
      .map((t) => ({ x: t.index, y: t.readouts[name] })),
  }));
  chart.options.plugins.guardrailLines.events = events;
  chart.options.scales.y.title.text = `readout (${units})`;
  chart.update("none");
}
