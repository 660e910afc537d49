// Token heatmaps, the top-five tooltip, guardrail markers and emotion timelines, shared by the
// Chat view (live) and the Requests view (from the audit store).

import { categorical, diverging, limitFor, textOn } from "./colors.js";

const fmt = (v) => (v === null || v === undefined ? "–" : (v >= 0 ? "+" : "−") + Math.abs(v).toFixed(2));

export function describeEvent(e) {
  const detail = e.detail && Object.keys(e.detail).length ? ` ${JSON.stringify(e.detail)}` : "";
  const values = e.values ? Object.entries(e.values).map(([k, v]) => `${k} ${fmt(v)}`).join(", ") : "";
  return `${e.rule}: ${e.action}${e.shadow ? " (shadow)" : ""} at token ${e.token_index}` +
    (values ? ` (${values})` : "") + detail;
}

// One token <span>: focusable, coloured by `emotion`, readouts kept for the tooltip.
export function tokenSpan(token, emotion, units) {
  const span = document.createElement("span");
  span.className = "tok";
  span.tabIndex = 0;
  span.dataset.index = token.index;
  span.textContent = token.text;
  span._readouts = token.readouts || {};
  paintToken(span, emotion, units);
  return span;
}

export function paintToken(span, emotion, units) {
  const limit = limitFor(units);
  const value = span._readouts[emotion];
  if (value === undefined) {
    span.style.background = "";
    span.style.color = "";
    span.removeAttribute("aria-label");
    return;
  }
  span.style.background = diverging(value, limit);
  span.style.color = textOn(value, limit);
  span.setAttribute("aria-label", `${JSON.stringify(span.textContent)} ${emotion} ${fmt(value)} ${units}`);
}

export function markerSpan(event) {
  const mark = document.createElement("mark");
  mark.className = `guard-marker action-${event.action}`;
  mark.tabIndex = 0;
  mark.textContent = event.action === "stop" ? "⏹" : event.action === "flag" ? "⚑" : event.action === "steer_off" ? "◇" : "◆";
  mark.title = describeEvent(event);
  mark.setAttribute("aria-label", `guardrail ${describeEvent(event)}`);
  mark.dataset.tokenIndex = event.token_index;
  mark.dataset.rule = event.rule;
  return mark;
}

export function renderEvents(container, events) {
  container.innerHTML = "";
  if (!events.length) { container.textContent = "No guardrail events."; return; }
  const list = document.createElement("ul");
  for (const e of events) {
    const li = document.createElement("li");
    li.className = `action-${e.action}`;
    li.textContent = describeEvent(e);
    list.appendChild(li);
  }
  container.appendChild(list);
}

// Tooltip: top five emotions of a hovered or focused token.
export function attachTooltip(root, tooltip, unitsOf) {
  const show = (span) => {
    const entries = Object.entries(span._readouts || {}).sort((a, b) => b[1] - a[1]).slice(0, 5);
    if (!entries.length) return;
    tooltip.innerHTML = "";
    const head = document.createElement("div");
    head.className = "tip-head";
    head.textContent = `token ${span.dataset.index} ${JSON.stringify(span.textContent)} · top five (${unitsOf()})`;
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
  root.addEventListener("mouseover", (e) => { if (e.target.classList.contains("tok")) show(e.target); });
  root.addEventListener("mouseout", (e) => { if (e.target.classList.contains("tok")) hide(); });
  root.addEventListener("focusin", (e) => { if (e.target.classList.contains("tok")) show(e.target); });
  root.addEventListener("focusout", hide);
  root.addEventListener("keydown", (e) => { if (e.key === "Escape") hide(); });
}

// Chart.js plugin: a dashed vertical line and label at each guardrail event's token.
const eventLines = {
  id: "guardrailLines",
  afterDatasetsDraw(chart) {
    const events = chart.options.plugins.guardrailLines?.events || [];
    const { ctx, chartArea, scales } = chart;
    ctx.save();
    for (const e of events) {
      const x = scales.x.getPixelForValue(e.token_index);
      if (x < chartArea.left || x > chartArea.right) continue;
      ctx.strokeStyle = e.action === "stop" ? "#D55E00" : "#000";
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(x, chartArea.top);
      ctx.lineTo(x, chartArea.bottom);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillText(`${e.rule}: ${e.action}`, x + 3, chartArea.top + 11);
    }
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
    borderDash: i >= 8 ? [5, 3] : [],
    data: tokens.filter((t) => t.readouts && t.readouts[name] !== undefined).map((t) => ({ x: t.index, y: t.readouts[name] })),
  }));
  chart.options.plugins.guardrailLines.events = events;
  chart.options.scales.y.title.text = `readout (${units})`;
  chart.update("none");
}
